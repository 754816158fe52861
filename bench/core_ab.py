"""A/B of the core's two ways of doing one thing, same process, same inputs,
rounds interleaved (each way first in every other round) so that machine
load hits both alike. One thread unless --threads 2 (crnn's own two).

    --what packed  (default) the time loop's products on W_hh packed once per
                   call (crnn.h, the default where the CPU has AVX2+FMA)
                   against every per-step product on the BLAS (packed=False)
    --what chunk   the backward in chunks of crnn_elman_chunk(T, B) steps (the
                   default) against all T steps in one chunk (the da
                   workspace then holds T*B*H values)
    --what dxchunk longer backward chunks held in dx's rows not written yet,
                   from dx_chunk_bytes of a chunk's da on (the default: L,
                   M float64) against every chunk in the da workspace
                   (crnn._core.dx_chunk_bytes(0))
    --null         A against A: how far the noise alone moves the ratio

    python bench/core_ab.py                      # LAT, S, M, L (LTAIL only when named)
    python bench/core_ab.py S M --rounds 12 --what chunk
    python bench/core_ab.py L M --what chunk --threads 2 --rounds 12
    python bench/core_ab.py L --what dxchunk --threads 2 --rounds 16 [--null]

Prints, per config and dtype, forward+backward ms (min and median over the
rounds) for each way and the ratio of the medians (B / A).
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
    # only when named: L's last two steps, its backward's last chunk alone
    # (the one chunk whose dW_hh, from h0 = None, sums over one step less)
    "LTAIL": ((2, 128, 1024, 1024), 20),
}
NAMED_ONLY = {"LTAIL"}
# --what: (name of A, name of B, options of A, options of B); forward options
# are the keys the forward takes too; dx_chunk_bytes is set for the call
WHAT = {
    "packed": ("packed", "BLAS", dict(packed=True), dict(packed=False)),
    "chunk": ("chunked", "whole", dict(), dict(chunk=2 ** 30)),
    "dxchunk": ("in dx", "workspace", dict(), dict(dx_chunk_bytes=0)),
}
DX_CHUNK_BYTES = _core.dx_chunk_bytes()  # the default


def which():
    """Which crnn this process imported, for the first line of a script's
    output: an installed crnn wins over the checkout (sys.path above)."""
    return f"crnn {crnn.__version__} from {os.path.dirname(crnn.__file__)}"


def layer_case(shape, dtype):
    """A Layer of shape (T, B, D, H) and its x, dy: seed 0, standard normal."""
    T, B, D, H = shape
    layer = crnn.Layer(D, H, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    return layer, x, dy


def pick_configs(ap, names, known):
    """The configs named on the command line (all of `known` but NAMED_ONLY
    if none), or an argparse error naming the unknown one."""
    for name in names:
        if name not in known:
            ap.error(f"unknown config {name!r}: choose from {' '.join(known)}")
    return names or [n for n in known if n not in NAMED_ONLY]


def fwd_bwd(layer, x, dy, opts):
    T, B = x.shape[:2]
    sizes = layer._sizes(T, B)
    opts = dict(opts)
    _core.dx_chunk_bytes(opts.pop("dx_chunk_bytes", DX_CHUNK_BYTES))
    fwd_opts = {k: v for k, v in opts.items() if k == "packed"}
    hs, _, _ = _core.elman_forward(x, None, None, None, layer.params, **fwd_opts, **sizes)
    _core.elman_backward(dy, None, hs, None, x, None, None, None, layer.params, layer.grads,
                         True, **opts, **sizes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="*", metavar="CONFIG", help=" ".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--what", choices=sorted(WHAT), default="packed")
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    ap.add_argument("--null", action="store_true", help="A against A")
    args = ap.parse_args()
    args.configs = pick_configs(ap, args.configs, CONFIGS)
    a_name, b_name, a_opts, b_opts = WHAT[args.what]
    if args.null:
        b_name, b_opts = a_name + " again", a_opts
    print(which(), f"| {args.threads} thread(s)")
    print(f"| config | dtype | {a_name} min | {a_name} median | {b_name} min | {b_name} median "
          f"| {b_name} / {a_name} |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        shape, calls = CONFIGS[name]
        for dtype in (np.float32, np.float64):
            layer, x, dy = layer_case(shape, dtype)
            ms = ([], [])
            with threadpool_limits(args.threads):
                for r in range(args.rounds):
                    for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                        opts = (a_opts, b_opts)[i]
                        fwd_bwd(layer, x, dy, opts)          # warm
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            fwd_bwd(layer, x, dy, opts)
                        ms[i].append((time.perf_counter() - t0) / calls * 1e3)
            a, b = np.array(ms[0]), np.array(ms[1])
            print(f"| {name} | {np.dtype(dtype).name} | {a.min():.2f} | {np.median(a):.2f} | "
                  f"{b.min():.2f} | {np.median(b):.2f} | {np.median(b) / np.median(a):.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
