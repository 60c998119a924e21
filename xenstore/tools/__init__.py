"""Drop-in replacements for Xen's xenstore-* command-line clients (Debian's 4.17).

One module per command (``read``, ``write``, ``rm``, ``exists``, ``list``,
``ls``, ``chmod``) plus ``multiplexer`` for the ``xenstore <mode>`` binary;
:mod:`xenstore.tools.common` holds the main loop they share, as the C tools
share xenstore_client.c. They import neither trio nor construct: scripts call
them in loops, so start-up time matters.
"""
