"""A/B of two builds on single steps: one forward of T = 1 token from a given
h0 (as crnn.train.generate makes per token), one thread, with the layer's
work (so W_hh is packed for the one product: pgemm_impl.h), in alternating
child processes (one process cannot import two builds of the extension).

    git worktree add /tmp/before HEAD~1 && (cd /tmp/before && python setup.py build_ext --inplace -q)
    python bench/step_ab.py /tmp/before . [--rounds 6]

Per (dtype, H, B): the median over rounds of each build's best-of-5 time per
call, microseconds, and B / A (below 1: the second build is faster).
"""
import argparse
import os
import statistics
import subprocess
import sys

CASES = [(128, 1), (512, 1), (1024, 1), (128, 8), (512, 8)]

CHILD = r"""
import os, sys, timeit
import numpy as np
checkout = sys.argv[1]
sys.path.insert(0, checkout)
import crnn
from crnn import _core
from threadpoolctl import threadpool_limits
if not os.path.abspath(crnn.__file__).startswith(checkout + os.sep):
    sys.exit(f"imported {crnn.__file__}, not the build in {checkout}")
out = []
with threadpool_limits(1):
    for dt in (np.float32, np.float64):
        for H, B in %r:
            layer = crnn.Layer(65, H, dtype=dt, seed=0)
            ids = np.zeros((1, B), np.int64)
            h = np.full((B, H), 0.1, dt)
            sizes = layer._sizes(1, B)
            work = layer._core_work(B, True)
            n = 200 if H < 1024 else 30
            t = timeit.repeat(lambda: _core.elman_forward(None, ids, h, None, layer.params,
                                                          work=work, **sizes),
                              number=n, repeat=5)
            out.append(min(t) / n * 1e6)
print(out)
""" % (CASES,)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    dirs = [os.path.abspath(args.a), os.path.abspath(args.b)]
    res = {d: [] for d in dirs}
    for r in range(args.rounds):
        for d in (dirs if r % 2 == 0 else dirs[::-1]):
            done = subprocess.run([sys.executable, "-c", CHILD, d], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"the child for {d} failed:\n{done.stderr}")
            res[d].append([float(v) for v in done.stdout.strip().strip("[]").split(",")])
    names = [f"{dt} H={H} B={B}" for dt in ("float32", "float64") for H, B in CASES]
    print(f"| case | A us | B us | B / A |  (A = {dirs[0]}, B = {dirs[1]}, {args.rounds} rounds)")
    print("|---|---|---|---|")
    for i, name in enumerate(names):
        a = statistics.median(x[i] for x in res[dirs[0]])
        b = statistics.median(x[i] for x in res[dirs[1]])
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
