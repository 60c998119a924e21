"""The XenStore daemon: a pure synchronous core inside a thin trio shell."""
