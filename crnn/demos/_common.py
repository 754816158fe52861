"""What the demos share: the RESULT line, optional imports, batching, timing."""
import json
import math
import sys
import time

import numpy as np

LN2 = math.log(2.0)


class MissingDependency(Exception):
    """An optional package a demo needs is not installed (the demo exits 2)."""


def require(module, pip_name=None):
    """Import an optional module or raise MissingDependency with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"this needs {pip_name or module}: pip install {pip_name or module}"
                                f" (or pip install 'crnn[demos]')") from None


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend, or MissingDependency."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("--plot needs matplotlib: install matplotlib "
                                "(pip install matplotlib, or pip install 'crnn[demos]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(plt, fig, path):
    """Write `fig` to the PNG `path`, close it, say where; returns the absolute path."""
    import os

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    path = os.path.abspath(path)
    print(f"plot saved to {path}")
    return path


def result(payload, out=None):
    """Print the closing machine-readable line: RESULT {json}."""
    out = out or sys.stdout
    clean = {k: _plain(v) for k, v in payload.items()}
    print("RESULT " + json.dumps(clean, sort_keys=False), file=out, flush=True)


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return float(f"{v:.7g}") if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self):
        return time.perf_counter() - self.t0


def add_common(p, quick_help="a few seconds (as the tests run it)"):
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same seed and "
                   "BLAS thread count give the same run")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads for crnn's large products "
                   "(default 1: these models are small, and one thread is fastest on a busy machine "
                   "and gives the same numbers on any machine; 0: leave the BLAS's own setting)")


class blas_threads:
    """Context manager: crnn's BLAS thread count set to n (n <= 0: unchanged), restored on exit.

    Needs crnn to steer the BLAS (threadpoolctl installed, an OpenBLAS); otherwise a no-op.
    """

    def __init__(self, n):
        self.n, self.saved = n, None

    def __enter__(self):
        import crnn

        if self.n and self.n > 0 and crnn.thread_control():
            self.saved = crnn.blas_threads()
            crnn.blas_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import crnn

            crnn.blas_threads(self.saved)
        return False


def progress(iterable=None, total=None, desc=None):
    """A tqdm bar on stderr (a plain iterable without tqdm)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return iterable if iterable is not None else range(total)
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)


def minibatches(n, batch_size, rng):
    """Index arrays of a fresh permutation of range(n), batch_size at a time."""
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def pad_batch(seqs, pad=0):
    """A list of 1-D int sequences -> (T, B) int64 ids padded with `pad`, and lengths (B,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    T = max(1, int(lengths.max()))
    out = np.full((T, len(seqs)), pad, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[:len(s), b] = s
    return out, lengths


def softmax(z, axis=-1):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def child_seeds(seed, n):
    """n independent int seeds derived from `seed` (for the modules of one model)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]
