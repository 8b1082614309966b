"""service/gcpause.py: frozen objects are left out of collections until a sweep; pauses are recorded."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from pathlib import Path

import pytest

from service.gcpause import PAUSES, GcFreezer, watch_pauses

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class Node:
    """A reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()  # give every object back to the collector for the other tests


def test_a_cycle_dropped_after_a_freeze_waits_for_the_sweep():
    freezer = GcFreezer()
    node = Node()
    ref = weakref.ref(node)
    freezer.freeze()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()  # a full collection no longer walks the frozen cycle
    assert ref() is not None
    freezer.sweep()
    assert ref() is None and gc.get_freeze_count() > 0 and freezer.sweeps == 1


def test_a_cycle_made_after_the_freeze_is_collected_as_usual():
    GcFreezer().freeze()
    node = Node()
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None


def test_full_collections_are_recorded_with_their_generation():
    watch_pauses()
    watch_pauses()  # once per process
    PAUSES.clear()
    gc.collect()
    assert [g for g, _ in PAUSES] == [2] and all(s >= 0 for _, s in PAUSES)


async def test_the_freezer_freezes_every_period_until_stopped():
    freezer = GcFreezer(freeze_s=0.5, sweep_s=10)
    task = freezer.start()
    assert freezer.start() is task  # one task per freezer
    for _ in range(100):
        if freezer.freezes >= 2:
            break
        await asyncio.sleep(0.1)
    assert freezer.freezes >= 2 and freezer.sweeps == 0 and gc.get_freeze_count() > 0
    freezer.stop()
    await asyncio.sleep(0)
    assert task.cancelled() and gc.get_freeze_count() == 0


def test_bounds_are_checked():
    with pytest.raises(ValueError):
        GcFreezer(freeze_s=0.1)


@pytest.mark.parametrize("argv", [["--gc-freeze-s", "0.1"], ["--gc-freeze-s", "5", "--gc-sweep-s", "1"]])
def test_serve_refuses_gc_periods_out_of_bounds(argv, capsys):
    import serve

    with pytest.raises(SystemExit):
        serve.parse_args(["--source", "replay", *argv])
    assert "--gc-freeze-s must be 0 or within 0.5-600" in capsys.readouterr().err


def test_serve_accepts_gc_off():
    import serve

    assert serve.parse_args(["--source", "replay", "--gc-freeze-s", "0"]).gc_freeze_s == 0
