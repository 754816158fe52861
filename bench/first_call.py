"""The first call after another library's, against a second call right
after it: what interleaving contenders call by call costs each of them.

    python bench/first_call.py LAT fwd
    python bench/first_call.py S fwd+bwd --rounds 40

One thread. In each round every contender (crnn, NumPy, torch when it
imports; test_bench_layer.contender) makes two calls in a row, the order of
the contenders rotating from round to round; prints, per dtype, the median
ms of each contender's first and second calls. The first runs with the
caches holding the previous contender's data: this is why an interleaved
turn at one thread is an untimed call, then a timed one (test_bench_layer.
il_turn).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
from harness import limit_threads, torch  # noqa: E402  (bench/, beside this file)
from test_bench_layer import CONFIGS, contender  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", choices=sorted(CONFIGS))
    ap.add_argument("pas", choices=["fwd", "fwd+bwd"])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    impls = ["crnn", "numpy"] + (["torch"] if torch is not None else [])
    for dt in (np.float32, np.float64):
        fns = {impl: contender(args.config, impl, dt, args.pas, 1)[0] for impl in impls}
        ms = {(impl, k): [] for impl in impls for k in (0, 1)}
        with limit_threads(1):
            for fn in fns.values():
                fn()
            for r in range(args.rounds):
                for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
                    for k in (0, 1):
                        t = time.perf_counter()
                        fns[impl]()
                        ms[impl, k].append((time.perf_counter() - t) * 1e3)
        cells = [f"{impl} {statistics.median(ms[impl, 0]):.3f} / {statistics.median(ms[impl, 1]):.3f}"
                 for impl in impls]
        print(f"{args.config} {args.pas} {np.dtype(dt).name}, median ms first / second call: "
              + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
