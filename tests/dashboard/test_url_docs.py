"""The README's table of the page's URL parameters names every parameter the page reads, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.settings import URL_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_url_parameter():
    text = README.read_text()
    table = text[text.index("| `symbol` |"):]
    table = table[: table.index("\n\n")]
    documented = set()
    for line in table.splitlines():
        documented.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert documented == set(URL_NAMES.values()), (sorted(set(URL_NAMES.values()) - documented),
                                                   sorted(documented - set(URL_NAMES.values())))
