"""Where can a product be cut in two without changing its bits? The evidence
for CRNN_SPLIT_ALIGN (src_c/crnn.h), on this machine's BLAS (SciPy's, the one
crnn calls), one thread:

    python bench/split_bits.py

For a column-major C (m, n) = A (m, K) B (K, n) + C, float32 and float64 and
a few K, it computes C whole and as two products, cut after `cut` columns
(n: what crnn's split of the row-major result's rows is) or rows (m), and
lists the cuts, in steps of 4, at which every element keeps its bits. On
OpenBLAS 0.3.30 (Haswell kernels) sgemm keeps them at n-cuts that are
multiples of 12 once K >= 8, and at no m-cut but the middle; dgemm at every
multiple of 4 either way.
"""
import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_limits

SIZE, OTHER = 384, 40


def equal_bits(gemm, dtype, m, n, k, cut, axis, rng):
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((k, n)).astype(dtype))
    c = np.asfortranarray(rng.standard_normal((m, n)).astype(dtype))
    whole = gemm(1.0, a, b, 1.0, c.copy())
    if axis == "n":
        parts = [gemm(1.0, a, np.asfortranarray(b[:, s]), 1.0, np.asfortranarray(c[:, s]))
                 for s in (slice(0, cut), slice(cut, n))]
        halves = np.hstack(parts)
    else:
        parts = [gemm(1.0, np.asfortranarray(a[s]), b, 1.0, np.asfortranarray(c[s]))
                 for s in (slice(0, cut), slice(cut, m))]
        halves = np.vstack(parts)
    return np.array_equal(halves, whole)


def main():
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for dtype, gemm in ((np.float32, blas.sgemm), (np.float64, blas.dgemm)):
            for k in (3, 20, 300):
                for axis in ("n", "m"):
                    m, n = (OTHER, SIZE) if axis == "n" else (SIZE, OTHER)
                    ok = [cut for cut in range(4, SIZE, 4)
                          if equal_bits(gemm, dtype, m, n, k, cut, axis, rng)]
                    shown = ", ".join(map(str, ok[:8])) + (", ..." if len(ok) > 8 else "")
                    print(f"{np.dtype(dtype).name} K={k:3d} cut along {axis} ({m}x{n}): "
                          f"{len(ok)} of {len(range(4, SIZE, 4))} cuts keep the bits: {shown}")


if __name__ == "__main__":
    main()
