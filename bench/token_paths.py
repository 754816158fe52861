"""Token input's two ways in the core, one thread: through work's transposed
W_xh table (W_xh^T + b_h, built per call: D*H transposed reads) or reading
W_xh's columns in place (T*B*H reads of stride D). The core takes the table
when 4 T*B >= D (token_table in src_c/elman_impl.h); this shows what each
way costs around that rule.

    python bench/token_paths.py
    PYTHONPATH=/tmp/old python bench/token_paths.py   # another build, e.g.
                                                      # one that always built the table

Per (dtype, D, H, T*B), the best of --repeat rounds of forwards (T = 1, no
h0: no recurrence product), microseconds:
- layer: the call with work, as Layer.forward makes it (the rule's way);
- columns: the same call without work (packed=False: always in place);
and which way the rule takes.
"""
import argparse
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

import crnn
from crnn import _core

CASES = [(100, 128, (1, 16, 128, 1024)), (1000, 256, (1, 16, 128, 1024)),
         (10000, 512, (1, 16, 128, 1024, 8192))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"crnn {crnn.__version__} from {crnn.__file__}")
    print("| dtype | D | H | T*B | way | layer us | columns us | layer / columns |")
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            for D, H, tbs in CASES:
                layer = crnn.Layer(D, H, activation="identity", dtype=dtype, seed=0)
                for TB in tbs:
                    ids = np.random.default_rng(0).integers(0, D, size=(1, TB))
                    sizes = layer._sizes(1, TB)
                    work = layer._core_work(TB, True)
                    n = max(3, int(2000 / (1 + (TB + D) * H / 20000)))

                    def best(**kw):
                        t = timeit.repeat(lambda: _core.elman_forward(
                            None, ids, None, None, layer.params, **kw, **sizes),
                            number=n, repeat=args.repeat)
                        return min(t) / n * 1e6

                    a, b = best(work=work), best(work=None, packed=False)
                    way = "table" if 4 * TB >= D else "columns"
                    print(f"| {np.dtype(dtype).name} | {D} | {H} | {TB} | {way} | {a:.1f} | "
                          f"{b:.1f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
