"""How close can an Elman forward + backward come to the GEMM ceiling? The
products of one, alone, against the 2048^2 GEMM and crnn, in one run.

The issue's M and L targets ask for 90 % of the GEMM ceiling (GF/s of a
2048 x 2048 ?GEMM, FLOPs of a forward + backward = 6 T B (D H + H H)). The
ways timed here, per round, in blocks of calls each after a pause, their
order rotating from round to round:

    gemm      the ceiling: 2048 x 2048 x 2048 through NumPy's BLAS
    products  nothing but the forward + backward's GEMMs, through NumPy's
              BLAS into preallocated arrays: the input projection (T B, D)
              (D, H), T per-step (B, H) (H, H) products forward and T
              backward, dW_hh, dW_xh and dx over all T B rows -- the same
              FLOPs as crnn's, with no activation, copy or check
    whole     the four whole-sequence products alone (their FLOPs)
    crnn      crnn.Layer forward + backward

With --parts, also the forward's and the backward's halves of each, to
tell which half crnn loses in:

    fwd products   the input projection and the T forward step products
    bwd products   the T backward step products, dW_hh, dW_xh and dx
    crnn fwd       crnn.Layer forward
    crnn bwd       crnn.Layer backward alone, from the latest forward

Each round's GF/s of a way is divided by the same round's ceiling; the
table gives the median of those percentages over the rounds. A "products"
or "whole" below 90 % means that this machine's BLAS, doing only the
multiplications such a call needs, at their shapes, falls short of the
target by itself.

    python bench/gemm_floor.py                       # M and L, float32 and float64, 1 and 2 threads
    python bench/gemm_floor.py M --threads 2 --rounds 8
    python bench/gemm_floor.py L --threads 2 --rounds 12 --parts
"""
import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from core_ab import CONFIGS, layer_case, pick_configs, which  # bench/, beside this file
from tokproj_floor import median_ms  # one untimed call, then the median of `calls`

GEMM_N = 2048


def ways(name, dt, parts=False):
    """{way: (fn, flops)} for config `name` in dtype dt; with parts, the
    forward's and backward's halves too."""
    T, B, D, H = CONFIGS[name][0]
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(dt)

    X, W_xh, W_hh, hs, da = r(T * B, D), r(H, D), r(H, H), r(T * B, H), r(T * B, H)
    a, dW_hh, dW_xh, dx = (np.empty(s, dt) for s in ((T * B, H), (H, H), (H, D), (T * B, D)))
    step = np.empty((B, H), dt)

    def projection():
        np.matmul(X, W_xh.T, out=a)

    def grads():
        np.matmul(da.T, hs, out=dW_hh)       # sum_t da_t^T h_prev
        np.matmul(da.T, X, out=dW_xh)
        np.matmul(da, W_xh, out=dx)

    def whole():
        projection()
        grads()

    def fwd_products():
        projection()
        for t in range(T):                   # forward steps: h_prev W_hh^T
            np.matmul(hs[t * B:(t + 1) * B], W_hh.T, out=step)

    def bwd_products():
        for t in range(T):                   # backward steps: da_t W_hh
            np.matmul(da[t * B:(t + 1) * B], W_hh, out=step)
        grads()

    def products():
        fwd_products()
        bwd_products()

    ga, gb = r(GEMM_N, GEMM_N), r(GEMM_N, GEMM_N)
    gc = np.empty((GEMM_N, GEMM_N), dt)
    layer, x, dy = layer_case((T, B, D, H), dt)

    def crnn_fb():
        layer.forward(x)
        layer.backward(dy)

    flops = 6.0 * T * B * (D * H + H * H)
    table = {"gemm": (lambda: np.matmul(ga, gb, out=gc), 2.0 * GEMM_N ** 3),
             "products": (products, flops),
             "whole": (whole, 6.0 * T * B * D * H + 2.0 * T * B * H * H),
             "crnn": (crnn_fb, flops)}
    if parts:
        # backward again and again from the latest forward (every way's x is
        # the same), accumulating into the same grads
        table.update({"fwd products": (fwd_products, flops / 3),
                      "bwd products": (bwd_products, flops * 2 / 3),
                      "crnn fwd": (lambda: layer.forward(x), flops / 3),
                      "crnn bwd": (lambda: layer.backward(dy), flops * 2 / 3)})
    return table


def run(name, dt, threads, rounds, calls, parts=False):
    """{way: [% of the round's ceiling]}, and the ceiling's GF/s per round."""
    table = ways(name, dt, parts)
    pct = {w: [] for w in table if w != "gemm"}
    ceiling = []
    with threadpool_limits(threads):
        for fn, _ in table.values():
            fn()                                   # first touch, lazy set-up
        names = list(table)
        for i in range(rounds):
            gfs = {}
            for w in names[i % len(names):] + names[:i % len(names)]:
                fn, flops = table[w]
                time.sleep(0.2)                    # let other threads settle
                gfs[w] = flops / median_ms(fn, calls) / 1e6
            ceiling.append(gfs["gemm"])
            for w in pct:
                pct[w].append(100 * gfs[w] / gfs["gemm"])
    return pct, ceiling


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="*", help="M, L (default both)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per block")
    ap.add_argument("--parts", action="store_true",
                    help="also the forward's and the backward's halves, products and crnn")
    args = ap.parse_args()
    names = pick_configs(ap, args.configs, ["M", "L"])
    print(which())
    cols = ["products", "whole", "crnn"]
    if args.parts:
        cols += ["fwd products", "crnn fwd", "bwd products", "crnn bwd"]
    print("| config | dtype | thr | rounds | ceiling GF/s | " + " | ".join(c + " %" for c in cols) + " |")
    print("|---" * (5 + len(cols)) + "|")
    for name in names:
        for dtn in args.dtypes:
            for thr in args.threads:
                pct, ceiling = run(name, np.dtype(dtn), thr, args.rounds, args.calls, args.parts)
                med = " | ".join(f"{statistics.median(pct[c]):.1f}" for c in cols)
                print(f"| {name} | {dtn} | {thr} | {args.rounds} | {statistics.median(ceiling):.1f} | "
                      f"{med} |", flush=True)


if __name__ == "__main__":
    main()
