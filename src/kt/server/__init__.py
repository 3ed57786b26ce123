"""Bundled protocol-compatible servers for Kyoto Tycoon and Tokyo Tyrant (``python -m kt.server``)."""
