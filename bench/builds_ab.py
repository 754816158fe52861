"""A/B of two builds of crnn (two checkouts, each built in place), in
alternating child processes: one process cannot import two builds of the
same extension module.

    git worktree add /tmp/before HEAD~1 && (cd /tmp/before && python setup.py build_ext --inplace -q)
    python bench/builds_ab.py /tmp/before . M L --threads 1 2 --rounds 8

Each child imports crnn from its checkout (and checks that it did), makes the
config's Layer and data (core_ab.layer_case: seed 0), sets the BLAS threads,
makes one warm-up call, then times --calls forward+backward calls per dtype.
The two builds take turns, the one that goes first alternating from round to
round, so that a slow spell of the machine hits both alike. Prints, per
config, thread count and dtype, the median and the fastest ms of each build
over all its calls and their ratios B / A (below 1: B is faster); the
fastest call is the one least disturbed by the machine's other load.

With --pause S each child instead makes --turns turns per dtype, each a
pause of S seconds, one untimed call and --calls timed calls: the way
bench/'s interleaved groups take turns at two threads, where crnn's worker
has gone to sleep before each turn (par.c: SPIN_NS).

    python bench/builds_ab.py /tmp/before . S LAT --threads 2 --pause 0.3 --calls 7 --turns 8 --rounds 6
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from core_ab import CONFIGS, pick_configs  # bench/, beside this file

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, os, sys, time
checkout, here, name, threads, calls = sys.argv[1:6]
sys.path[:0] = [checkout, here]
import numpy as np
import crnn
from threadpoolctl import threadpool_limits
from core_ab import CONFIGS, layer_case
if not os.path.abspath(crnn.__file__).startswith(checkout + os.sep):
    sys.exit(f"imported {crnn.__file__}, not the build in {checkout}")
pause, turns = float(sys.argv[6]), int(sys.argv[7])
out = {}
for dtype in (np.float32, np.float64):
    layer, x, dy = layer_case(CONFIGS[name][0], dtype)
    with threadpool_limits(int(threads)):
        ms = []
        for _ in range(turns):
            time.sleep(pause)
            layer.forward(x)
            layer.backward(dy)
            for _ in range(int(calls)):
                t = time.perf_counter()
                layer.forward(x)
                layer.backward(dy)
                ms.append((time.perf_counter() - t) * 1e3)
    out[np.dtype(dtype).name] = ms
print(json.dumps(out))
"""


def run_child(checkout, name, threads, calls, pause=0.0, turns=1):
    """{dtype name: [ms per forward + backward]} from one child process."""
    args = [sys.executable, "-c", CHILD, checkout, HERE, name, str(threads), str(calls),
            str(pause), str(turns)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the child for {checkout} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="checkout A (the baseline), built in place")
    ap.add_argument("b", help="checkout B")
    ap.add_argument("configs", nargs="*", metavar="CONFIG", help=" ".join(CONFIGS))
    ap.add_argument("--threads", type=int, nargs="+", default=[1], choices=[1, 2])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per child and dtype "
                    "(with --pause: per turn)")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds idle before each turn of one untimed and --calls timed calls")
    ap.add_argument("--turns", type=int, default=1, help="turns per child and dtype (with --pause)")
    args = ap.parse_args()
    if args.pause == 0 and args.turns != 1:
        ap.error("--turns needs --pause")
    configs = pick_configs(ap, args.configs, CONFIGS)
    builds = [os.path.abspath(p) for p in (args.a, args.b)]
    for path in builds:
        if not os.path.isfile(os.path.join(path, "crnn", "__init__.py")):
            ap.error(f"{path} is not a crnn checkout")
    print("| config | threads | dtype | A median ms | B median ms | B / A | A min ms | B min ms "
          "| B / A | calls each |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in configs:
        for threads in args.threads:
            ms = ({}, {})
            for r in range(args.rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    for dt, v in run_child(builds[i], name, threads, args.calls, args.pause,
                                           args.turns).items():
                        ms[i].setdefault(dt, []).extend(v)
            for dt in ms[0]:
                a, b = statistics.median(ms[0][dt]), statistics.median(ms[1][dt])
                a1, b1 = min(ms[0][dt]), min(ms[1][dt])
                print(f"| {name} | {threads} | {dt} | {a:.2f} | {b:.2f} | {b / a:.3f} "
                      f"| {a1:.2f} | {b1:.2f} | {b1 / a1:.3f} | {len(ms[0][dt])} |", flush=True)


if __name__ == "__main__":
    main()
