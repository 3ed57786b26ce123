"""Table-database constants under the names coleifer/kt 0.9.6 exposed in ``kt.constants``.

Plain bindings of the values :mod:`kt.tokyotyrant` defines (Tokyo Cabinet's ``tctdb.h``
numbers), so ``from kt import constants as C`` keeps working and can never drift.
``IOP_OPTIMIZE``/``IOP_DELETE``/``IOP_KEEP`` are kt's names for the index operations this
package calls ``INDEX_OPTIMIZE``/``INDEX_VOID``/``INDEX_KEEP``.
"""

from kt import tokyotyrant as _tt

# Every OP_/ORDER_/INDEX_ name the TT client defines, bound here under the same name.
_NAMES = [name for name in _tt.__all__ if name.startswith(("OP_", "ORDER_", "INDEX_"))]
globals().update({name: getattr(_tt, name) for name in _NAMES})

IOP_OPTIMIZE = _tt.INDEX_OPTIMIZE
IOP_DELETE = _tt.INDEX_VOID
IOP_KEEP = _tt.INDEX_KEEP

__all__ = [*_NAMES, "IOP_OPTIMIZE", "IOP_DELETE", "IOP_KEEP"]
