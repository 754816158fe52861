"""TOKPROJ (T = 1, B = 3200, D = 100 token ids, H = 128, identity): crnn's
token forward against the memory work it cannot avoid and against its
one-hot forward, the ratio the performance target reads, on one thread or
two.

    python bench/tokproj_floor.py
    python bench/tokproj_floor.py --threads 2

Times in ms over --calls calls in each of --rounds rounds (the ways
alternating; the median over the rounds), and each as a share of the
one-hot forward:
- tokens: Layer.forward(ids), the median call;
- one-hot: Layer.forward(one_hot(ids)), the dense input path, the median call;
- NumPy's memory work: arrays of hs's and h_last's shapes, preallocated,
  written by NumPy -- hs filled with a constant, then copied into h_last --
  the writes any token forward returning hs and h_last makes, and no more.
  On one thread the median call; on two, each of two Python threads writes
  its half of the rows, --calls times in a row, both at once (NumPy lets go
  of the GIL while it fills and copies), and the time is the elapsed time
  over --calls: the two cores' write throughput, without any handoff;
- fixed: Layer(4, 4).forward of one token, the cost of a call, the median.
crnn runs on the given number of threads (its own two at two).
"""
import argparse
import statistics
import threading
import time

import numpy as np
from threadpoolctl import threadpool_limits

from core_ab import which  # bench/, beside this file; puts the checkout on sys.path
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


def numpy_work_ms(hs, h_last, calls, threads):
    """ms per call of NumPy's memory work on `threads` threads (see above)."""
    def work(a, b, n):
        for _ in range(n):
            a.fill(0.5)
            np.copyto(b, a)

    if threads == 1:
        return median_ms(lambda: work(hs, h_last, 1), calls)
    cuts = [B * i // threads for i in range(threads + 1)]
    workers = [threading.Thread(target=work, args=(hs[lo:hi], h_last[lo:hi], calls))
               for lo, hi in zip(cuts, cuts[1:])]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - t) / calls * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    args = ap.parse_args()
    n = args.threads
    print(f"{which()}; {n} thread{'s' if n > 1 else ''}; ms (share of the one-hot forward)")
    with threadpool_limits(n):
        for dtype in (np.float32, np.float64):
            layer = crnn.Layer(D, H, activation="identity", dtype=dtype, seed=0)
            ids = np.random.default_rng(0).integers(0, D, size=(T, B))
            onehot = np.eye(D, dtype=dtype)[ids]
            hs, h_last = np.empty((T * B, H), dtype), np.empty((B, H), dtype)
            tiny = crnn.Layer(4, 4, activation="identity", dtype=dtype, seed=0)
            one_id = np.zeros((1, 1), dtype=np.int64)
            ways = {"tokens": lambda: median_ms(lambda: layer.forward(ids), args.calls),
                    "one-hot": lambda: median_ms(lambda: layer.forward(onehot), args.calls),
                    "NumPy's memory work": lambda: numpy_work_ms(hs, h_last, args.calls, n),
                    "fixed": lambda: median_ms(lambda: tiny.forward(one_id), args.calls)}
            ms = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    ms[name].append(way())
            med = {name: statistics.median(v) for name, v in ms.items()}
            cells = [f"{name} {v:.3f} ({100 * v / med['one-hot']:.1f} %)" for name, v in med.items()]
            print(f"{np.dtype(dtype).name}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
