"""pyxl: a Xen host on a laptop, for teaching: xl's commands over the store, simulated guests."""
