"""Dask for real: a LocalCluster of two worker processes reads history through fsspec URLs and gives results
identical to the in-memory functions; ``memory://`` history loads like the same files on disk."""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd
import pytest
from test_history import raw, write_recorder  # noqa: F401 - raw: the recording's text as a fixture

import compute.dask as cd
from compute.heatmap import heatmap
from compute.profile import volume_profile
from engine.cluster import dask_client, scheduler_address
from feeds.history import load_history

TICK, ROW = 0.01, 5.0


def test_a_local_cluster_of_worker_processes_gives_the_in_memory_results(tmp_path, raw):  # noqa: F811
    write_recorder(tmp_path, raw, frames=False)  # 12 hourly Parquet parts
    mem = load_history(tmp_path, "usdm", "BTCUSDT", dask=False, progress=False)
    want_vp = volume_profile(mem, TICK, ROW)
    want_heat = heatmap(mem, int(mem.time.min()), int(mem.time.max()), float(mem.price.min()),
                        float(mem.price.max()), 300, 150, "count")
    with dask_client(n_workers=2, processes=True) as client:
        info = client.scheduler_info()["workers"]
        assert len(info) == 2
        ddf = load_history(tmp_path.as_uri(), "usdm", "BTCUSDT", dask=True, partition_rows=20_000)
        assert ddf.npartitions > 1
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
        assert len(worker_pids) == 2 and __import__("os").getpid() not in worker_pids  # separate processes
        got_vp = cd.volume_profile(ddf, TICK, ROW)  # no client= : the open client is Dask's default
        got_heat = cd.heatmap(ddf, int(mem.time.min()), int(mem.time.max()), float(mem.price.min()),
                              float(mem.price.max()), 300, 150, "count", client=client)
    assert got_vp.to_dict() == want_vp.to_dict()
    assert np.array_equal(got_heat.values, want_heat.values)
    assert int(got_heat.values.sum()) == len(mem) == len(raw)


def test_memory_url_history_loads_like_the_same_files_on_disk(tmp_path, raw):  # noqa: F811
    write_recorder(tmp_path, raw, frames=False)
    fs = fsspec.filesystem("memory")
    for p in tmp_path.rglob("*parquet*"):  # the writer's temporary file too: it must be skipped there as here
        fs.pipe(f"/hist/{p.relative_to(tmp_path).as_posix()}", p.read_bytes())
    try:
        disk = load_history(tmp_path, "usdm", "BTCUSDT", progress=False)
        url = load_history("memory://hist", "usdm", "BTCUSDT", progress=False)
        pd.testing.assert_frame_equal(url, disk)
        lazy = load_history("memory://hist", "usdm", "BTCUSDT", dask=True).compute()  # threads: same process
        pd.testing.assert_frame_equal(lazy.reset_index(drop=True), disk)
        with pytest.raises(FileNotFoundError, match="memory://nowhere"):
            load_history("memory://nowhere", "usdm")
    finally:
        fs.rm("/hist", recursive=True)


def test_scheduler_address_comes_from_dask_config():
    import dask

    assert scheduler_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:1"}):
        assert scheduler_address() == "tcp://127.0.0.1:1"
