"""The quick start: start the bundled servers, store and read data with both clients.

Run it with ``./scripts/quickstart`` (which installs what is needed first).
"""

from __future__ import annotations

import datetime

from kt import (
    KT_JSON,
    TT_TABLE,
    EmbeddedServer,
    EmbeddedTokyoTyrantServer,
    KyotoTycoon,
    QueryBuilder,
    TokyoTyrant,
)
from kt.tokyotyrant import INDEX_NUM, OP_NUM_GE, ORDER_NUM_DESC


def _flavour(server) -> str:
    return "kt's bundled server" if server.bundled else "the real server"


def kyoto_tycoon_demo() -> None:
    # The real ktserver is used when it is on PATH; otherwise kt's bundled server.
    with EmbeddedServer(database="%") as server:
        print(f"Kyoto Tycoon server on {server.host}:{server.port} ({_flavour(server)})")
        db = KyotoTycoon(server.host, server.port, serializer=KT_JSON)
        db.set("user:1", {"name": "Ada", "langs": ["en", "fr"]})
        db.set_bulk({"user:2": {"name": "Grace"}, "user:3": {"name": "Linus"}})
        db.set("session:xyz", {"user": 1}, expire_time=datetime.timedelta(minutes=5))
        print("  get user:1          ->", db.get("user:1"))
        print("  get_bulk user:2,3   ->", db.get_bulk(["user:2", "user:3"]))
        print("  match_prefix user:  ->", db.match_prefix("user:"))
        print("  incr hits by 5      ->", db.incr("hits", 5))
        print("  count               ->", len(db))
        db.close()


def tokyo_tyrant_demo(tmpdir: str) -> None:
    with EmbeddedTokyoTyrantServer(database=f"{tmpdir}/people.tct") as server:
        print(f"Tokyo Tyrant server on {server.host}:{server.port} ({_flavour(server)})")
        db = TokyoTyrant(server.host, server.port, serializer=TT_TABLE)
        db.set_index("age", INDEX_NUM)
        db.set_bulk(
            {
                "ada": {"name": "Ada", "age": "36"},
                "grace": {"name": "Grace", "age": "85"},
                "linus": {"name": "Linus", "age": "28"},
            }
        )
        query = QueryBuilder().filter("age", OP_NUM_GE, 30).order_by("age", ORDER_NUM_DESC)
        print("  age >= 30, oldest first ->", query.execute(db))
        print("  get ada                 ->", db.get("ada"))
        db.close()


if __name__ == "__main__":
    import tempfile

    kyoto_tycoon_demo()
    with tempfile.TemporaryDirectory() as tmp:
        tokyo_tyrant_demo(tmp)
    print("quickstart: done")
