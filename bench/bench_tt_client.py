"""The TokyoTyrant client against the raw-socket floor, side by side in one run.

Operations: get, set, get_bulk(1000), set_bulk(1000), setnr_bulk(1000) and an indexed table
search, each next to a bare socket sending the same pre-built request bytes (the floor: what a
sync client cannot beat).  Reports ops/s (records per second for the bulk forms) and the
client's CPU µs per op: the best of interleaved rounds, with the range of the per-round ratios.

    .venv/bin/python bench/bench_tt_client.py          # bundled server
    KT_BENCH_REAL=1 TTSERVER=/path/ttserver .venv/bin/python bench/bench_tt_client.py
"""

from __future__ import annotations

import os
import tempfile
from typing import Dict

from _common import QUICK, Measurement, RawSocket, bundled_server, compare, print_table, rows_for, value_of
from kt import KT_NONE, TT_TABLE
from kt.protocol import tt_binary as tt
from kt.tokyotyrant import OP_NUM_GE, ORDER_NUM_ASC, QueryBuilder, TokyoTyrant

BULK = 1000
# Many short interleaved rounds: on a busy machine this keeps the ratios fair.
ROUNDS = 5 if QUICK else 25
DURATION = 0.5 if QUICK else 5.0
VALUE = value_of(100)
TABLE_ROWS = 2000 if QUICK else 10000


def run(candidates, ops_per_call=None) -> Dict[str, Measurement]:
    return compare(candidates, ops_per_call=ops_per_call, rounds=ROUNDS, duration=DURATION)


def key_value_benchmarks(host: str, port: int) -> Dict[str, Dict[str, Measurement]]:
    db = TokyoTyrant(host, port, serializer=KT_NONE, decode_keys=False)
    raw = RawSocket(host, port)
    keys = [b"key:%06d" % i for i in range(BULK)]
    data = {k: VALUE for k in keys}
    assert db.set_bulk(data)
    results: Dict[str, Dict[str, Measurement]] = {}

    results["get"] = run(
        {"floor": raw.probed(tt.encode_get(keys[0]), tt.parse_get), "kt": lambda: db.get(b"key:000000")}
    )
    results["set"] = run(
        {"floor": raw.fixed(tt.encode_put(keys[1], VALUE), 1), "kt": lambda: db.set(b"key:000001", VALUE)}
    )
    per_call = {"floor": BULK, "kt": BULK}
    results[f"get_bulk({BULK})"] = run(
        {"floor": raw.probed(tt.encode_mget(keys), tt.parse_mget), "kt": lambda: db.get_bulk(keys)},
        ops_per_call=per_call,
    )
    putlist = tt.encode_misc(b"putlist", [part for k in keys for part in (k, VALUE)])
    results[f"set_bulk({BULK})"] = run(
        {"floor": raw.fixed(putlist, 5), "kt": lambda: db.set_bulk(data)}, ops_per_call=per_call
    )
    # No-reply writes followed by one read, so the time includes the server applying them.
    putnr = b"".join(tt.encode_putnr(k, VALUE) for k in keys) + tt.encode_get(keys[-1])

    def setnr_then_get() -> None:
        db.setnr_bulk(data)
        db.get(keys[-1])

    results[f"setnr_bulk({BULK}) + get"] = run(
        {"floor": raw.probed(putnr, tt.parse_get), "kt": setnr_then_get}, ops_per_call=per_call
    )
    assert db.get(keys[-1]) == VALUE
    raw.close()
    db.close()
    return results


def table_benchmark(host: str, port: int) -> Dict[str, Dict[str, Measurement]]:
    db = TokyoTyrant(host, port, serializer=TT_TABLE)
    rows = {str(i): {"name": f"user{i}", "age": str(i % 90)} for i in range(TABLE_ROWS)}
    for offset in range(0, TABLE_ROWS, 1000):
        chunk = dict(list(rows.items())[offset : offset + 1000])
        assert db.set_bulk(chunk)
    assert db.set_index("age", 1)
    query = QueryBuilder().filter("age", OP_NUM_GE, 80).order_by("age", ORDER_NUM_ASC).limit(100)
    expressions = query.build_search()
    request = tt.encode_misc(b"search", [tt.query_arg(*e) for e in expressions], tt.MISC_NO_UPDATE_LOG)
    assert len(query.execute(db)) == 100
    raw = RawSocket(host, port)
    result = {
        "table search (100 keys)": run(
            {"floor": raw.probed(request, tt.parse_misc), "kt": lambda: query.execute(db)}
        )
    }
    raw.close()
    db.close()
    return result


def main() -> None:
    results: Dict[str, Dict[str, Measurement]] = {}
    with bundled_server("tt", database="*", server_args=["-thnum", "4"]) as server:
        results.update(key_value_benchmarks(server.host, server.port))
    with tempfile.TemporaryDirectory() as tmp:
        with bundled_server("tt", database=os.path.join(tmp, "bench.tct")) as server:
            results.update(table_benchmark(server.host, server.port))
    flavour = "real ttserver" if os.environ.get("KT_BENCH_REAL") == "1" else "bundled server"
    print_table(
        *rows_for(results, baseline="floor"),
        title=f"TokyoTyrant client vs raw socket ({flavour}; bulk rows: records/s)",
    )


if __name__ == "__main__":
    main()
