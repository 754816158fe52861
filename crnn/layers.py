"""The modules: `Layer` (one Elman layer), `BiLayer` and `Stack`.

Conventions (DESIGN.md §2): time-major x of shape (T, B, D), or int token ids
of shape (T, B); `lengths` (B,) marks each sequence's valid prefix; a state is
(B, H) for a Layer. `params` and `grads` are dicts of live arrays with the same
keys; `backward` accumulates into `grads`.
"""
import os
from collections.abc import MutableMapping

import numpy as np

from crnn import _core

HIDDEN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUT_ACTIVATIONS = ("identity", "tanh", "relu", "sigmoid", "softmax")
INITS = ("uniform", "orthogonal", "identity")
DTYPES = {"float32": np.float32, "float64": np.float64}


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt.name not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt.name}")
    return dt


def _size(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def check_lengths(lengths, T, B):
    """lengths as an int64 (B,) array in [0, T], or None when it is None."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    if out.size and not _core.in_range(out, T + 1):  # uint64 beyond int64 turns negative
        raise ValueError(f"lengths must lie in [0, T] = [0, {T}], got min {arr.min()}, "
                         f"max {arr.max()}")
    return out


def _real(a, name, dtype):
    """a as a C-contiguous array of `dtype`, from any real numeric dtype."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _state(h, name, B, H, dtype):
    """A (B, H) state array (converted, finite), or None."""
    if h is None:
        return None
    arr = _real(h, name, dtype)
    if arr.shape != (B, H):
        raise ValueError(f"{name} must have shape (B, H) = ({B}, {H}), got {arr.shape}")
    if not _core.all_finite(arr):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return arr


def _finite_valid(arr, name, lengths):
    """Raise unless arr (T, B, ...), C-contiguous, is finite at every valid step."""
    if not _core.all_finite(arr, lengths):
        raise ValueError(f"{name} must be finite at valid steps (it holds NaN or inf)")


def _sequence_input(x, D, dtype, lengths_arg):
    """Check and convert a layer input.

    Returns (x or None, tokens or None, T, B, lengths): dense x is (T, B, D) of
    `dtype` with padding zeroed; tokens are (T, B) int64 ids in [0, D).
    """
    arr = np.asarray(x)
    if arr.ndim == 2:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"a 2-D x must hold integer token ids (T, B), got dtype {arr.dtype}")
        T, B = arr.shape
    elif arr.ndim == 3:
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"x must hold real numbers, got dtype {arr.dtype}")
        T, B = arr.shape[:2]
        if arr.shape[2] != D:
            raise ValueError(f"x must have shape (T, B, D) with D = input_size = {D}, got {arr.shape}")
    else:
        raise ValueError(f"x must be 3-D (T, B, D) or 2-D token ids (T, B), got {arr.ndim}-D shape {arr.shape}")
    if T < 1 or B < 1:
        raise ValueError(f"x must have T >= 1 and B >= 1, got shape {arr.shape}")
    lengths = check_lengths(lengths_arg, T, B)
    if arr.ndim == 2:
        ids = np.ascontiguousarray(arr, dtype=np.int64)
        if not _core.in_range(ids, D):  # uint64 beyond int64 turns negative
            raise ValueError(f"token ids must lie in [0, D) = [0, {D}) at every position "
                             f"(pad with 0), got min {arr.min()}, max {arr.max()}")
        return None, ids, T, B, lengths
    dense = np.ascontiguousarray(arr, dtype=dtype)
    if lengths is not None and any(dense[n:, b].any() for b, n in enumerate(lengths)):
        # padded positions may hold anything: never let them reach the GEMMs
        if np.may_share_memory(dense, arr):
            dense = dense.copy()
        for b, n in enumerate(lengths):
            dense[n:, b] = 0
    _finite_valid(dense, "x", None)
    return dense, None, T, B, lengths


class Module:
    """What Layer, BiLayer and Stack share: parameters, gradients, config."""

    params: dict
    grads: dict

    def zero_grad(self):
        """Set every gradient to zero, in place."""
        for g in self.grads.values():
            g[...] = 0

    @property
    def num_params(self):
        return sum(p.size for p in self.params.values())

    def config(self):  # pragma: no cover - every module defines it
        raise NotImplementedError


class Layer(Module):
    """One Elman layer: h_t = f(W_xh x_t + W_hh h_prev + b_h), y_t = g(W_hy h_t + b_y).

    Without `output_size` the layer's output is h itself. `reverse=True` runs
    each sequence from its last valid step down to step 0.

    >>> layer = Layer(3, 5, seed=0)
    >>> y, h = layer.forward(np.ones((4, 2, 3)))
    >>> y.shape, h.shape
    ((4, 2, 5), (2, 5))
    """

    def __init__(self, input_size, hidden_size, output_size=None, *, activation="tanh",
                 output_activation="identity", reverse=False, bias=True, init="uniform",
                 dtype=np.float64, seed=None):
        self.input_size = _size(input_size, "input_size")
        self.hidden_size = _size(hidden_size, "hidden_size")
        self.output_size = None if output_size is None else _size(output_size, "output_size")
        self.activation = _choice(activation, "activation", HIDDEN_ACTIVATIONS)
        self.output_activation = _choice(output_activation, "output_activation", OUTPUT_ACTIVATIONS)
        if self.output_size is None and output_activation != "identity":
            raise ValueError(f"output_activation={output_activation!r} needs output_size "
                             "(without an output projection the output is h itself)")
        self.reverse = bool(reverse)
        self.bias = bool(bias)
        self.init = _choice(init, "init", INITS)
        self.dtype = _dtype(dtype)
        self.params = self._init_params(np.random.default_rng(seed))
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._ctx = None
        self._work = {}

    @property
    def out_features(self):
        return self.output_size if self.output_size is not None else self.hidden_size

    def _init_params(self, rng):
        """PyTorch's default: every weight and bias uniform in (-1/sqrt(H), 1/sqrt(H))."""
        D, H, O = self.input_size, self.hidden_size, self.output_size
        k = 1.0 / np.sqrt(H)
        shapes = {"W_xh": (H, D), "W_hh": (H, H), "b_h": (H,)}
        if O is not None:
            shapes.update(W_hy=(O, H), b_y=(O,))
        p = {}
        for name, shape in shapes.items():
            if name.startswith("b_") and not self.bias:
                continue
            p[name] = rng.uniform(-k, k, size=shape)
        if self.init == "orthogonal":
            q, r = np.linalg.qr(rng.standard_normal((H, H)))
            p["W_hh"] = q * np.sign(np.diag(r))  # sign fix: Haar-distributed
        elif self.init == "identity":
            p["W_hh"] = np.eye(H)
            if self.bias:
                p["b_h"] = np.zeros(H)
        return {name: np.ascontiguousarray(v, dtype=self.dtype) for name, v in p.items()}

    def config(self):
        """A JSON-able description from which `from_config` rebuilds the layer's shape."""
        return {"type": "Layer", "input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "activation": self.activation,
                "output_activation": self.output_activation, "reverse": self.reverse,
                "bias": self.bias, "dtype": self.dtype.name}

    def _sizes(self, T, B):
        return dict(dtype=self.dtype, T=T, B=B, D=self.input_size, H=self.hidden_size, O=self.output_size or 0,
                    activation=self.activation, output_activation=self.output_activation,
                    reverse=self.reverse, bias=self.bias)

    def forward(self, x, h0=None, lengths=None, *, _threads=0):
        """Run the layer over whole sequences.

        x: (T, B, D) real, or (T, B) int token ids in [0, D); h0: (B, H) or
        None (zeros); lengths: (B,) ints in [0, T] or None (all T).
        Returns (y, h_last): y (T, B, out_features), 0 at padded steps, is
        read-only because backward reads it (copy it to modify it); h_last
        (B, H) is the state after each sequence's last processed step.
        """
        self._ctx = None
        x, tokens, T, B, lengths = _sequence_input(x, self.input_size, self.dtype, lengths)
        h0 = _state(h0, "h0", B, self.hidden_size, self.dtype)
        hs, y, h_last = _core.elman_forward(x, tokens, h0, lengths, self.params,
                                            work=self._core_work(B, tokens is not None),
                                            threads=_threads, **self._sizes(T, B))
        hs.flags.writeable = False
        if y is not None:
            y.flags.writeable = False
        self._ctx = (x, tokens, h0, lengths, hs, y)
        return (hs if y is None else y), h_last

    def backward(self, dy, dstate=None, *, need_dx=True, _threads=0, _checked=False):
        """Backpropagation through time for the latest forward.

        dy: dL/dy, shape (T, B, out_features), read at valid steps only;
        dstate: dL/dh_last (B, H) or None. Accumulates (+=) into `grads` and
        returns (dx, dh0): dx (T, B, D), None for token input (or when
        need_dx=False); dh0 (B, H), also when h0 was None. need_dx=False
        can change the parameter gradients' last bits: without an output
        layer, from 1 MiB of dL/da per chunk of the backward on, longer
        chunks are held in dx (crnn.h). Checks every
        argument before it accumulates anything. Reads the forward's x, h0
        and lengths, which it keeps without copying them when they were
        already of the layer's dtype and C-contiguous: change them in place
        between forward and backward, and the gradients are those of the
        changed values.
        """
        if not _checked:  # _checked: a BiLayer checked them (_backward_args)
            dy, dstate = self._backward_args(dy, dstate)
        x, tokens, h0, lengths, hs, y = self._ctx
        T, B = hs.shape[:2]
        O, H = self.output_size or 0, self.hidden_size
        C = _core.chunk(T, B)   # steps per chunk of the backward; da and dz hold one
        return _core.elman_backward(dy, dstate, hs, y, x, tokens, h0, lengths, self.params,
                                    self.grads, need_dx, threads=_threads,
                                    chunk=C, da=self._scratch("da", (min(C, T) + 1, B, H)),
                                    dz=self._scratch("dz", (min(C, T), B, O) if O else None),
                                    work=self._core_work(B, tokens is not None),
                                    **self._sizes(T, B))

    def _backward_args(self, dy, dstate):
        """backward's dy and dstate, checked and converted."""
        if self._ctx is None:
            raise RuntimeError("backward() needs a successful forward() first")
        _, _, _, lengths, hs, _ = self._ctx
        T, B = hs.shape[:2]
        dy = _real(dy, "dy", self.dtype)
        if dy.shape != (T, B, self.out_features):
            raise ValueError(f"dy must have the output's shape (T, B, out_features) = "
                             f"({T}, {B}, {self.out_features}), got {dy.shape}")
        _finite_valid(dy, "dy", lengths)
        return dy, self._dstate_arg(dstate)

    def _dstate_arg(self, dstate):
        """backward's dstate, checked and converted (None stays None)."""
        if self._ctx is None:
            raise RuntimeError("backward() needs a successful forward() first")
        return _state(dstate, "dstate", self._ctx[4].shape[1], self.hidden_size, self.dtype)

    def _scratch(self, name, shape):
        """A scratch array of the core's, kept from one call to the next
        (allocating it afresh costs a page fault per 4 KiB, a quarter of the
        time at small sizes); None for shape None. The backward's da and dz,
        and `work` (both passes: the packed W_hh and, for token input, a
        transposed W_xh; see crnn.h)."""
        if shape is None:
            return None
        a = self._work.get(name)
        if a is None or a.shape != shape:
            a = self._work[name] = np.empty(shape, self.dtype)
        return a

    def _core_work(self, B, tokens):
        n = _core.worksize(B, self.input_size, self.hidden_size, tokens, self.dtype)
        return self._scratch("work", (n,) if n else None)

    def __repr__(self):
        extra = ""
        if self.output_size is not None:
            extra += f", output_size={self.output_size}, output_activation={self.output_activation!r}"
        if self.reverse:
            extra += ", reverse=True"
        if not self.bias:
            extra += ", bias=False"
        return (f"Layer(input_size={self.input_size}, hidden_size={self.hidden_size}"
                f"{extra}, activation={self.activation!r}, dtype={self.dtype.name})")


class _Joined(MutableMapping):
    """The params (or grads) of child modules as one flat dict, keys prefixed
    "<child>.": a live view, so reading and assigning go to the children."""

    def __init__(self, children, attr):
        self._children = children  # list of (prefix, module)
        self._attr = attr

    def _find(self, key):
        for prefix, module in self._children:
            if isinstance(key, str) and key.startswith(prefix + "."):
                inner = key[len(prefix) + 1:]
                d = getattr(module, self._attr)
                if inner in d:
                    return d, inner
        raise KeyError(key)

    def __getitem__(self, key):
        d, inner = self._find(key)
        return d[inner]

    def __setitem__(self, key, value):
        d, inner = self._find(key)
        d[inner] = value

    def __delitem__(self, key):
        raise TypeError("parameters cannot be removed")

    def __iter__(self):
        for prefix, module in self._children:
            for inner in getattr(module, self._attr):
                yield f"{prefix}.{inner}"

    def __len__(self):
        return sum(len(getattr(m, self._attr)) for _, m in self._children)

    def __repr__(self):
        return repr(dict(self))


MERGES = ("concat", "sum", "mean", "mul")

# A BiLayer runs its directions on two cores when each does at least this many
# flops (about 0.2 ms): below it, handing work to a thread costs more.
PARALLEL_MIN_FLOPS = 2 ** 23
_pool = None


def _worker():
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crnn-bilayer")
    return _pool


class BiLayer(Module):
    """Two Layers over the same input, `fwd` left to right and `bwd` right to
    left (each sequence from its own last valid step), merged per step:

        concat  [y_fwd, y_bwd] on the feature axis (fwd first, as PyTorch)
        sum     y_fwd + y_bwd
        mean    (y_fwd + y_bwd) / 2
        mul     y_fwd * y_bwd (elementwise)

    The state is a pair (fwd, bwd); params are named "fwd.*" and "bwd.*".

    `parallel`: None (default) runs the two directions concurrently on two
    cores when the machine has them, the BLAS may use two threads (so
    `threadpoolctl.threadpool_limits(1)` keeps crnn on one core) and the work
    is large enough; True always, False never. The C core releases the GIL; each direction then uses one
    BLAS thread. Results are bitwise the same either way.
    """

    def __init__(self, input_size, hidden_size, output_size=None, *, merge="concat",
                 activation="tanh", output_activation="identity", bias=True, init="uniform",
                 dtype=np.float64, seed=None):
        self.merge = _choice(merge, "merge", MERGES)
        if isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
            seeds = seed.spawn(2)
        else:
            seeds = np.random.SeedSequence(seed).spawn(2)
        kw = dict(activation=activation, output_activation=output_activation, bias=bias,
                  init=init, dtype=dtype)
        self.fwd = Layer(input_size, hidden_size, output_size, reverse=False, seed=seeds[0], **kw)
        self.bwd = Layer(input_size, hidden_size, output_size, reverse=True, seed=seeds[1], **kw)
        self.params = _Joined([("fwd", self.fwd), ("bwd", self.bwd)], "params")
        self.grads = _Joined([("fwd", self.fwd), ("bwd", self.bwd)], "grads")
        self._outputs = None
        self.parallel = None

    def _both(self, run, T, B):
        """(run(fwd, threads), run(bwd, threads)), on two cores when worth it."""
        parallel = self.parallel
        if parallel is None:  # two cores, permitted by the BLAS thread count, and enough work
            flops = 2.0 * T * B * self.hidden_size * (self.input_size + self.hidden_size)
            parallel = ((os.cpu_count() or 1) >= 2 and flops >= PARALLEL_MIN_FLOPS
                        and _core.blas_threads() >= 2)
        if not parallel:
            return run(self.fwd, 0), run(self.bwd, 0)
        saved = _core.blas_threads()
        try:
            later = _worker().submit(run, self.bwd, 1)
            try:
                first = run(self.fwd, 1)
            except BaseException:
                later.exception()  # let the other direction finish first
                raise
            return first, later.result()
        finally:
            _core.blas_threads(saved)

    input_size = property(lambda self: self.fwd.input_size)
    hidden_size = property(lambda self: self.fwd.hidden_size)
    output_size = property(lambda self: self.fwd.output_size)
    activation = property(lambda self: self.fwd.activation)
    output_activation = property(lambda self: self.fwd.output_activation)
    bias = property(lambda self: self.fwd.bias)
    dtype = property(lambda self: self.fwd.dtype)

    @property
    def out_features(self):
        F = self.fwd.out_features
        return 2 * F if self.merge == "concat" else F

    def config(self):
        c = self.fwd.config()
        del c["reverse"]
        c["type"] = "BiLayer"
        c["merge"] = self.merge
        return c

    @staticmethod
    def _pair(value, name):
        if value is None:
            return None, None
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{name} of a BiLayer must be a pair (fwd, bwd) or None, "
                            f"got {type(value).__name__}")
        return value

    def forward(self, x, h0=None, lengths=None):
        """Returns (y, (h_fwd, h_bwd)); see Layer.forward for x, lengths."""
        self._outputs = None
        h0s = dict(zip((self.fwd, self.bwd), self._pair(h0, "h0")))
        T, B = (np.shape(x) + (1, 1))[:2]
        (y_f, h_f), (y_b, h_b) = self._both(
            lambda m, n: m.forward(x, h0s[m], lengths, _threads=n), T, B)
        if self.merge == "concat":
            y = np.concatenate([y_f, y_b], axis=2)
        elif self.merge == "sum":
            y = y_f + y_b
        elif self.merge == "mean":
            y = (y_f + y_b) * 0.5
        else:
            y = y_f * y_b
        self._outputs = (y_f, y_b)
        return y, (h_f, h_b)

    def backward(self, dy, dstate=None, *, need_dx=True):
        """Returns (dx, (dh0_fwd, dh0_bwd)); dx is None for token input.
        Checks both directions' arguments before either accumulates."""
        args = self._backward_args(dy, dstate)
        T, B = self._outputs[0].shape[:2]
        (dx_f, dh_f), (dx_b, dh_b) = self._both(
            lambda m, n: m.backward(*args[m], need_dx=need_dx, _threads=n, _checked=True), T, B)
        dx = None if dx_f is None else dx_f + dx_b
        return dx, (dh_f, dh_b)

    def _backward_args(self, dy, dstate):
        """{direction: its (dy, dstate)}, checked and converted."""
        if self._outputs is None:
            raise RuntimeError("backward() needs a successful forward() first")
        y_f, y_b = self._outputs
        dy = _real(dy, "dy", self.dtype)
        T, B, F = y_f.shape
        if dy.shape != (T, B, self.out_features):
            raise ValueError(f"dy must have the output's shape (T, B, out_features) = "
                             f"({T}, {B}, {self.out_features}), got {dy.shape}")
        ds_f, ds_b = self._pair(dstate, "dstate")
        if self.merge == "concat":
            dy_f, dy_b = dy[..., :F], dy[..., F:]
        elif self.merge == "sum":
            dy_f = dy_b = dy
        elif self.merge == "mean":
            dy_f = dy_b = dy * 0.5
        else:
            dy_f, dy_b = dy * y_b, dy * y_f
        return {self.fwd: self.fwd._backward_args(dy_f, ds_f),
                self.bwd: self.bwd._backward_args(dy_b, ds_b)}

    def _dstate_arg(self, dstate):
        ds_f, ds_b = self._pair(dstate, "dstate")
        return self.fwd._dstate_arg(ds_f), self.bwd._dstate_arg(ds_b)

    def __repr__(self):
        f = self.fwd
        extra = ""
        if f.output_size is not None:
            extra += f", output_size={f.output_size}, output_activation={f.output_activation!r}"
        if not f.bias:
            extra += ", bias=False"
        return (f"BiLayer(input_size={f.input_size}, hidden_size={f.hidden_size}{extra}, "
                f"merge={self.merge!r}, activation={f.activation!r}, dtype={f.dtype.name})")


class Stack(Module):
    """Layers applied in turn: each layer's per-step output is the next one's
    input. The state is a list with one entry per layer (None: zeros); params
    are named by the layer's index, "0.W_xh", "1.bwd.W_hh". Only layer 0 may
    take token ids."""

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("a Stack needs at least one layer")
        first = {}  # id of each Layer (a BiLayer's two included) -> its position
        for i, m in enumerate(layers):
            if not isinstance(m, (Layer, BiLayer)):
                raise TypeError(f"layer {i} must be a Layer or BiLayer, got {type(m).__name__}")
            for part in (m.fwd, m.bwd) if isinstance(m, BiLayer) else (m,):
                j = first.setdefault(id(part), i)
                if j != i:
                    raise ValueError(f"layer {i} holds the same Layer object as layer {j}: a module keeps "
                                     "only its latest forward for backward, so one object cannot sit at "
                                     "two positions; give each position its own Layer (copy the weights "
                                     "for equal values)")
        for i in range(1, len(layers)):
            prev, cur = layers[i - 1], layers[i]
            if cur.input_size != prev.out_features:
                raise ValueError(f"layer {i} {cur!r} has input_size {cur.input_size}, but "
                                 f"layer {i - 1} {prev!r} has out_features {prev.out_features}")
            if cur.dtype != prev.dtype:
                raise ValueError(f"layer {i} {cur!r} has dtype {cur.dtype.name}, but "
                                 f"layer {i - 1} {prev!r} has dtype {prev.dtype.name}")
        self.layers = layers
        children = [(str(i), m) for i, m in enumerate(layers)]
        self.params = _Joined(children, "params")
        self.grads = _Joined(children, "grads")
        self._ready = False

    input_size = property(lambda self: self.layers[0].input_size)
    out_features = property(lambda self: self.layers[-1].out_features)
    dtype = property(lambda self: self.layers[0].dtype)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def config(self):
        return {"type": "Stack", "layers": [m.config() for m in self.layers]}

    def _list(self, value, name):
        n = len(self.layers)
        if value is None:
            return [None] * n
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise TypeError(f"{name} of a Stack must be a list with one entry per layer "
                            f"({n}) or None, got {type(value).__name__}"
                            + (f" of length {len(value)}" if isinstance(value, (list, tuple)) else ""))
        return list(value)

    def forward(self, x, h0=None, lengths=None):
        """Returns (y, [state of each layer])."""
        self._ready = False  # a failure part-way must leave nothing for backward
        h0 = self._list(h0, "h0")
        states = []
        for m, h in zip(self.layers, h0):
            x, s = m.forward(x, h, lengths)
            states.append(s)
        self._ready = True
        return x, states

    def backward(self, dy, dstate=None, *, need_dx=True):
        """Returns (dx, [dh0 of each layer]); dx is None for token input.
        Checks every layer's dstate (and the last layer its dy) before any
        layer accumulates."""
        if not self._ready:
            raise RuntimeError("backward() needs a successful forward() first")
        dstate = [m._dstate_arg(d) for m, d in zip(self.layers, self._list(dstate, "dstate"))]
        dh0 = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            dy, dh0[i] = self.layers[i].backward(dy, dstate[i], need_dx=need_dx or i > 0)
        return dy, dh0

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"Stack({inner}\n)"
