"""Compiled (Cython) versions of kt's hot loops; load them through :mod:`kt._native`."""
