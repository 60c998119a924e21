"""Fuzz harnesses of the framer and the pure core (see fuzz/README.md)."""
