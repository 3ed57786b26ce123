"""Check every local link of a built HTML site: the file exists and, with a #fragment, the id.

Sphinx's own linkcheck goes to the network; this stays on disk.  Usage:
``python docs/check_links.py docs/_build/html`` (exit code 1 and a list when a link is broken).
"""

from __future__ import annotations

import os
import re
import sys
from html.parser import HTMLParser
from typing import Dict, List, Set, Tuple
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: List[str] = []
        self.ids: Set[str] = set()

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])
        for attr in ("href", "src"):
            if values.get(attr) and tag in ("a", "img", "script", "link"):
                self.links.append(values[attr])


def check(root: str) -> List[str]:
    pages: Dict[str, _Page] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(folder, name)
                page = _Page()
                with open(path, encoding="utf-8") as f:
                    page.feed(f.read())
                pages[os.path.normpath(path)] = page
    broken = []
    for path, page in sorted(pages.items()):
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or re.match(r"^(mailto|javascript):", link):
                continue
            target = (
                os.path.normpath(os.path.join(os.path.dirname(path), unquote(parts.path)))
                if parts.path
                else path
            )
            if not os.path.exists(target):
                broken.append(f"{os.path.relpath(path, root)}: {link} (no such file)")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target in pages and fragment not in pages[target].ids:
                broken.append(f"{os.path.relpath(path, root)}: {link} (no such anchor)")
    return broken


def main(argv: List[str]) -> int:
    root = argv[1] if len(argv) > 1 else "docs/_build/html"
    broken = check(root)
    for line in broken:
        print(f"broken link: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
