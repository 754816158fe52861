"""The notes' equations, written out literally in NumPy: an oracle for the C core.

This module is slow on purpose. It exists so that the fast C core (an O(T)
backward recursion over whole-sequence GEMMs) can be checked against something
that shares none of its shortcuts:

- the forward pass loops over time steps t and hidden neurons j and computes
  a_tj = sum_d W_xh[j,d] x_td + sum_k W_hh[j,k] h_{t-1,k} + b_h[j] one neuron
  at a time (vectorised only over the batch);
- the gradient is the notes' formula as written, not the backward recursion:

      dL/dtheta = sum_t dL_t/dy_t . dy_t/dh_t . sum_{k<=t} dh_k/dtheta
                                                 . prod_{j=k+1..t} dh_j/dh_{j-1}

  with the Jacobians J_j = dh_j/dh_{j-1} = diag(f'(a_j)) W_hh built as explicit
  (H, H) matrices and multiplied out, per sequence. That costs O(T^2) matrix
  products per sequence, which is the point: it is a different computation
  from the recursion, so agreement between the two means something. f' is
  taken from the pre-activation a, where the C core takes it from h.

Everything is computed in float64, whatever the module's configured dtype.
NumPy and the standard library only; nothing else from crnn is imported.

A module is described by a JSON-able ``config`` and a flat ``params`` dict::

    {"type": "Layer", "input_size": D, "hidden_size": H, "output_size": O | None,
     "activation": "tanh", "output_activation": "identity", "reverse": False,
     "bias": True, "dtype": "float64"}
        params: W_xh (H, D), W_hh (H, H), b_h (H,), W_hy (O, H), b_y (O,)
        (b_h, b_y absent when bias=False; W_hy, b_y absent without output_size)
    {"type": "BiLayer", ..., "merge": "concat" | "sum" | "mean" | "mul"}
        params: "fwd.<name>" (reverse=False), "bwd.<name>" (reverse=True)
    {"type": "Stack", "layers": [config, ...]}
        params: "<i>.<name>", e.g. "0.W_xh", "1.bwd.W_hh"

Keys missing from a config are taken from the params (sizes, bias, output
projection) or default as in ``crnn.Layer``; keys present must agree with the
params. States are (B, H) arrays for a Layer, (fwd, bwd) tuples for a BiLayer
and lists with one entry per module for a Stack; None means zeros.

Public functions::

    forward(config, params, x, h0=None, lengths=None) -> (y, state)
    gradients(config, params, x, dy, h0=None, lengths=None, dstate=None)
        -> (grads, dx, dh0)
"""

import numpy as np

__all__ = ["forward", "gradients", "ACTIVATIONS", "OUTPUT_ACTIVATIONS", "MERGES"]

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUT_ACTIVATIONS = ACTIVATIONS + ("softmax",)
MERGES = ("concat", "sum", "mean", "mul")

_LAYER_PARAMS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# Activations. f acts on the hidden pre-activation a, g on the output
# pre-activation z = W_hy h + b_y.

def _act(name, a):
    """f(a) elementwise (also g for every g but softmax)."""
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.where(a > 0.0, a, 0.0)
    if name == "sigmoid":
        # 1 / (1 + e^-a), written so that exp never overflows.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
    if name == "identity":
        return np.array(a, dtype=np.float64, copy=True)
    raise ValueError(f"unknown activation {name!r}")


def _act_prime(name, a):
    """f'(a) elementwise, from the pre-activation a. relu'(0) := 0."""
    if name == "tanh":
        return 1.0 - np.tanh(a) ** 2
    if name == "relu":
        return (a > 0.0).astype(np.float64)
    if name == "sigmoid":
        s = _act("sigmoid", a)
        return s * (1.0 - s)
    if name == "identity":
        return np.ones_like(a, dtype=np.float64)
    raise ValueError(f"unknown activation {name!r}")


def _out_act(name, z):
    """g(z) for z of shape (n, O); softmax is over the feature axis."""
    if name == "softmax":
        e = np.exp(z - np.max(z, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)
    return _act(name, z)


def _out_act_jacobian(name, z):
    """dy/dz for one step of one sequence, z of shape (O,): an (O, O) matrix."""
    if name == "softmax":
        p = _out_act("softmax", z[None, :])[0]
        return np.diag(p) - np.outer(p, p)        # dp_i/dz_k = p_i (d_ik - p_k)
    return np.diag(_act_prime(name, z))


# --------------------------------------------------------------------------
# Parsing: config + flat params -> a tree of nodes holding float64 copies.

def _check_choice(value, choices, what):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {choices}")


def _check_dtype(config):
    if "dtype" in config and config["dtype"] is not None:
        try:
            dt = np.dtype(config["dtype"])
        except TypeError:
            raise ValueError(f"unknown dtype {config['dtype']!r}") from None
        if dt not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {config['dtype']!r}")
        return dt
    return None


def _param(params, name):
    if name not in params:
        return None
    arr = np.asarray(params[name])
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"parameter {name!r} must be a real numeric array")
    return np.array(arr, dtype=np.float64, copy=True)


def _who(prefix):
    """Message prefix naming the layer inside a BiLayer/Stack ("1.fwd: ")."""
    return f"{prefix[:-1]}: " if prefix else ""


def _parse_layer(config, params, prefix, used):
    f = config.get("activation", "tanh")
    g = config.get("output_activation", "identity")
    _check_choice(f, ACTIVATIONS, "activation")
    _check_choice(g, OUTPUT_ACTIVATIONS, "output_activation")
    reverse = config.get("reverse", False)
    if not isinstance(reverse, (bool, np.bool_)):
        raise ValueError(f"reverse must be a bool, got {reverse!r}")
    dtype = _check_dtype(config)

    p = {}
    for name in _LAYER_PARAMS:
        arr = _param(params, prefix + name)
        if arr is not None:
            p[name] = arr
            used.add(prefix + name)
    for name in ("W_xh", "W_hh"):
        if name not in p:
            raise ValueError(f"missing parameter {prefix + name!r}")
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    if W_hh.ndim != 2 or W_hh.shape[0] != W_hh.shape[1] or W_hh.shape[0] < 1:
        raise ValueError(f"{prefix}W_hh must be (H, H) with H >= 1, got {W_hh.shape}")
    H = W_hh.shape[0]
    if W_xh.ndim != 2 or W_xh.shape[0] != H or W_xh.shape[1] < 1:
        raise ValueError(f"{prefix}W_xh must be (H={H}, D) with D >= 1, got {W_xh.shape}")
    D = W_xh.shape[1]
    b_h, W_hy, b_y = p.get("b_h"), p.get("W_hy"), p.get("b_y")
    if b_h is not None and b_h.shape != (H,):
        raise ValueError(f"{prefix}b_h must be ({H},), got {b_h.shape}")
    O = None
    if W_hy is not None:
        if W_hy.ndim != 2 or W_hy.shape[1] != H or W_hy.shape[0] < 1:
            raise ValueError(f"{prefix}W_hy must be (O, H={H}), got {W_hy.shape}")
        O = W_hy.shape[0]
        if b_y is not None and b_y.shape != (O,):
            raise ValueError(f"{prefix}b_y must be ({O},), got {b_y.shape}")
        if (b_y is None) != (b_h is None):
            raise ValueError(f"{_who(prefix)}b_h and b_y must both be present (bias=True) "
                             "or both absent (bias=False)")
    elif b_y is not None:
        raise ValueError(f"{prefix}b_y given without W_hy")
    bias = b_h is not None
    if "bias" in config and config["bias"] is not None and bool(config["bias"]) != bias:
        raise ValueError(f"{_who(prefix)}config bias={config['bias']!r} but params "
                         f"{'have' if bias else 'lack'} b_h")
    for key, actual in (("input_size", D), ("hidden_size", H)):
        if config.get(key) is not None and config[key] != actual:
            raise ValueError(f"{_who(prefix)}config {key}={config[key]!r} but params give {actual}")
    if "output_size" in config and config["output_size"] != O:
        raise ValueError(f"{_who(prefix)}config output_size={config['output_size']!r} but params "
                         f"give {O!r} (W_hy {'absent' if O is None else 'present'})")
    if g != "identity" and W_hy is None:
        raise ValueError("output_activation other than identity needs output_size")
    return {"type": "Layer", "f": f, "g": g, "reverse": bool(reverse), "dtype": dtype,
            "prefix": prefix, "p": p, "D": D, "H": H, "O": O,
            "out": H if O is None else O}


def _parse_bilayer(config, params, prefix, used):
    merge = config.get("merge", "concat")
    _check_choice(merge, MERGES, "merge")
    sub = {k: config[k] for k in ("input_size", "hidden_size", "output_size", "activation",
                                  "output_activation", "bias", "dtype") if k in config}
    fwd = _parse_layer(dict(sub, type="Layer", reverse=False), params, prefix + "fwd.", used)
    bwd = _parse_layer(dict(sub, type="Layer", reverse=True), params, prefix + "bwd.", used)
    for key in ("D", "H", "O"):
        if fwd[key] != bwd[key]:
            raise ValueError(f"{_who(prefix)}fwd and bwd differ in {key}: {fwd[key]} vs {bwd[key]}")
    out = 2 * fwd["out"] if merge == "concat" else fwd["out"]
    return {"type": "BiLayer", "merge": merge, "fwd": fwd, "bwd": bwd, "dtype": fwd["dtype"],
            "D": fwd["D"], "out": out}


def _parse_stack(config, params, prefix, used):
    layers = config.get("layers")
    if not isinstance(layers, (list, tuple)) or len(layers) == 0:
        raise ValueError("a Stack config needs a non-empty list 'layers'")
    nodes = []
    for i, sub in enumerate(layers):
        if not isinstance(sub, dict) or sub.get("type") not in ("Layer", "BiLayer"):
            raise ValueError(f"Stack layer {i} must be a Layer or BiLayer config")
        node = _parse(sub, params, f"{prefix}{i}.", used)
        if nodes and node["D"] != nodes[-1]["out"]:
            raise ValueError(f"Stack layer {i} takes {node['D']} features but layer "
                             f"{i - 1} gives {nodes[-1]['out']}")
        nodes.append(node)
    dtypes = {n["dtype"] for n in nodes if n["dtype"] is not None}
    if len(dtypes) > 1:
        raise ValueError("the modules of a Stack must share one dtype")
    return {"type": "Stack", "layers": nodes, "D": nodes[0]["D"], "out": nodes[-1]["out"],
            "dtype": dtypes.pop() if dtypes else None}


def _parse(config, params, prefix="", used=None):
    if not isinstance(config, dict):
        raise ValueError("config must be a dict")
    kind = config.get("type")
    if kind == "Layer":
        return _parse_layer(config, params, prefix, used)
    if kind == "BiLayer":
        return _parse_bilayer(config, params, prefix, used)
    if kind == "Stack":
        return _parse_stack(config, params, prefix, used)
    raise ValueError(f"unknown module type {kind!r}; expected 'Layer', 'BiLayer' or 'Stack'")


def _parse_top(config, params):
    if not isinstance(params, dict):
        raise ValueError("params must be a dict")
    used = set()
    node = _parse(config, params, "", used)
    extra = sorted(set(params) - used)
    if extra:
        raise ValueError(f"unexpected parameters for this config: {extra}")
    return node


# --------------------------------------------------------------------------
# Input checks and state structures.

def _check_x(node, x):
    """-> (x as float64 (T,B,D) or token ids (T,B), tokens?)."""
    x = np.asarray(x)
    D = node["D"]
    if x.ndim == 2:
        if x.dtype.kind not in "iu":
            raise ValueError("a 2-D x must hold integer token ids")
        if x.size and (x.min() < 0 or x.max() >= D):
            raise ValueError(f"token ids must lie in [0, {D})")
        xs, tokens = x.astype(np.intp), True
    elif x.ndim == 3:
        if x.dtype.kind not in "biuf":
            raise ValueError(f"x must be real numeric, got dtype {x.dtype}")
        if x.shape[2] != D:
            raise ValueError(f"x has {x.shape[2]} features, the module takes {D}")
        xs, tokens = x.astype(np.float64), False
    else:
        raise ValueError(f"x must be (T, B, D) or token ids (T, B), got shape {x.shape}")
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"empty sequence or batch: x has shape {x.shape}")
    return xs, tokens


def _check_lengths(lengths, T, B):
    if lengths is None:
        return np.full(B, T, dtype=np.intp)
    arr = np.asarray(lengths)
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError("lengths must be integers")
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths must lie in [0, {T}]")
    return arr.astype(np.intp)


def _valid_mask(lengths, T):
    """(T, B) bool: step t of sequence b is real data (t < len_b), not padding."""
    return np.arange(T)[:, None] < lengths[None, :]


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")


def _norm_state(node, s, B, name):
    """User state structure -> the same structure with float64 arrays (zeros for None)."""
    kind = node["type"]
    if kind == "Layer":
        if s is None:
            return np.zeros((B, node["H"]))
        arr = np.asarray(s)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be real numeric")
        arr = arr.astype(np.float64)
        if arr.shape != (B, node["H"]):
            raise ValueError(f"{name} must have shape ({B}, {node['H']}), got {arr.shape}")
        _check_finite(arr, name)
        return arr
    if kind == "BiLayer":
        if s is None:
            s = (None, None)
        if not isinstance(s, (tuple, list)) or len(s) != 2:
            raise ValueError(f"{name} of a BiLayer must be a pair (fwd, bwd)")
        return (_norm_state(node["fwd"], s[0], B, name + "[0]"),
                _norm_state(node["bwd"], s[1], B, name + "[1]"))
    n = len(node["layers"])
    if s is None:
        s = [None] * n
    if not isinstance(s, (tuple, list)) or len(s) != n:
        raise ValueError(f"{name} of a Stack must be a list with {n} entries")
    return [_norm_state(sub, si, B, f"{name}[{i}]")
            for i, (sub, si) in enumerate(zip(node["layers"], s))]


# --------------------------------------------------------------------------
# Forward.

def _layer_forward(node, x, tokens, h0, lengths):
    """One Elman layer over all steps.

    x (T,B,D) float or (T,B) ids; h0 (B,H); lengths (B,).
    Returns y (T,B,out), h_last (B,H) and the cache for gradients:
    A (T,B,H) pre-activations, Hs (T,B,H) states, Z (T,B,O) output
    pre-activations (all zero at padded steps).
    """
    p, f, g = node["p"], node["f"], node["g"]
    W_xh, W_hh, b_h = p["W_xh"], p["W_hh"], p.get("b_h")
    W_hy, b_y = p.get("W_hy"), p.get("b_y")
    T, B = x.shape[:2]
    H, O = node["H"], node["O"]
    mask = _valid_mask(lengths, T)
    A = np.zeros((T, B, H))
    Hs = np.zeros((T, B, H))
    Z = np.zeros((T, B, O)) if O is not None else None
    Y = np.zeros((T, B, node["out"]))
    # h holds each sequence's latest state; a sequence's state only moves at its
    # valid steps, so a reverse layer keeps h0 until it reaches step len_b - 1.
    h = h0.copy()
    order = range(T - 1, -1, -1) if node["reverse"] else range(T)
    for t in order:
        v = mask[t]                        # sequences for which step t is real
        if not v.any():
            continue
        h_prev = h[v]                      # (n, H)  h_{t-1}
        x_t = x[t][v]                      # (n, D) or (n,) ids; padding is never read
        a = np.empty((h_prev.shape[0], H))
        for j in range(H):
            # a_tj = sum_d W_xh[j,d] x_td + sum_k W_hh[j,k] h_{t-1,k} + b_h[j]
            if tokens:
                inp = W_xh[j, x_t]         # one-hot x_t: column id of W_xh
            else:
                inp = x_t @ W_xh[j]
            a[:, j] = inp + h_prev @ W_hh[j] + (b_h[j] if b_h is not None else 0.0)
        h_t = _act(f, a)                   # h_t = f(a_t)
        h[v] = h_t
        A[t, v] = a
        Hs[t, v] = h_t
        if W_hy is None:
            Y[t, v] = h_t                  # no projection: y_t = h_t
        else:
            z = np.empty((h_t.shape[0], O))
            for o in range(O):
                # z_to = sum_k W_hy[o,k] h_tk + b_y[o]
                z[:, o] = h_t @ W_hy[o] + (b_y[o] if b_y is not None else 0.0)
            Z[t, v] = z
            Y[t, v] = _out_act(g, z)       # y_t = g(z_t)
    return Y, h, {"A": A, "Hs": Hs, "Z": Z}


def _merge_forward(merge, yf, yb, mask):
    out = yf.shape[2] * (2 if merge == "concat" else 1)
    Y = np.zeros(yf.shape[:2] + (out,))
    f, b = yf[mask], yb[mask]
    if merge == "concat":
        Y[mask] = np.concatenate([f, b], axis=-1)   # fwd first, as PyTorch
    elif merge == "sum":
        Y[mask] = f + b
    elif merge == "mean":
        Y[mask] = (f + b) / 2.0
    else:  # mul
        Y[mask] = f * b
    return Y


def _forward(node, x, tokens, h0, lengths):
    """-> (y, state); h0 is already in normalised structure."""
    kind = node["type"]
    if kind == "Layer":
        y, h, _ = _layer_forward(node, x, tokens, h0, lengths)
        return y, h
    if kind == "BiLayer":
        yf, hf, _ = _layer_forward(node["fwd"], x, tokens, h0[0], lengths)
        yb, hb, _ = _layer_forward(node["bwd"], x, tokens, h0[1], lengths)
        return _merge_forward(node["merge"], yf, yb, _valid_mask(lengths, x.shape[0])), (hf, hb)
    states = []
    for i, (sub, h0_i) in enumerate(zip(node["layers"], h0)):
        x, s = _forward(sub, x, tokens and i == 0, h0_i, lengths)
        states.append(s)
    return x, states


def forward(config, params, x, h0=None, lengths=None):
    """Run a Layer / BiLayer / Stack over x; returns (y, state), both float64.

    x: (T, B, D) real or (T, B) integer token ids in [0, D).
    h0: initial state in the module's state structure (None = zeros).
    lengths: (B,) ints in [0, T], or None for all T.
    y: (T, B, out_features), exactly 0 at padded steps; state: the state after
    each sequence's last processed step (h0 where len_b = 0).
    """
    node = _parse_top(config, params)
    xs, tokens = _check_x(node, x)
    T, B = xs.shape[:2]
    lengths = _check_lengths(lengths, T, B)
    if not tokens:
        _check_finite(xs[_valid_mask(lengths, T)], "x")
    h0 = _norm_state(node, h0, B, "h0")
    return _forward(node, xs, tokens, h0, lengths)


# --------------------------------------------------------------------------
# Gradients.

def _layer_gradients(node, x, tokens, h0, lengths, dy, dstate):
    """dL/dtheta, dx, dh0 of one Elman layer by the notes' product of Jacobians.

    dy (T,B,out) is dL_t/dy_t (read at valid steps only); dstate (B,H) is
    dL/dh_last. Returns (grads keyed by full parameter name, dx (T,B,D) or None,
    dh0 (B,H)).
    """
    p, f, g, prefix = node["p"], node["f"], node["g"], node["prefix"]
    W_xh, W_hh, W_hy = p["W_xh"], p["W_hh"], p.get("W_hy")
    H = node["H"]
    B = x.shape[1]
    _, _, cache = _layer_forward(node, x, tokens, h0, lengths)
    A, Hs, Z = cache["A"], cache["Hs"], cache["Z"]

    grad = {name: np.zeros_like(arr) for name, arr in p.items()}
    dx = None if tokens else np.zeros_like(x)
    dh0 = np.zeros((B, H))
    I = np.eye(H)

    for b in range(B):
        n = int(lengths[b])
        if n == 0:
            dh0[b] = dstate[b]             # h_last = h0
            continue
        # steps[s] is the time index of the s-th step this layer processes.
        steps = list(range(n - 1, -1, -1)) if node["reverse"] else list(range(n))
        a = [A[t, b] for t in steps]
        h = [Hs[t, b] for t in steps]
        h_prev = [h0[b]] + h[:-1]          # h_prev[s] = state before step s
        fp = [_act_prime(f, a_s) for a_s in a]
        J = [fp_s[:, None] * W_hh for fp_s in fp]   # J_s = dh_s/dh_{s-1} = diag(f'(a_s)) W_hh

        for s in range(n):
            t = steps[s]
            # e = dL_s/dy_s . dy_s/dh_s  (a row vector over h_s)
            if W_hy is None:
                e = dy[t, b].copy()        # y_s = h_s: dy_s/dh_s = I
            else:
                Gz = _out_act_jacobian(g, Z[t, b])       # dy_s/dz_s      (O, O)
                dz = dy[t, b] @ Gz                        # dL_s/dz_s      (O,)
                grad["W_hy"] += np.outer(dz, h[s])        # dz_s/dW_hy: immediate
                if "b_y" in grad:
                    grad["b_y"] += dz
                dy_dh = Gz @ W_hy                         # dy_s/dh_s      (O, H)
                e = dy[t, b] @ dy_dh
            if s == n - 1:
                e = e + dstate[b]          # dL/dh_last enters at the last step
            # sum_{k<=s} dh_k/dtheta (immediate) . prod_{j=k+1..s} J_j
            M = I                          # prod_{j=k+1..s} J_j = J_s ... J_{k+1}; empty for k = s
            for k in range(s, -1, -1):
                v = e @ M                  # dL_s/dh_k
                delta = v * fp[k]          # dL_s/da_k
                if tokens:
                    grad["W_xh"][:, x[steps[k], b]] += delta
                else:
                    grad["W_xh"] += np.outer(delta, x[steps[k], b])
                    dx[steps[k], b] += delta @ W_xh
                grad["W_hh"] += np.outer(delta, h_prev[k])
                if "b_h" in grad:
                    grad["b_h"] += delta
                M = M @ J[k]               # now J_s ... J_k
            dh0[b] += e @ M                # dh_s/dh0 = J_s ... J_first

    return {prefix + name: arr for name, arr in grad.items()}, dx, dh0


def _merge_backward(merge, dy, yf, yb, mask):
    """Split the merged output's gradient into per-direction gradients (valid steps only)."""
    Of = yf.shape[2]
    dyf = np.zeros_like(yf)
    dyb = np.zeros_like(yb)
    d = dy[mask]
    if merge == "concat":
        dyf[mask], dyb[mask] = d[:, :Of], d[:, Of:]
    elif merge == "sum":
        dyf[mask], dyb[mask] = d, d
    elif merge == "mean":
        dyf[mask], dyb[mask] = d / 2.0, d / 2.0
    else:  # mul: y = f * b
        dyf[mask], dyb[mask] = d * yb[mask], d * yf[mask]
    return dyf, dyb


def _gradients(node, x, tokens, h0, lengths, dy, dstate):
    kind = node["type"]
    if kind == "Layer":
        return _layer_gradients(node, x, tokens, h0, lengths, dy, dstate)
    if kind == "BiLayer":
        yf, _, _ = _layer_forward(node["fwd"], x, tokens, h0[0], lengths)
        yb, _, _ = _layer_forward(node["bwd"], x, tokens, h0[1], lengths)
        dyf, dyb = _merge_backward(node["merge"], dy, yf, yb, _valid_mask(lengths, x.shape[0]))
        gf, dxf, dh0f = _layer_gradients(node["fwd"], x, tokens, h0[0], lengths, dyf, dstate[0])
        gb, dxb, dh0b = _layer_gradients(node["bwd"], x, tokens, h0[1], lengths, dyb, dstate[1])
        return {**gf, **gb}, (None if tokens else dxf + dxb), (dh0f, dh0b)
    # Stack: forward keeping every layer's input, then the chain rule from the
    # top: the dx of layer i is the dy of layer i - 1.
    layers = node["layers"]
    inputs = [x]
    for i, sub in enumerate(layers[:-1]):
        y, _ = _forward(sub, inputs[-1], tokens and i == 0, h0[i], lengths)
        inputs.append(y)
    grads, dh0 = {}, [None] * len(layers)
    d = dy
    for i in range(len(layers) - 1, -1, -1):
        g, d, dh0[i] = _gradients(layers[i], inputs[i], tokens and i == 0, h0[i],
                                  lengths, d, dstate[i])
        grads.update(g)
    return grads, d, dh0


def gradients(config, params, x, dy, h0=None, lengths=None, dstate=None):
    """Gradients of L = sum dy * y + sum dstate * state, by the notes' formula.

    dy: (T, B, out_features), dL/dy (None = zeros); only valid steps are read.
    dstate: dL/d(final state) in the state structure (None = zeros).
    Returns (grads, dx, dh0): grads has the keys of params (float64 arrays);
    dx is (T, B, D), or None for token input; dh0 is in the state structure
    (arrays, never None), dL/dh0 at h0 (zeros when h0 is None).
    """
    node = _parse_top(config, params)
    xs, tokens = _check_x(node, x)
    T, B = xs.shape[:2]
    lengths = _check_lengths(lengths, T, B)
    mask = _valid_mask(lengths, T)
    if not tokens:
        _check_finite(xs[mask], "x")
    h0 = _norm_state(node, h0, B, "h0")
    dstate = _norm_state(node, dstate, B, "dstate")
    if dy is None:
        dys = np.zeros((T, B, node["out"]))
    else:
        dy = np.asarray(dy)
        if dy.dtype.kind not in "biuf":
            raise ValueError("dy must be real numeric")
        dys = dy.astype(np.float64)
        if dys.shape != (T, B, node["out"]):
            raise ValueError(f"dy must have shape {(T, B, node['out'])}, got {dys.shape}")
        _check_finite(dys[mask], "dy")
    grads, dx, dh0 = _gradients(node, xs, tokens, h0, lengths, dys, dstate)
    return {k: grads[k] for k in params}, dx, dh0
