"""QueryBuilder against a table database: every operator, negation and no-index flags, every
ordering, limit/offset, get/count/delete - each result checked against the inserted records
through an independent Python model of Tokyo Cabinet's matching rules (protocol.md §E.4)."""

from __future__ import annotations

import re

import pytest

from kt import TT_TABLE
from kt.tokyotyrant import (
    INDEX_NUM,
    INDEX_QGRAM,
    INDEX_STR,
    INDEX_TOKEN,
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
    QueryBuilder,
)

RECORDS = {
    "1": {"name": "alice", "age": "30", "tags": "red green", "text": "the quick brown fox", "score": "1.5"},
    "2": {"name": "bob", "age": "25", "tags": "blue", "text": "lazy dogs sleep", "score": "-2"},
    "3": {"name": "carol", "age": "35", "tags": "green blue", "text": "quick thinking"},
    "4": {"name": "dave", "age": "40", "tags": "red", "text": "brown bread", "score": "10"},
    "5": {"name": "eve", "age": "28", "tags": "yellow", "text": "the end", "score": "2.25"},
    "6": {"name": "Frank", "age": "7", "tags": "red,blue", "text": "QUICK Brown"},
    "7": {"name": "gina"},
    "8": {"name": "hector", "age": "100", "tags": "blue", "text": "fox and dogs", "score": "0.5"},
}


def tokens(text: str):
    return [token for token in re.split("[ ,]", text) if token]


def model(value: str, op: int, expr: str) -> bool:
    """Tokyo Cabinet's condition on one present column value (tctdb.c tctdbqrycondmatch)."""
    if op == OP_STR_EQ:
        return value == expr
    if op == OP_STR_CONTAINS:
        return expr in value
    if op == OP_STR_STARTSWITH:
        return value.startswith(expr)
    if op == OP_STR_ENDSWITH:
        return value.endswith(expr)
    if op == OP_STR_ALL:
        return all(token in tokens(value) for token in tokens(expr))
    if op == OP_STR_ANY:
        return any(token in tokens(value) for token in tokens(expr))
    if op == OP_STR_ANYEXACT:
        return value in tokens(expr)
    if op == OP_STR_REGEX:
        return re.search(expr, value) is not None
    text = value.lower()  # full-text: case-folded substring matching
    if op == OP_FTS_PHRASE:
        return expr.lower() in text
    if op == OP_FTS_ALL:
        return all(word in text for word in expr.lower().split())
    if op == OP_FTS_ANY:
        return any(word in text for word in expr.lower().split())
    if op == OP_FTS_EXPRESSION:
        if " || " in expr:
            return any(part in text for part in expr.split(" || "))
        if " !! " in expr:
            keep, drop = expr.split(" !! ")
            return keep in text and drop not in text
        return all(part in text for part in expr.split(" && "))
    number = float(value)
    if op == OP_NUM_EQ:
        return number == float(expr)
    if op == OP_NUM_GT:
        return number > float(expr)
    if op == OP_NUM_GE:
        return number >= float(expr)
    if op == OP_NUM_LT:
        return number < float(expr)
    if op == OP_NUM_LE:
        return number <= float(expr)
    if op == OP_NUM_BETWEEN:
        low, high = sorted(float(t) for t in tokens(expr))
        return low <= number <= high
    if op == OP_NUM_ANYEXACT:
        return number in [float(t) for t in tokens(expr)]
    raise AssertionError(op)


def expected_keys(column: str, op: int, expr: str):
    negate = bool(op & OP_NEGATE)
    base = op & ~(OP_NEGATE | OP_NOINDEX)
    result = set()
    for key, record in RECORDS.items():
        if column in record:
            hit = model(record[column], base, expr)
            if hit != negate:
                result.add(key)
        elif negate:  # a missing column fails a condition, so its negation succeeds
            result.add(key)
    return result


CONDITIONS = [
    ("name", OP_STR_EQ, "bob"),
    ("name", OP_STR_EQ, "Bob"),
    ("name", OP_STR_CONTAINS, "a"),
    ("name", OP_STR_STARTSWITH, "c"),
    ("name", OP_STR_ENDSWITH, "e"),
    ("tags", OP_STR_ALL, "red green"),
    ("tags", OP_STR_ALL, "blue"),
    ("tags", OP_STR_ANY, "red yellow"),
    ("tags", OP_STR_ANY, "blue,green"),
    ("name", OP_STR_ANYEXACT, "bob,eve gina"),
    ("name", OP_STR_REGEX, "^[a-c]"),
    ("text", OP_STR_REGEX, "o.*o"),
    ("age", OP_NUM_EQ, "30"),
    ("age", OP_NUM_GT, "30"),
    ("age", OP_NUM_GE, "30"),
    ("age", OP_NUM_LT, "28"),
    ("age", OP_NUM_LE, "28"),
    ("age", OP_NUM_BETWEEN, "25 35"),
    ("age", OP_NUM_BETWEEN, "40 10"),
    ("age", OP_NUM_ANYEXACT, "7 40 41"),
    ("score", OP_NUM_GT, "1"),
    ("score", OP_NUM_LT, "0"),
    ("text", OP_FTS_PHRASE, "quick brown"),
    ("text", OP_FTS_ALL, "quick brown"),
    ("text", OP_FTS_ANY, "bread dogs"),
    ("text", OP_FTS_EXPRESSION, "dogs || bread"),
    ("text", OP_FTS_EXPRESSION, "quick !! fox"),
    ("text", OP_FTS_EXPRESSION, "quick && fox"),
]
INDEXES = [("name", INDEX_STR), ("age", INDEX_NUM), ("tags", INDEX_TOKEN), ("text", INDEX_QGRAM)]


@pytest.fixture(params=["no-index", "indexed"])
def people(request, tt_servers_table):
    db = tt_servers_table.client(serializer=TT_TABLE)
    db.clear()
    assert db.set_bulk(RECORDS) is True
    if request.param == "indexed":
        for column, kind in INDEXES:
            assert db.set_index(column, kind) is True
    yield db
    for column, _ in INDEXES:
        db.delete_index(column)
    db.clear()


def condition_id(condition):
    column, op, expr = condition
    return f"{column}-{op}-{expr}"


@pytest.mark.parametrize("condition", CONDITIONS, ids=[condition_id(c) for c in CONDITIONS])
def test_every_operator_plain_negated_and_noindex(people, condition):
    column, op, expr = condition
    expected = expected_keys(column, op, expr)
    assert expected not in (set(), set(RECORDS)) or op == OP_STR_EQ  # the data discriminates
    for flags in (0, OP_NEGATE, OP_NOINDEX, OP_NEGATE | OP_NOINDEX):
        query = QueryBuilder().filter(column, op | flags, expr)
        want = expected_keys(column, op | flags, expr)
        assert set(query.execute(people)) == want, (column, op | flags, expr)
        assert query.count(people) == len(want)


def test_list_values_are_sent_as_tokens(people):
    run = lambda op, value: set(QueryBuilder().filter("age", op, value).execute(people))  # noqa: E731
    assert run(OP_NUM_BETWEEN, [25, 30]) == {"1", "2", "5"}
    assert run(OP_NUM_ANYEXACT, (7, 40)) == {"4", "6"}
    names = set(QueryBuilder().filter("name", OP_STR_ANYEXACT, ["bob", "eve"]).execute(people))
    assert names == {"2", "5"}


def test_conditions_are_anded(people):
    query = (
        QueryBuilder()
        .filter("age", OP_NUM_GE, 25)
        .filter("tags", OP_STR_ANY, "red")
        .filter("name", OP_STR_CONTAINS, "a")
    )
    assert set(query.execute(people)) == {"1", "4"}


def ordered(column: str, numeric: bool, descending: bool):
    """Keys having ``column``, ordered as TC orders them; keys lacking it come last."""
    having = [k for k in RECORDS if column in RECORDS[k]]
    keyfunc = (lambda k: float(RECORDS[k][column])) if numeric else (lambda k: RECORDS[k][column].encode())
    return sorted(having, key=keyfunc, reverse=descending), {k for k in RECORDS if column not in RECORDS[k]}


@pytest.mark.parametrize(
    "column, ordering, numeric, descending",
    [
        ("name", ORDER_STR_ASC, False, False),
        ("name", ORDER_STR_DESC, False, True),
        ("age", ORDER_NUM_ASC, True, False),
        ("age", ORDER_NUM_DESC, True, True),
        ("age", ORDER_STR_ASC, False, False),  # lexical: "100" < "25" < "7"
        ("score", ORDER_NUM_DESC, True, True),
    ],
)
def test_each_ordering(people, column, ordering, numeric, descending):
    head, missing = ordered(column, numeric, descending)
    keys = QueryBuilder().order_by(column, ordering).execute(people)
    assert keys[: len(head)] == head
    assert set(keys[len(head) :]) == missing  # records without the column go last


def test_default_ordering_is_lexical_ascending(people):
    head, _ = ordered("name", False, False)
    assert QueryBuilder().order_by("name").execute(people) == head  # every record has a name
    assert head[0] == "6"  # "Frank": byte order puts capitals first


def test_limit_and_offset(people):
    by_age, _ = ordered("age", True, False)
    query = lambda: QueryBuilder().filter("age", OP_NUM_GE, 0).order_by("age", ORDER_NUM_ASC)  # noqa: E731
    assert query().limit(3).execute(people) == by_age[:3]
    assert query().limit(2).offset(2).execute(people) == by_age[2:4]
    assert query().offset(5).execute(people) == by_age[5:]
    assert query().limit(0).execute(people) == []
    assert query().limit(100).offset(100).execute(people) == []
    assert query().limit(3).offset(1).count(people) == 3
    assert query().limit(None).offset(None).execute(people) == by_age


def test_get_returns_the_records(people):
    rows = QueryBuilder().filter("age", OP_NUM_LT, 30).order_by("age", ORDER_NUM_ASC).get(people)
    assert rows == [(k, RECORDS[k]) for k in ("6", "2", "5")]
    assert QueryBuilder().filter("name", OP_STR_EQ, "nobody").get(people) == []


def test_delete_removes_exactly_the_matches(people):
    query = QueryBuilder().filter("tags", OP_STR_ANY, "blue")
    doomed = expected_keys("tags", OP_STR_ANY, "blue")
    assert query.delete(people) is True
    assert set(people.keys()) == set(RECORDS) - doomed
    assert query.execute(people) == [] and query.count(people) == 0
    assert people.get_bulk(list(RECORDS)) == {k: v for k, v in RECORDS.items() if k not in doomed}


def test_build_search_and_bad_arguments():
    query = QueryBuilder().filter("age", OP_NUM_GE | OP_NEGATE, 5).order_by("name", ORDER_STR_DESC).limit(10)
    assert query.build_search() == [
        ("addcond", b"age", OP_NUM_GE | OP_NEGATE, b"5"),
        ("setorder", b"name", ORDER_STR_DESC),
        ("setlimit", 10, 0),
    ]
    assert QueryBuilder().offset(3).build_search() == [("setlimit", -1, 3)]
    with pytest.raises(ValueError, match="operator"):
        QueryBuilder().filter("a", 99, "x")
    with pytest.raises(ValueError, match="ordering"):
        QueryBuilder().order_by("a", 7)
    with pytest.raises(ValueError):
        QueryBuilder().limit(-1)
    with pytest.raises(TypeError):
        QueryBuilder().offset("3")
