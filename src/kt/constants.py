"""Table-database constants under the names coleifer/kt 0.9.6 exposed in ``kt.constants``.

Plain bindings of the values :mod:`kt.tokyotyrant` defines (Tokyo Cabinet's ``tctdb.h``
numbers), so ``from kt import constants as C`` keeps working and can never drift.
``IOP_OPTIMIZE``/``IOP_DELETE``/``IOP_KEEP`` are kt's names for the index operations this
package calls ``INDEX_OPTIMIZE``/``INDEX_VOID``/``INDEX_KEEP``.
"""

from kt.tokyotyrant import (
    INDEX_KEEP,
    INDEX_NUM,
    INDEX_OPTIMIZE,
    INDEX_QGRAM,
    INDEX_STR,
    INDEX_TOKEN,
    INDEX_VOID,
    OP_FTS_ALL,
    OP_FTS_ANY,
    OP_FTS_EXPRESSION,
    OP_FTS_PHRASE,
    OP_NEGATE,
    OP_NOINDEX,
    OP_NUM_ANYEXACT,
    OP_NUM_BETWEEN,
    OP_NUM_EQ,
    OP_NUM_GE,
    OP_NUM_GT,
    OP_NUM_LE,
    OP_NUM_LT,
    OP_STR_ALL,
    OP_STR_ANY,
    OP_STR_ANYEXACT,
    OP_STR_CONTAINS,
    OP_STR_ENDSWITH,
    OP_STR_EQ,
    OP_STR_REGEX,
    OP_STR_STARTSWITH,
    ORDER_NUM_ASC,
    ORDER_NUM_DESC,
    ORDER_STR_ASC,
    ORDER_STR_DESC,
)

IOP_OPTIMIZE = INDEX_OPTIMIZE
IOP_DELETE = INDEX_VOID
IOP_KEEP = INDEX_KEEP

__all__ = [
    "OP_STR_EQ",
    "OP_STR_CONTAINS",
    "OP_STR_STARTSWITH",
    "OP_STR_ENDSWITH",
    "OP_STR_ALL",
    "OP_STR_ANY",
    "OP_STR_ANYEXACT",
    "OP_STR_REGEX",
    "OP_NUM_EQ",
    "OP_NUM_GT",
    "OP_NUM_GE",
    "OP_NUM_LT",
    "OP_NUM_LE",
    "OP_NUM_BETWEEN",
    "OP_NUM_ANYEXACT",
    "OP_FTS_PHRASE",
    "OP_FTS_ALL",
    "OP_FTS_ANY",
    "OP_FTS_EXPRESSION",
    "OP_NEGATE",
    "OP_NOINDEX",
    "ORDER_STR_ASC",
    "ORDER_STR_DESC",
    "ORDER_NUM_ASC",
    "ORDER_NUM_DESC",
    "INDEX_STR",
    "INDEX_NUM",
    "INDEX_TOKEN",
    "INDEX_QGRAM",
    "INDEX_OPTIMIZE",
    "INDEX_VOID",
    "INDEX_KEEP",
    "IOP_OPTIMIZE",
    "IOP_DELETE",
    "IOP_KEEP",
]
