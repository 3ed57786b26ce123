"""``kt search``: Tokyo Tyrant table queries written as ``column OP value`` words.

``age>=30 name^=A --order age:num-desc --limit 10`` builds the same query as
``QueryBuilder().filter("age", OP_NUM_GE, 30).filter("name", OP_STR_STARTSWITH, "A")...``.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import click

from kt import tokyotyrant as tt
from kt.cli.context import Target, json_option
from kt.tokyotyrant import QueryBuilder

# Longest operators first, so ">=" wins over ">" and "==" over "=".
OPERATORS = {
    "==": (tt.OP_NUM_EQ, "number equal"),
    ">=": (tt.OP_NUM_GE, "number at least"),
    "<=": (tt.OP_NUM_LE, "number at most"),
    "^=": (tt.OP_STR_STARTSWITH, "starts with"),
    "$=": (tt.OP_STR_ENDSWITH, "ends with"),
    "*=": (tt.OP_STR_CONTAINS, "contains"),
    "~=": (tt.OP_STR_REGEX, "matches the regular expression"),
    "&=": (tt.OP_STR_ALL, "contains all of the comma-separated tokens"),
    "|=": (tt.OP_STR_ANY, "contains one of the comma-separated tokens"),
    "@=": (tt.OP_STR_ANYEXACT, "equals one of the comma-separated strings"),
    "%=": (tt.OP_FTS_PHRASE, "full-text phrase"),
    "><": (tt.OP_NUM_BETWEEN, "number between (two comma-separated bounds)"),
    ">": (tt.OP_NUM_GT, "number greater than"),
    "<": (tt.OP_NUM_LT, "number less than"),
    "=": (tt.OP_STR_EQ, "string equal"),
}
_FILTER = re.compile(
    r"^(?P<column>[^=<>^$*~&|@%!]*?)(?P<negate>!?)(?P<op>"
    + "|".join(re.escape(op) for op in OPERATORS)
    + r")(?P<value>.*)$",
    re.DOTALL,
)
ORDERS = {
    "str": tt.ORDER_STR_ASC,
    "str-asc": tt.ORDER_STR_ASC,
    "str-desc": tt.ORDER_STR_DESC,
    "num": tt.ORDER_NUM_ASC,
    "num-asc": tt.ORDER_NUM_ASC,
    "num-desc": tt.ORDER_NUM_DESC,
}


def parse_filter(word: str) -> Tuple[str, int, str]:
    """``"age>=30"`` -> ``("age", OP_NUM_GE, "30")``; ``!`` before the operator negates it."""
    match = _FILTER.match(word)
    if not match:
        raise click.BadParameter(f"{word!r} is not COLUMN OP VALUE (e.g. age>=30)", param_hint="FILTERS")
    op, _help = OPERATORS[match["op"]]
    if match["negate"]:
        op |= tt.OP_NEGATE
    value = match["value"]
    if op & ~tt.OP_NEGATE == tt.OP_NUM_BETWEEN:
        value = value.replace(",", " ")
    return match["column"], op, value


def parse_order(text: str) -> Tuple[str, int]:
    """``"age:num-desc"`` -> ``("age", ORDER_NUM_DESC)``; the type defaults to ``str``."""
    column, _, kind = text.partition(":")
    try:
        return column, ORDERS[kind or "str"]
    except KeyError:
        raise click.BadParameter(
            f"{kind!r} is not one of {', '.join(ORDERS)}", param_hint="--order"
        ) from None


def build_query(
    filters: Tuple[str, ...], order: Optional[str], limit: Optional[int], offset: Optional[int]
) -> QueryBuilder:
    query = QueryBuilder()
    for word in filters:
        query = query.filter(*parse_filter(word))
    if order:
        query = query.order_by(*parse_order(order))
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return query


_OPERATOR_HELP = ", ".join(f"``{op}`` {desc}" for op, (_, desc) in OPERATORS.items())


@click.command(epilog=f"Operators: {_OPERATOR_HELP}.  Put ``!`` before one to negate it (``name!^=A``).")
@click.argument("filters", nargs=-1)
@click.option("--order", help="COLUMN[:str|str-desc|num|num-desc] to sort by.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many records.")
@click.option("--offset", type=click.IntRange(min=0), help="Skip this many records first.")
@click.option("--count", "only_count", is_flag=True, help="Print only the number of matches.")
@click.option("--keys", "only_keys", is_flag=True, help="Print only the matching keys.")
@json_option
@click.pass_obj
def search(
    target: Target,
    filters: Tuple[str, ...],
    order: Optional[str],
    limit: Optional[int],
    offset: Optional[int],
    only_count: bool,
    only_keys: bool,
    as_json: bool,
) -> None:
    """Search a Tokyo Tyrant table database: FILTERS like age>=30 name^=A."""
    target.require("tt", "search")
    query = build_query(filters, order, limit, offset)
    client = target.client
    if only_count:
        number = query.count(client)
        target.json({"count": number}) if as_json else click.echo(number)
        return
    if only_keys:
        keys = [k.decode("utf-8", "backslashreplace") for k in query.execute(client)]
        if as_json:
            target.json(keys)
        else:
            for key in keys:
                click.echo(key)
        return
    records = query.get(client)
    rows: List[dict] = []
    for key, columns in records:
        row = {"key": key.decode("utf-8", "backslashreplace")}
        row.update(columns)
        rows.append(row)
    if as_json:
        target.json(rows)
        return
    names: List[str] = ["key"]
    for row in rows:
        names.extend(name for name in row if name not in names)
    target.table(None, names, [[row.get(name, "") for name in names] for row in rows])


COMMANDS = [search]
