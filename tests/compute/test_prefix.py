"""compute.prefix: the store's long ranges from prefix sums at the top-level block boundaries.

Every answer is compared with :func:`compute.profile.volume_profile` on the raw trades of exactly
that range (the real recording: 12 h of BTCUSDT), with chains of 24 and 3 hour blocks so that
ranges cross chain boundaries, with partial edge minutes, after late trades rebuild a block and
after a trim cuts one.
"""

from __future__ import annotations

import numpy as np
import pytest

from compute.batch import TradeBatch
from compute.incremental import ProfileStore
from compute.prefix import PrefixSums
from compute.profile import volume_profile
from feeds.readers import read_trades

TICK = 0.01
HOUR = 3_600_000


@pytest.fixture(scope="module")
def rec(recording_path) -> TradeBatch:
    return read_trades(recording_path)


def _store(b: TradeBatch, chain: int) -> ProfileStore:
    s = ProfileStore(TICK)
    s._prefix = PrefixSums(chain)  # small chains: a 12 h recording crosses several
    t = b.time
    edges = np.searchsorted(t, np.arange(int(t[0]) // 60_000 * 60_000, int(t[-1]) + 60_001, 60_000))
    for a, z in zip(edges[:-1], edges[1:], strict=True):
        if z > a:
            s.update(b.take(slice(a, z)))
    return s


def _ranges(b: TradeBatch) -> list[tuple[int, int]]:
    t0, t1 = int(b.time[0]), int(b.time[-1]) + 1
    h0 = t0 // HOUR * HOUR
    i = int(np.searchsorted(b.time, h0 + 3 * HOUR))  # the trades either side of a block edge
    return [
        (t0, t1),                                   # everything
        (t0 + 61_237, t1 - 59_999),                 # partial edge minutes on both sides
        (h0 + HOUR + 17, h0 + 9 * HOUR - 17),       # 8 hours minus a few ms at each end
        (h0 + HOUR, h0 + 9 * HOUR),                 # exactly on hour boundaries
        (h0 + 2 * HOUR + 600_000, h0 + 7 * HOUR + 1_234),
        (int(b.time[i - 1]), int(b.time[i]) + 1),   # the two trades around a block edge
    ]


@pytest.mark.parametrize("chain", [24, 3])
def test_long_ranges_equal_recompute(rec, chain):
    store = _store(rec, chain)
    for s, e in _ranges(rec):
        for rs in (0.01, 1.0):
            assert store.volume_profile(s, e, rs).to_dict() == volume_profile(rec, TICK, rs, start=s, end=e).to_dict()
    assert store._prefix._s, "the long ranges did not go through the prefix sums"


def test_prefix_is_two_subtractions_per_chain(rec):
    """``S[last] - S[first] + B[first]`` equals adding the blocks one by one."""
    store = _store(rec, 24)
    top = len(store._lv) - 1
    blocks, ids = store._blocks[top], store._block_ids[top]
    run = ids[2:9]
    lo = min(blocks[k].lo for k in run)
    hi = max(blocks[k].hi for k in run)
    want = [np.zeros(hi - lo + 1, np.int64) for _ in range(3)]
    for k in run:
        blk = blocks[k]
        tt = blk.traded_ticks() - lo
        sel = slice(None) if not blk.dense else np.flatnonzero(blk.cnt)
        for w, col in zip(want, (blk.vol, blk.buy, blk.cnt), strict=True):
            np.add.at(w, tt, np.asarray(col)[sel])
    got = [np.zeros(hi - lo + 1, np.int64) for _ in range(3)]
    store._prefix.add_run(*got, lo, run, blocks, ids)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # computed lazily: every entry of the chain up to the last block asked for, none after it
    assert sorted(store._prefix._s) == ids[: ids.index(run[-1]) + 1]


@pytest.mark.parametrize("chain", [24, 3])
def test_late_trades_rebuild_and_invalidate(rec, chain):
    """Trades of hour 3 arrive after hours 4..11 were queried: its block and the prefixes after it change."""
    h0 = int(rec.time[0]) // HOUR * HOUR
    late = (rec.time >= h0 + 3 * HOUR + 1_800_000) & (rec.time < h0 + 3 * HOUR + 1_900_000)
    store = _store(rec.take(~late), chain)
    s, e = h0 + HOUR + 5, int(rec.time[-1]) + 1
    before = store.volume_profile(s, e, 1.0)
    store.update(rec.take(late))
    after = store.volume_profile(s, e, 1.0)
    assert after.trades == before.trades + int(late.sum())
    assert after.to_dict() == volume_profile(rec, TICK, 1.0, start=s, end=e).to_dict()


def test_trim_mid_block_keeps_later_ranges_exact(rec):
    store = _store(rec, 3)
    h0 = int(rec.time[0]) // HOUR * HOUR
    store.volume_profile(None, None, 1.0)  # fill the prefixes before the trim
    cut = h0 + 4 * HOUR + 25 * 60_000
    store.trim(cut)
    kept = rec.take(rec.time >= store.horizon)
    for s, e in ((store.horizon, int(rec.time[-1]) + 1), (cut + 7, h0 + 11 * HOUR - 3)):
        assert store.volume_profile(s, e, 1.0).to_dict() == volume_profile(kept, TICK, 1.0, start=s, end=e).to_dict()
    assert min(store._prefix._s) >= -(-cut // HOUR), "entries of trimmed blocks are dropped"


@pytest.mark.parametrize("tpr", [1, 2, 3, 7, 10, 50, 100, 1000, 12_345, 2**20 + 1])
def test_multiply_shift_division_is_exact(tpr):
    from compute.kernels import divider

    m, s = divider(tpr)
    rng = np.random.default_rng(tpr)
    n = np.concatenate([np.arange(0, 5 * tpr + 3), rng.integers(0, 2**31, 200_000), 2**31 - 1 - np.arange(3 * tpr)])
    n = n[(n >= 0) & (n < 2**31)].astype(np.int64)
    np.testing.assert_array_equal((n * m) >> s, n // tpr)


def test_row_sizes_cycling_past_the_fold_cache_stay_exact(rec):
    """Four row sizes in turn (the caches keep two): every answer equals the recompute."""
    store = _store(rec, 24)
    s, e = int(rec.time[0]) + 61_237, int(rec.time[-1]) - 59_999
    for rs in (0.5, 1.0, 0.05, 2.5, 0.5, 1.0, 0.05):
        assert store.volume_profile(s, e, rs).to_dict() == volume_profile(rec, TICK, rs, start=s, end=e).to_dict()
    assert len(store._prefix._tprs) == 2 and {k[1] for k in store._prefix._folds} == {5, 100}
    top = store._blocks[len(store._lv) - 1]
    assert all(len(b.folds or {}) <= 2 for b in top.values())
