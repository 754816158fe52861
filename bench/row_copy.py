"""glibc's memcpy at short distances, and crnn's backward at one of them.

glibc (2.36, x86-64) copies 2112 bytes or more with `rep movsb` on CPUs with
FSRM; on this project's AMD EPYC (Zen 3) that runs many times slower when
the destination lies a few bytes past the source modulo 4 KiB. crnn copies
rows of H values in its kernels (dy into the backward's da when a layer has
no output, the bias into each row of the input projection, h_last from hs,
token rows from their table): rows of 4 KiB and more at H = 512 in float64
and H = 1024 in float32. Since 0.4.10 such a copy goes in pieces of 1 KiB
(copy_row, src_c/elman.c).

    python bench/row_copy.py                 # M and L, float32 and float64, one thread
    python bench/row_copy.py M --rounds 15

Prints (1) NumPy copying 64 KiB (in cache) and 4 KiB rows of a 32 MiB block
(one np.copyto per row, out of cache) with the destination 0 to 256 bytes
past the source modulo 4 KiB, GB/s, fastest of the rounds; (2) per
config and dtype, crnn's backward (the layer has no output, so it copies
each row of dy into da) with dy placed 16 and 256 bytes before the da
workspace modulo 4 KiB, median ms over the rounds (interleaved), and their
ratio.
"""
import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from core_ab import CONFIGS, layer_case, pick_configs, which  # bench/, beside this file

SCAN = (0, 4, 8, 16, 24, 28, 32, 36, 48, 60, 64, 256)  # NumPy's copies
DISTANCES = (16, 256)                                   # crnn's backward


def placed(shape, dtype, addr_mod):
    """An empty C-contiguous array whose data address is addr_mod modulo 4096."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.empty(n + 8192 // dtype.itemsize, dtype)
    k = ((addr_mod - buf.ctypes.data) % 4096) // dtype.itemsize
    a = buf[k:k + n].reshape(shape)
    assert a.ctypes.data % 4096 == addr_mod % 4096
    return a


def numpy_copies(rounds):
    for what, nbytes, row in (("64 KiB, in cache", 64 << 10, 64 << 10),
                              ("4 KiB rows of 32 MiB", 32 << 20, 4096)):
        src = placed((nbytes,), np.uint8, 0)
        src[...] = 1
        cells = []
        for d in SCAN:
            dst = placed((nbytes,), np.uint8, d)
            s2, d2 = src.reshape(-1, row), dst.reshape(-1, row)
            reps = max(1, (1 << 24) // nbytes)
            best = float("inf")
            for _ in range(rounds):
                t = time.perf_counter()
                for _ in range(reps):
                    for i in range(s2.shape[0]):
                        np.copyto(d2[i], s2[i])
                best = min(best, (time.perf_counter() - t) / reps)
            cells.append(f"{d}: {nbytes / best / 1e9:.1f}")
        print(f"NumPy, {what}, GB/s at each distance: " + ", ".join(cells), flush=True)


def backward_at(name, dtype, rounds):
    """Median ms of crnn's backward with dy 16 and 256 bytes before da."""
    layer, x, dy = layer_case(CONFIGS[name][0], dtype)
    layer.forward(x)
    layer.backward(dy)
    da = layer._work["da"]  # the workspace that backward keeps from call to call
    dys = {}
    for d in DISTANCES:
        dys[d] = placed(dy.shape, dtype, da.ctypes.data - d)
        dys[d][...] = dy
    ms = {d: [] for d in dys}
    for r in range(rounds):
        for d in (list(dys) if r % 2 == 0 else list(dys)[::-1]):
            layer.forward(x)
            t = time.perf_counter()
            layer.backward(dys[d])
            ms[d].append((time.perf_counter() - t) * 1e3)
    assert layer._work["da"] is da
    return {d: statistics.median(v) for d, v in ms.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="*", metavar="CONFIG", help=" ".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    names = pick_configs(ap, args.configs, CONFIGS) if args.configs else ["M", "L"]
    print(f"{which()}; one thread")
    with threadpool_limits(1):
        numpy_copies(args.rounds)
        print("| config | dtype | row bytes | backward ms, distance 16 | distance 256 | 16 / 256 |")
        print("|---|---|---|---|---|---|")
        for name in names:
            H = CONFIGS[name][0][3]
            for dtype in (np.float32, np.float64):
                m = backward_at(name, dtype, args.rounds)
                print(f"| {name} | {np.dtype(dtype).name} | {H * np.dtype(dtype).itemsize} "
                      f"| {m[16]:.1f} | {m[256]:.1f} | {m[16] / m[256]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
