"""TOKPROJ (T = 1, B = 3200, D = 100 token ids, H = 128, identity, one
thread): crnn's token forward against the memory work it cannot avoid and
against its one-hot forward, the ratio the performance target reads.

    python bench/tokproj_floor.py

Times, median ms over --calls calls in each of --rounds rounds (the ways
alternating), and each as a share of the one-hot forward:
- tokens: Layer.forward(ids);
- one-hot: Layer.forward(one_hot(ids)), the dense input path;
- NumPy's memory work: arrays of hs's and h_last's shapes, preallocated,
  written by NumPy -- hs filled with a constant, then copied into h_last --
  the writes any token forward returning hs and h_last makes, and no more;
- fixed: Layer(4, 4).forward of one token, the cost of a call.
"""
import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import crnn

T, B, D, H = 1, 3200, 100, 128


def median_ms(fn, calls):
    fn()
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    print(f"crnn {crnn.__version__}; one thread; median ms (share of the one-hot forward)")
    with threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            layer = crnn.Layer(D, H, activation="identity", dtype=dtype, seed=0)
            ids = np.random.default_rng(0).integers(0, D, size=(T, B))
            onehot = np.eye(D, dtype=dtype)[ids]
            hs, h_last = np.empty((T * B, H), dtype), np.empty((B, H), dtype)

            def numpy_work():
                hs.fill(0.5)
                np.copyto(h_last, hs)

            tiny = crnn.Layer(4, 4, activation="identity", dtype=dtype, seed=0)
            one_id = np.zeros((1, 1), dtype=np.int64)
            ways = {"tokens": lambda: layer.forward(ids),
                    "one-hot": lambda: layer.forward(onehot),
                    "NumPy's memory work": numpy_work,
                    "fixed": lambda: tiny.forward(one_id)}
            ms = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, fn in ways.items():
                    ms[name].append(median_ms(fn, args.calls))
            med = {name: statistics.median(v) for name, v in ms.items()}
            cells = [f"{name} {v:.3f} ({100 * v / med['one-hot']:.1f} %)" for name, v in med.items()]
            print(f"{np.dtype(dtype).name}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
