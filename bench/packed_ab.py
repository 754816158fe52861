"""A/B of the time loop's two paths: W_hh packed once per call (crnn.h, the
default where the CPU has AVX2+FMA) against every per-step product on the
BLAS (packed=False), same process, same inputs, rounds interleaved so that
machine load hits both alike. One BLAS thread.

    python bench/packed_ab.py                    # LAT, S, M, L; float32 and float64
    python bench/packed_ab.py S M --rounds 12

Prints, per config and dtype, forward+backward ms (min and median over the
rounds) for each path and the ratio of the medians (BLAS / packed).
"""
import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
import crnn  # noqa: E402  (the installed one wins when there is one)
from crnn import _core  # noqa: E402

CONFIGS = {  # (T, B, D, H), calls per round
    "LAT": ((1000, 1, 32, 128), 10),
    "S": ((100, 32, 64, 128), 20),
    "M": ((100, 64, 256, 512), 2),
    "L": ((50, 128, 1024, 1024), 1),
}


def fwd_bwd(layer, x, dy, packed):
    T, B = x.shape[:2]
    sizes = layer._sizes(T, B)
    hs, _, _ = _core.elman_forward(x, None, None, None, layer.params, packed=packed, **sizes)
    _core.elman_backward(dy, None, hs, None, x, None, None, None, layer.params, layer.grads,
                         True, packed=packed, **sizes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="*", metavar="CONFIG", help=" ".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    for name in args.configs:
        if name not in CONFIGS:
            ap.error(f"unknown config {name!r}: choose from {' '.join(CONFIGS)}")
    args.configs = args.configs or list(CONFIGS)
    print("| config | dtype | packed min | packed median | BLAS min | BLAS median | BLAS / packed |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        (T, B, D, H), calls = CONFIGS[name]
        for dtype in (np.float32, np.float64):
            layer = crnn.Layer(D, H, dtype=dtype, seed=0)
            rng = np.random.default_rng(0)
            x = rng.standard_normal((T, B, D)).astype(dtype)
            dy = rng.standard_normal((T, B, H)).astype(dtype)
            ms = {True: [], False: []}
            with threadpool_limits(1):
                for _ in range(args.rounds):
                    for packed in (True, False):
                        fwd_bwd(layer, x, dy, packed)          # warm
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            fwd_bwd(layer, x, dy, packed)
                        ms[packed].append((time.perf_counter() - t0) / calls * 1e3)
            p, b = np.array(ms[True]), np.array(ms[False])
            print(f"| {name} | {np.dtype(dtype).name} | {p.min():.2f} | {np.median(p):.2f} | "
                  f"{b.min():.2f} | {np.median(b):.2f} | {np.median(b) / np.median(p):.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
