"""A ``dask.distributed`` client for the research functions: an existing cluster, or worker processes here.

:func:`dask_client` attaches to the scheduler at ``address``, else at ``DASK_SCHEDULER_ADDRESS`` (Dask's own
configuration variable, ``dask.config.get("scheduler-address")``), else starts a ``LocalCluster`` of worker
processes on this machine. While the client is open it is Dask's default, so :mod:`compute.dask` and
``load_history(..., dask=True)`` run on it without being told; pass ``client=`` to choose explicitly.

History on a real cluster is read by the workers themselves: give :func:`feeds.history.load_history` an
fsspec URL the workers can reach (``s3://bucket/trades`` with s3fs, ``file://`` on a shared disk).
"""

from __future__ import annotations

import os

from compute.extras import need

dask = need("dask", "engine.cluster (a Dask client)")


def scheduler_address(address: str | None = None) -> str | None:
    """The scheduler to attach to: ``address``, else Dask's ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``)."""
    return address or dask.config.get("scheduler-address", None) or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def dask_client(address: str | None = None, n_workers: int | None = None, processes: bool = True, **cluster_kw):
    """A ``distributed.Client``: attached to :func:`scheduler_address`, else to a new ``LocalCluster``.

    Parameters
    ----------
    address : str, optional
        ``tcp://host:8786`` of a running scheduler (default: ``DASK_SCHEDULER_ADDRESS``, else a local cluster).
    n_workers : int, optional
        Local cluster only: worker processes (default: the cores, at most 4), one thread each.
    processes : bool
        Local cluster only: workers in processes (default; no GIL between them) or threads.
    cluster_kw
        Further ``LocalCluster`` arguments (``memory_limit``...).

    Returns
    -------
    distributed.Client
        Use it as a context manager: closing it also stops a local cluster it started.

    Raises
    ------
    OSError
        The scheduler at ``address`` cannot be reached (``distributed``'s own error, after its timeout).
    """
    Client = need("distributed", "engine.cluster.dask_client").Client

    addr = scheduler_address(address)
    if addr:
        return Client(addr)
    # no address: the Client starts a LocalCluster of its own and stops it when closed
    return Client(n_workers=n_workers or max(1, min(4, os.cpu_count() or 1)), threads_per_worker=1,
                  processes=processes, dashboard_address=None, **cluster_kw)
