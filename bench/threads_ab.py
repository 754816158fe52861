"""A/B at two threads: a call on crnn's own two threads (the default: the
BLAS on one thread, time loops and large products split in two halves run
at once, crnn.mt_flops par) against the BLAS's two threads
(crnn.mt_flops(par=inf), the policy of crnn 0.3). With a batch of B < 4
(LAT) crnn's own threads pipeline the backward's chunks instead of
splitting anything (crnn 0.4.2).

The two ways are not interleaved call by call: after a multi-threaded
product OpenBLAS's idle threads spin on the cores for a while, and the next
call would share a core with them, which no program that keeps one policy
pays. So each way runs in blocks of --calls calls (after one warm-up call
and a 0.3 s pause), the blocks alternating, --blocks blocks each.

    python bench/threads_ab.py                 # LAT, S, M, L; float32 and float64
    python bench/threads_ab.py S M --blocks 6
    python bench/threads_ab.py LAT S --one     # one thread timed too
    python bench/threads_ab.py S M --busy      # another process holds a core

--busy runs a spinning child process meanwhile (as another program on the
machine would) and times one thread too, as --one does. Prints, per config
and dtype, forward+backward median ms and GF/s of each way and the speed-up
(BLAS threads / own threads).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from core_ab import CONFIGS as AB_CONFIGS, layer_case, pick_configs  # bench/, beside this file

import crnn  # core_ab put the checkout on the path; an installed crnn wins
from crnn import _core

CONFIGS = {name: AB_CONFIGS[name][0] for name in ("LAT", "S", "M", "L")}  # (T, B, D, H)


LABEL = {"own": "own threads", "blas": "BLAS threads", "one": "one thread"}


def run_blocks(name, dt, ways, blocks, calls, own_par):
    """{way: [seconds per forward + backward]}, the ways in blocks of calls,
    their order rotating from block to block."""
    layer, x, dy = layer_case(CONFIGS[name], dt)
    times = {w: [] for w in ways}
    try:
        for r in range(blocks):
            for way in ways[r % len(ways):] + ways[:r % len(ways)]:
                _core.mt_flops(par=float("inf") if way == "blas" else own_par)
                with threadpool_limits(1 if way == "one" else 2):
                    time.sleep(0.3)
                    layer.forward(x)
                    layer.backward(dy)
                    for _ in range(calls):
                        t = time.perf_counter()
                        layer.forward(x)
                        layer.backward(dy)
                        times[way].append(time.perf_counter() - t)
    finally:
        _core.mt_flops(par=own_par)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", help=f"of {', '.join(CONFIGS)} (default: all)")
    ap.add_argument("--blocks", type=int, default=4, help="blocks per way (default 4)")
    ap.add_argument("--calls", type=int, default=4, help="timed calls per block (default 4)")
    ap.add_argument("--busy", action="store_true",
                    help="a spinning child process meanwhile; one thread timed too")
    ap.add_argument("--one", action="store_true", help="one thread timed too")
    args = ap.parse_args(argv)
    args.configs = pick_configs(ap, args.configs, CONFIGS)
    own_par = _core.mt_flops()[2]
    if own_par == float("inf"):
        own_par = 2.0 ** 22
    ways = ["own", "blas"] + (["one"] if args.busy or args.one else [])
    print(f"crnn {crnn.__version__} from {os.path.dirname(crnn.__file__)}; "
          f"2 threads{'; another process spinning' if args.busy else ''}")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        for name in args.configs:
            for dt in (np.float32, np.float64):
                times = run_blocks(name, dt, ways, args.blocks, args.calls, own_par)
                T, B, D, H = CONFIGS[name]
                flops = 6 * T * B * (D * H + H * H)
                med = {w: statistics.median(times[w]) for w in ways}
                cells = [f"{LABEL[w]} {med[w] * 1e3:.2f} ms ({flops / med[w] / 1e9:.1f} GF/s)"
                         for w in ways]
                print(f"{name} {np.dtype(dt).name}: {', '.join(cells)}, "
                      f"speed-up {med['blas'] / med['own']:.2f}", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
