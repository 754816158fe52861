"""The cache of freed output blocks behind crnn's output arrays (crnn/_core.pyx,
`empty`): a block is reused only after NumPy has freed its array, the cache
stays within its slot and byte limits, and tracemalloc still sees the arrays."""
import gc
import tracemalloc

import numpy as np
import pytest

import crnn
from crnn import _core

KEEP = 1 << 18          # blocks from 256 KiB up are kept


@pytest.fixture(autouse=True)
def empty_pool():
    gc.collect()
    _core.release_memory()
    yield
    _core.release_memory()


def test_a_freed_block_is_reused_for_the_same_size_only():
    a, = _core.empty(np.float64, (KEEP // 8,))
    addr = a.ctypes.data
    del a
    assert _core.pool_info() == (1, KEEP)
    assert crnn.release_memory() == KEEP and _core.pool_info() == (0, 0)
    a, = _core.empty(np.float64, (KEEP // 8,))
    addr = a.ctypes.data
    del a
    other, = _core.empty(np.float64, (KEEP // 8 + 1,))     # another size: not the block
    assert other.ctypes.data != addr and _core.pool_info() == (1, KEEP)
    b, = _core.empty(np.float32, (KEEP // 4,))             # same bytes, other dtype: reused
    assert b.ctypes.data == addr and _core.pool_info() == (0, 0)


def test_small_blocks_are_not_kept():
    a, b = _core.empty(np.float64, (KEEP // 8 - 1,), (10,))
    del a, b
    assert _core.pool_info() == (0, 0)


def test_the_cache_keeps_at_most_eight_blocks_and_its_byte_cap():
    arrays = _core.empty(np.uint8, *[(KEEP + i,) for i in range(12)])
    for i in range(12):                 # freed in this order
        arrays[i] = None
    n, nbytes = _core.pool_info()
    assert n == 8
    assert nbytes == sum(KEEP + i for i in range(4, 12))   # the oldest four evicted
    big = _core.empty(np.uint8, (200 << 20,), (100 << 20,))  # 300 MiB > the 256 MiB cap
    del big
    n, nbytes = _core.pool_info()
    assert nbytes <= 256 << 20 and n >= 1
    huge, = _core.empty(np.uint8, ((256 << 20) + 1,))         # beyond the cap: never kept
    del huge
    assert _core.pool_info()[1] <= 256 << 20


def test_live_outputs_never_share_memory():
    T, B, D, H = 3, 700, 4, 32          # hs and dx above the 256 KiB threshold
    layer = crnn.Layer(D, H, seed=0)
    rng = np.random.default_rng(0)
    outs = []
    for k in range(4):
        x = rng.standard_normal((T, B, D))
        y, h = layer.forward(x)
        dx, dh0 = layer.backward(np.ones_like(y))
        outs.append((x, y.copy(), dx.copy(), (y, h, dx, dh0)))
        del y, h, dx, dh0
    live = [a for *_, arrs in outs for a in arrs]
    for i, a in enumerate(live):
        for b in live[i + 1:]:
            assert not np.shares_memory(a, b)
    for x, y_copy, dx_copy, (y, h, dx, dh0) in outs:    # nothing overwrote them
        np.testing.assert_array_equal(y, y_copy)
        np.testing.assert_array_equal(dx, dx_copy)


def test_outputs_reuse_freed_blocks_across_calls():
    T, B, D, H = 2, 3200, 10, 128       # hs is 6.25 MiB
    layer = crnn.Layer(D, H, seed=0)
    x = np.random.default_rng(1).standard_normal((T, B, D))
    y, _ = layer.forward(x)
    first = y.ctypes.data
    del y
    y2, _ = layer.forward(x)            # the layer drops its stored hs first
    assert y2.ctypes.data == first


def test_tracemalloc_sees_cached_allocations():
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        a, = _core.empty(np.float64, (KEEP,))
        now, _ = tracemalloc.get_traced_memory()
        assert now - base >= a.nbytes
        del a
        after, _ = tracemalloc.get_traced_memory()
        assert after - base < KEEP        # freed as far as tracemalloc is concerned
        b, = _core.empty(np.float64, (KEEP,))   # a cached block, traced again
        again, _ = tracemalloc.get_traced_memory()
        assert again - base >= b.nbytes
    finally:
        tracemalloc.stop()
