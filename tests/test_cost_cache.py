"""The cost models' price caches are bounded in bytes, not only in entries (issue 13): their
arrays grow with the batch, so a count bound let a what-if search at batch 8 hold ~0.9 GB."""

from __future__ import annotations

import numpy as np
from tilec.targets.base import BytesLRU, held_bytes


def test_held_bytes_counts_arrays_through_containers_views_and_closures() -> None:
    a = np.zeros(1000, dtype=np.int64)  # 8000 B
    b = np.zeros(500, dtype=np.int32)  # 2000 B
    t = {"x": a, "y": [b, a[10:20]]}  # the view's bytes belong to a: counted once

    def cost_of(i: int) -> int:
        return int(t["x"][i])

    assert held_bytes(t) == 10_000
    assert held_bytes((cost_of, a)) == 10_000  # the closure keeps t alive
    assert held_bytes(a[::2]) == 8000  # a view holds its whole base
    assert held_bytes({"n": 3, "s": "text"}) == 0


def test_bytes_lru_drops_the_least_recently_used_beyond_its_bytes() -> None:
    cache = BytesLRU(max_bytes=25_000, max_items=100)
    for k in range(3):
        cache[k] = (np.zeros(1000, dtype=np.int64),)  # 8000 B each
    assert len(cache) == 3 and cache.bytes == 24_000
    assert cache.get(0) is not None  # 0 is now the most recently used
    cache[3] = (np.zeros(1000, dtype=np.int64),)
    assert 1 not in cache and {0, 2, 3} <= {k for k in range(4) if k in cache}
    assert cache.bytes == 24_000
    cache[2] = (np.zeros(2000, dtype=np.int64),)  # replacing an entry re-counts it
    assert cache.bytes <= 25_000 and 2 in cache
    big = BytesLRU(max_bytes=10, max_items=100)
    big["only"] = (np.zeros(100),)  # one entry over the bound is still kept (it is in use)
    assert big.get("only") is not None
    counted = BytesLRU(max_bytes=10**9, max_items=2)
    for k in range(5):
        counted[k] = k
    assert len(counted) == 2 and 4 in counted and 3 in counted


def test_ipu_conv_prices_stay_within_their_bytes_at_many_batches(monkeypatch) -> None:
    """Pricing a large conv at batches 1..12 (as a what-if search does) keeps the IPU's caches
    within their bounds (made small here: 4 MB), and prices made again after their entries were
    dropped are the same."""
    import tilec.targets.base as base
    import tilec.targets.ipu as ipu
    from test_cost_ipu import conv
    from tilec.targets import load_target

    def priced(batch: int) -> list[tuple]:
        model = load_target("gc200").cost_model  # a fresh model: no per-model split memo
        return [(s, model.cost(op, s).peak_bytes) for op in [conv(n=batch, cin=256, cout=256,
                                                                  hw=112)]
                for s in model.splits(op)]

    for cache in (ipu._RAW, ipu._ROWS):
        monkeypatch.setattr(cache, "max_bytes", 4 * 2**20)
        cache.clear()  # what earlier tests priced would count towards the entries below
    first = priced(1)
    for b in range(1, 13):
        priced(b)
        for cache in (ipu._RAW, ipu._ROWS):
            assert cache.bytes <= cache.max_bytes or len(cache) == 1
    assert len(ipu._RAW) < 12 and len(ipu._ROWS) < 12  # entries were dropped
    base._STORES.clear()  # (the priced blocks too: everything is priced again)
    assert priced(1) == first
