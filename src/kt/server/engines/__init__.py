"""Storage engines of the bundled servers: thin ctypes bindings to the Cabinet C libraries.

The bindings know no wire format; they expose the engines' own operations and errors.
"""
