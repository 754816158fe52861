"""Helpers shared by crnn's benchmarks (bench/test_bench_*.py, bench/memory.py).

- `limit_threads(n)`: n BLAS threads (threadpoolctl, every OpenBLAS/OpenMP in
  the process) and n torch intra-op threads, for the duration of a block.
- `measure(benchmark, fn, group=..., **info)`: pedantic timing with enough
  rounds for a median (>= MIN_ROUNDS, about BUDGET seconds per benchmark),
  `info` stored in extra_info for bench/ratios.py.
- torch is a contender only when it imports; CRNN_BENCH_NO_TORCH=1 leaves it
  out even then (a run "without torch" on a machine that has it).
"""
import contextlib
import os
import time

import pytest
from threadpoolctl import threadpool_limits

if os.environ.get("CRNN_BENCH_NO_TORCH", "") not in ("", "0"):
    torch = None
    TORCH_SKIP = "torch disabled by CRNN_BENCH_NO_TORCH"
else:
    try:
        import torch
    except ImportError:
        torch = None
    TORCH_SKIP = "torch not installed"

BUDGET = float(os.environ.get("CRNN_BENCH_BUDGET", "1.0"))   # seconds per benchmark, roughly
MIN_ROUNDS = 5
MAX_ROUNDS = 200


def need_torch():
    if torch is None:
        pytest.skip(TORCH_SKIP)
    return torch


@contextlib.contextmanager
def limit_threads(n):
    """n threads for BLAS (and OpenMP) and for torch, restored afterwards."""
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def measure(benchmark, fn, *, group, **info):
    """Time fn() in pedantic mode; rounds from a calibration call so that each
    benchmark takes about BUDGET seconds, never fewer than MIN_ROUNDS."""
    fn()                                   # warm-up: lazy init, first touch of buffers
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(BUDGET / max(dt, 1e-9))))
    benchmark.group = group
    benchmark.extra_info.update(info)
    benchmark.extra_info["loadavg"] = os.getloadavg()[0]
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
