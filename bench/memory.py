"""Peak memory of one Layer forward + backward, against what it must hold.

    python bench/memory.py                    # S config, float32 and float64
    python bench/memory.py --shape 1000 1 32 128

The layer, x and dy are made before tracing starts; tracemalloc (which sees
NumPy's array buffers) then records the peak of everything forward + backward
allocate. The peak is

    x + params + grads (there before)  +  traced peak

and the budget is what a forward + backward cannot do without:

    x + y / stored hidden states + params + grads + dx

(without an output projection y *is* the stored hidden states, one buffer,
counted once). ratio = peak / budget; the target is <= 1.1. The last column
counts y and the hidden states as two items, as the target's wording lists
them. The same is printed for the NumPy baseline (bench/numpy_rnn.py).
"""
import argparse
import gc
import os
import sys
import tracemalloc

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)                        # numpy_rnn
sys.path.append(os.path.dirname(_HERE))          # crnn from the checkout, unless installed

from numpy_rnn import NumpyRNN

import crnn

S = (100, 32, 64, 128)
TARGET = 1.1


def nbytes_distinct(arrays):
    """Bytes of the arrays, each buffer once (views of one buffer count once)."""
    seen, total = [], 0
    for a in arrays:
        base = a
        while base.base is not None and isinstance(base.base, np.ndarray):
            base = base.base
        if any(base is s for s in seen):
            continue
        seen.append(base)
        total += base.nbytes
    return total


def traced(fn):
    """(result, peak bytes allocated while fn runs)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


def measure(impl, shape, dtype):
    T, B, D, H = shape
    layer = crnn.Layer(D, H, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    if impl == "crnn":
        model, params, grads = layer, list(layer.params.values()), list(layer.grads.values())
    else:
        model = NumpyRNN.from_layer(layer)
        params = [model.W_xh, model.W_hh, model.b_h]
        grads = list(model.grads.values())

    def step():
        y, h_last = model.forward(x)
        dx, dh0 = model.backward(dy)
        return y, h_last, dx, dh0

    (y, _, dx, _), peak_new = traced(step)
    before = nbytes_distinct([x, *params, *grads])
    peak = before + peak_new
    budget = nbytes_distinct([x, y, *params, *grads, dx])
    listed = budget + y.nbytes      # y is the hidden states (no output projection)
    return dict(peak=peak, peak_new=peak_new, budget=budget, ratio=peak / budget,
                ratio_listed=peak / listed,
                parts=dict(x=x.nbytes, y_hs=y.nbytes, dx=dx.nbytes,
                           params=sum(p.nbytes for p in params),
                           grads=sum(g.nbytes for g in grads)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", nargs=4, type=int, metavar=("T", "B", "D", "H"), default=S)
    args = ap.parse_args(argv)
    shape = tuple(args.shape)
    mb = 1 / 2 ** 20
    print(f"Layer forward + backward, (T, B, D, H) = {shape}; peak = before + traced peak")
    print("| impl | dtype | budget MiB | traced peak MiB | peak MiB | peak / budget "
          "| target | peak / (budget + y again) |")
    print("|---|---|---|---|---|---|---|---|")
    parts = {}
    for dtype in (np.float32, np.float64):
        for impl in ("crnn", "numpy"):
            r = measure(impl, shape, dtype)
            ok = "met" if r["ratio"] <= TARGET else "**missed**"
            if impl != "crnn":
                ok = "(baseline)"
            print(f"| {impl} | {np.dtype(dtype).name} | {r['budget'] * mb:.2f} "
                  f"| {r['peak_new'] * mb:.2f} | {r['peak'] * mb:.2f} | {r['ratio']:.2f} | {ok} "
                  f"| {r['ratio_listed']:.2f} |")
        parts[np.dtype(dtype).name] = r["parts"]
    print()
    blocks, held = crnn._core.pool_info()
    print(f"crnn's cache of freed output blocks holds {blocks} blocks, {held * mb:.2f} MiB "
          "(memory no array holds, so not in the peak; crnn.release_memory() frees it)")
    for name, p in parts.items():
        sizes = ", ".join(f"{k} {v * mb:.3f}" for k, v in p.items())
        print(f"budget parts, {name} (MiB): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
