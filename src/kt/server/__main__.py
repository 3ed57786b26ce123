"""``python -m kt.server kt|tt [options] [db...]`` and the ``kt-server`` console script."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: kt-server kt [ktserver options] [db ...]    Kyoto Tycoon compatible server
       kt-server tt [ttserver options] [db]        Tokyo Tyrant compatible server
Run "kt-server kt -h" or "kt-server tt -h" for the options.
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("kt", "tt"):
        sys.stderr.write(USAGE)
        return 1
    flavour, rest = args[0], args[1:]
    if flavour == "kt":
        from kt.server.kt_server import main as kt_main

        return kt_main(rest)
    from kt.server.tt_server import main as tt_main

    return tt_main(rest)


if __name__ == "__main__":
    sys.exit(main())
