"""The modules: `Layer` (one Elman layer), `BiLayer` and `Stack`.

Conventions (DESIGN.md §2): time-major x of shape (T, B, D), or int token ids
of shape (T, B); `lengths` (B,) marks each sequence's valid prefix; a state is
(B, H) for a Layer. `params` and `grads` are dicts of live arrays with the same
keys; `backward` accumulates into `grads`.
"""
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
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths must lie in [0, T] = [0, {T}], got min {arr.min()}, max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


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
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return arr


def _finite_valid(arr, name, lengths):
    """Raise unless arr (T, B, ...) is finite at every valid step."""
    if lengths is None:
        ok = np.isfinite(arr).all()
    else:
        ok = all(np.isfinite(arr[:n, b]).all() for b, n in enumerate(lengths))
    if not ok:
        raise ValueError(f"{name} must be finite at valid steps (it holds NaN or inf)")


def _sequence_input(x, D, dtype, lengths_arg):
    """Check and convert a layer input.

    Returns (x or None, tokens or None, T, B, lengths): dense x is (T, B, D) of
    `dtype` with padding zeroed; tokens are (T, B) int64 ids in [0, D).
    """
    arr = np.asarray(x)
    if arr.ndim == 2:
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
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
        if arr.min() < 0 or arr.max() >= D:
            raise ValueError(f"token ids must lie in [0, D) = [0, {D}) at every position "
                             f"(pad with 0), got min {arr.min()}, max {arr.max()}")
        return None, np.ascontiguousarray(arr, dtype=np.int64), T, B, lengths
    dense = np.ascontiguousarray(arr, dtype=dtype)
    if lengths is not None and (lengths < T).any():
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
        return dict(T=T, B=B, D=self.input_size, H=self.hidden_size, O=self.output_size or 0,
                    activation=self.activation, output_activation=self.output_activation,
                    reverse=self.reverse, bias=self.bias)

    def forward(self, x, h0=None, lengths=None):
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
                                            **self._sizes(T, B))
        hs.flags.writeable = False
        if y is not None:
            y.flags.writeable = False
        self._ctx = (x, tokens, h0, lengths, hs, y)
        return (hs if y is None else y), h_last

    def backward(self, dy, dstate=None, *, need_dx=True):
        """Backpropagation through time for the latest forward.

        dy: dL/dy, shape (T, B, out_features), read at valid steps only;
        dstate: dL/dh_last (B, H) or None. Accumulates (+=) into `grads` and
        returns (dx, dh0): dx (T, B, D), None for token input (or when
        need_dx=False); dh0 (B, H), also when h0 was None.
        """
        if self._ctx is None:
            raise RuntimeError("backward() needs a successful forward() first")
        x, tokens, h0, lengths, hs, y = self._ctx
        T, B = hs.shape[:2]
        dy = _real(dy, "dy", self.dtype)
        if dy.shape != (T, B, self.out_features):
            raise ValueError(f"dy must have the output's shape (T, B, out_features) = "
                             f"({T}, {B}, {self.out_features}), got {dy.shape}")
        _finite_valid(dy, "dy", lengths)
        dstate = _state(dstate, "dstate", B, self.hidden_size, self.dtype)
        return _core.elman_backward(dy, dstate, hs, y, x, tokens, h0, lengths, self.params,
                                    self.grads, need_dx, **self._sizes(T, B))

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
