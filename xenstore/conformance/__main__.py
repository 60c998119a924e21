"""``python -m xenstore.conformance``: see :mod:`xenstore.conformance.cli`."""

import sys

from xenstore.conformance.cli import main

sys.exit(main())
