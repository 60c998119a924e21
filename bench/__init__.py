"""Benchmarks and the soak of our daemon against Xen's, not installed with the package.

Run them as modules from the repository's root (``sudo python3 -m bench.run``,
``python3 -m bench.soak``); bench/README.md says what each measures.
"""
