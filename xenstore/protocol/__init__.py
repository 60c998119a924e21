"""The XenStore wire protocol: op numbers, a construct grammar and the hot-path codec."""
