"""A pytest plugin (``-p pytest_groups`` in pyproject's addopts): how a parallel run (pytest-xdist) shares the tests.

Each test file (and each notebook) runs whole in one worker, so its module fixtures (a served replay, an ingested
Redis) are made once and a notebook's cells run in order in one kernel; and every file that drives Chromium runs
in one and the same worker, one test at a time as in a serial run: two browser tests at once on 2 cores made
both slow and their mouse drags flaky, while the other worker runs the rest.
"""

from __future__ import annotations

from pathlib import Path

_BROWSER_WORDS = ("chromium", "playwright", "export_all", "page_server")
_memo: dict[Path, bool] = {}


def drives_a_browser(path: Path) -> bool:
    """Whether the test file or notebook at ``path`` starts Chromium (directly, through the PNG export, or
    through the browser tests' server fixture)."""
    if path not in _memo:
        try:
            text = path.read_text(errors="replace").lower()
        except OSError:
            text = ""
        _memo[path] = any(w in text for w in _BROWSER_WORDS)
    return _memo[path]


def pytest_xdist_make_scheduler(config, log):
    """Scope = the test's file, or ``browser`` for every file that drives Chromium (xdist's LoadScope otherwise)."""
    from xdist.scheduler import LoadScopeScheduling

    root = Path(config.rootpath)

    class FileOrBrowserScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "browser" if drives_a_browser(root / path) else path

    return FileOrBrowserScheduling(config, log)
