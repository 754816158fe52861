"""Weights in and out of other frameworks' Elman RNNs: PyTorch, Keras, Flax.

Every converter copies: the modules it returns own their parameters, and the
arrays it returns share no memory with a crnn module. Shapes, keys and values
(finite) are checked first; a problem is a ValueError that names the offending
key and the shape it should have. Only NumPy is imported here; torch is
imported inside `to_torch` / `from_torch` when it is needed (a state dict of
NumPy arrays converts without torch).

crnn's Layer computes, per step (DESIGN.md section 1),

    h_t = f(W_xh x_t + W_hh h_{t-1} + b_h),   W_xh (H, D), W_hh (H, H), b_h (H,)

PyTorch ``torch.nn.RNN`` (docs of torch.nn.RNN)
    h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), W_ih (H, D), W_hh (H, H)
    -> W_xh = W_ih, W_hh = W_hh, b_h = b_ih + b_hh (summed in float64, then
    rounded once to the target dtype). Layer k > 0 reads the previous layer's
    output, [h_fwd, h_bwd] when bidirectional, which is BiLayer(merge="concat").
    torch's h_n (num_layers * num_directions, B, H) is ordered layer-major,
    direction-minor: crnn's state list [h_0, ...] or [(f_0, b_0), ...].

Keras ``SimpleRNN`` (keras/src/layers/rnn/simple_rnn.py, SimpleRNNCell.call)
    h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)
    weights = [kernel (D, H), recurrent_kernel (H, H), bias (H,)] (no bias when
    use_bias=False) -> W_xh = kernel^T, W_hh = recurrent_kernel^T, b_h = bias.
    activation None / "linear" is crnn's "identity".

Flax linen ``SimpleCell`` (flax/linen/recurrent.py)
    h' = act(x @ i.kernel + i.bias + h @ h.kernel)          (residual=False)
    h' = act(x @ i.kernel + i.bias + h @ h.kernel + h)      (residual=True)
    params = {"i": {"kernel": (D, H), "bias": (H,)}, "h": {"kernel": (H, H)}};
    the recurrent Dense has no bias ("input and recurrent layers are summed so
    only one needs a bias"). -> W_xh = i.kernel^T, W_hh = h.kernel^T (+ I when
    residual), b_h = i.bias.

Time layout: crnn is time-major (T, B, D). Transpose batch-major input
yourself (``x.transpose(1, 0, 2)``), for torch's batch_first=True, Keras and
Flax's default (batch, time, features).
"""
import re
import warnings
from collections.abc import Mapping

import numpy as np

from crnn.layers import BiLayer, Layer, Stack, _dtype

__all__ = ["from_torch", "to_torch", "from_keras", "to_keras", "from_keras_bidirectional",
           "to_keras_bidirectional", "from_flax", "to_flax"]

TORCH_NONLINEARITIES = ("tanh", "relu")
KERAS_MERGES = {"concat": "concat", "sum": "sum", "ave": "mean", "mul": "mul"}
_CRNN_TO_KERAS_MERGE = {v: k for k, v in KERAS_MERGES.items()}
# names another framework may use for a hidden activation -> crnn's name
_ACTIVATION_ALIASES = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid",
                       "identity": "identity", "linear": "identity", None: "identity"}


# --------------------------------------------------------------------------
# helpers

def _import_torch():
    """torch, or None when it cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _to_numpy(value, key):
    """value (a torch tensor, NumPy array or anything array-like) as a float64
    NumPy copy, with the name of its source dtype. Raises unless real and finite."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "is_complex"):
        t = value.detach().cpu()  # a torch tensor; torch is importable since one exists
        src = str(t.dtype).rsplit(".", 1)[-1]
        if t.is_complex() or src == "bool":
            raise TypeError(f"{key} must hold real numbers, got dtype {t.dtype}")
        arr = t.double().numpy().copy()
    else:
        raw = np.asarray(value)
        if raw.dtype.kind not in "iuf":
            raise TypeError(f"{key} must hold real numbers, got dtype {raw.dtype}")
        src = raw.dtype.name
        arr = np.array(raw, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{key} must be finite (it holds NaN or inf)")
    return arr, src


def _check_shape(arr, key, expected, meaning):
    if arr.shape != tuple(expected):
        raise ValueError(f"{key} must have shape {meaning} = {tuple(expected)}, got {arr.shape}")


def _resolve_dtype(dtype, sources):
    """dtype if given; else float32 when every source array is float32, else float64."""
    if dtype is not None:
        return _dtype(dtype)
    if sources and all(s == "float32" for s in sources):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _activation(activation, what):
    """A framework's activation (a name, None, or a function with a __name__) as crnn's name."""
    name = activation
    if callable(activation):
        name = getattr(activation, "__name__", None)
    if isinstance(name, str):
        name = name.lower()
    if name not in _ACTIVATION_ALIASES:
        raise ValueError(f"{what} must be one of 'tanh', 'relu', 'sigmoid', 'identity' "
                         f"(or 'linear' / None), got {activation!r}")
    return _ACTIVATION_ALIASES[name]


def _fill(layer, W_xh, W_hh, b_h):
    """Copy float64 arrays into a Layer's live parameters (one rounding to its dtype)."""
    layer.params["W_xh"][...] = W_xh
    layer.params["W_hh"][...] = W_hh
    if b_h is not None:
        layer.params["b_h"][...] = b_h


def _new_layer(W_xh, W_hh, b_h, *, activation, reverse, dtype):
    H, D = W_xh.shape
    layer = Layer(D, H, activation=activation, reverse=reverse, bias=b_h is not None,
                  dtype=dtype, seed=0)
    _fill(layer, W_xh, W_hh, b_h)
    return layer


def _plain_layer(layer, what):
    """Raise unless `layer` is a crnn Layer without an output projection."""
    if not isinstance(layer, Layer):
        raise TypeError(f"{what} needs a crnn.Layer, got {type(layer).__name__}")
    if layer.output_size is not None:
        raise ValueError(f"{what}: {layer!r} has an output projection (output_size="
                         f"{layer.output_size}); the target cell has none")


# --------------------------------------------------------------------------
# PyTorch

_TORCH_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?\Z")


def _torch_unknown_keys(unknown):
    msg = (f"state_dict has keys that torch.nn.RNN does not: {unknown}; expected "
           "weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, each optionally "
           "with the suffix _reverse")
    names = [str(k) for k in unknown]
    if any("weight_hr" in k for k in names):
        msg += ("; weight_hr_l{k} is an LSTM output projection (proj_size > 0), which "
                "an Elman RNN does not have")
    prefixed = [k for k in names if "." in k and _TORCH_KEY.match(k.rsplit(".", 1)[-1])]
    if prefixed:
        msg += (f"; keys such as {prefixed[0]!r} carry a submodule prefix: pass the RNN "
                "module itself, or strip the prefix")
    return ValueError(msg)


def _parse_torch_state_dict(sd, expect):
    """Check a torch.nn.RNN state dict; returns (arrays by (kind, k, rev), sources,
    num_layers, bidirectional, bias, input_size, hidden_size)."""
    entries, unknown = {}, []
    for key in sd:
        m = _TORCH_KEY.match(key) if isinstance(key, str) else None
        if m is None:
            unknown.append(key)
        else:
            entries[(m.group(1), int(m.group(2)), m.group(3) is not None)] = key
    if unknown:
        raise _torch_unknown_keys(unknown)
    if not entries:
        raise ValueError("state_dict is empty: expected at least weight_ih_l0 and weight_hh_l0")
    L = max(k for _, k, _ in entries) + 1
    bidirectional = any(rev for _, _, rev in entries)
    bias = any(kind.startswith("bias") for kind, _, _ in entries)
    dirs = (False, True) if bidirectional else (False,)
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    missing = [f"{kind}_l{k}{'_reverse' if rev else ''}"
               for k in range(L) for rev in dirs for kind in kinds
               if (kind, k, rev) not in entries]
    if missing:
        raise ValueError(f"state_dict is missing {missing} (it holds {list(sd)}); nn.RNN "
                         "has weight_ih and weight_hh for every layer and direction, and "
                         "bias_ih and bias_hh for all of them or for none")
    got = dict(num_layers=L, bidirectional=bidirectional, bias=bias)
    for name, value in got.items():
        if name in expect and expect[name] != value:
            raise ValueError(f"the module says {name}={expect[name]!r} but its state_dict "
                             f"implies {name}={value!r}")

    arrays, sources = {}, []
    for ident, key in entries.items():
        arrays[ident], src = _to_numpy(sd[key], key)
        sources.append(src)

    w_hh0 = arrays[("weight_hh", 0, False)]
    if "hidden_size" in expect:
        H = expect["hidden_size"]
    elif w_hh0.ndim == 2 and w_hh0.shape[0] == w_hh0.shape[1] and w_hh0.shape[0] >= 1:
        H = w_hh0.shape[0]
    else:
        raise ValueError(f"weight_hh_l0 must have shape (hidden_size, hidden_size), "
                         f"got {w_hh0.shape}")
    w_ih0 = arrays[("weight_ih", 0, False)]
    if "input_size" in expect:
        D = expect["input_size"]
    elif w_ih0.ndim == 2 and w_ih0.shape[1] >= 1:
        D = w_ih0.shape[1]
    else:
        raise ValueError(f"weight_ih_l0 must have shape (hidden_size, input_size) = "
                         f"({H}, input_size), got {w_ih0.shape}")
    nd = len(dirs)
    for (kind, k, rev), arr in arrays.items():
        key = entries[(kind, k, rev)]
        if kind == "weight_ih":
            if k == 0:
                _check_shape(arr, key, (H, D), "(hidden_size, input_size)")
            else:
                _check_shape(arr, key, (H, nd * H),
                             "(hidden_size, num_directions * hidden_size)")
        elif kind == "weight_hh":
            _check_shape(arr, key, (H, H), "(hidden_size, hidden_size)")
        else:
            _check_shape(arr, key, (H,), "(hidden_size,)")
    return arrays, sources, L, bidirectional, bias, D, H


def from_torch(module_or_state_dict, *, nonlinearity=None, dtype=None):
    """A crnn Stack that computes exactly what a ``torch.nn.RNN`` computes.

    module_or_state_dict: a ``torch.nn.RNN`` (its attributes are read and
    checked against its weights) or its state dict: keys weight_ih_l{k},
    weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (suffix _reverse for the
    backward direction), values torch tensors or NumPy arrays; sizes, layer
    count, bias and bidirectionality are inferred from the keys and shapes.
    nonlinearity: "tanh" or "relu"; with a module it must match the module
    (None: take the module's); with a state dict None means "tanh".
    dtype: np.float32 / np.float64; None keeps float32 when every weight is
    float32, else float64.

    Each layer becomes a Layer, or a BiLayer(merge="concat") when
    bidirectional (torch concatenates [forward, backward] too); b_h is
    b_ih + b_hh summed in float64 and rounded once. The returned Stack has an
    attribute ``batch_first``: the module's setting (None for a state dict).
    crnn is time-major either way; for batch_first=True transpose x with
    ``x.transpose(1, 0, 2)`` before forward and y back after.

    Refused (ValueError): modules other than nn.RNN (LSTM, GRU), proj_size > 0
    or weight_hr keys, unknown or missing keys, inconsistent shapes,
    non-finite weights. ``dropout > 0`` (with num_layers > 1) only warns: torch
    applies it between layers in training mode only, so the returned Stack
    equals the module in ``eval()`` mode, which is what a comparison needs.
    Lengths: torch's packed sequences (pack_padded_sequence) correspond to
    crnn's ``lengths``; torch refuses length 0, crnn accepts it.
    """
    obj = module_or_state_dict
    expect = {}
    if isinstance(obj, Mapping):
        sd = obj
        batch_first = None
        nl = "tanh" if nonlinearity is None else nonlinearity
    elif hasattr(obj, "state_dict") and hasattr(obj, "parameters"):
        torch = _import_torch()
        if torch is None or not isinstance(obj, torch.nn.RNN):
            raise ValueError(f"from_torch converts torch.nn.RNN (an Elman RNN), got "
                             f"{type(obj).__name__}: crnn has no LSTM or GRU cells")
        if getattr(obj, "proj_size", 0):
            raise ValueError(f"proj_size={obj.proj_size} > 0: crnn has no hidden-state "
                             "projection (and nn.RNN supports none)")
        nl = obj.nonlinearity
        if nonlinearity is not None and nonlinearity != nl:
            raise ValueError(f"nonlinearity={nonlinearity!r} contradicts the module's "
                             f"nonlinearity={nl!r}")
        if obj.dropout > 0 and obj.num_layers > 1:
            warnings.warn(f"the torch.nn.RNN has dropout={obj.dropout}, applied between "
                          "layers in training mode only; crnn has no dropout, so the "
                          "converted Stack equals the module in eval() mode",
                          UserWarning, stacklevel=2)
        expect = dict(input_size=obj.input_size, hidden_size=obj.hidden_size,
                      num_layers=obj.num_layers, bias=bool(obj.bias),
                      bidirectional=bool(obj.bidirectional))
        batch_first = bool(obj.batch_first)
        sd = obj.state_dict()
    else:
        raise TypeError(f"from_torch needs a torch.nn.RNN or its state_dict (a mapping), "
                        f"got {type(obj).__name__}")
    if nl not in TORCH_NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (torch.nn.RNN's), got {nl!r}")

    arrays, sources, L, bidirectional, bias, D, H = _parse_torch_state_dict(sd, expect)
    dt = _resolve_dtype(dtype, sources)

    def weights(k, rev):
        b = None
        if bias:  # summed in float64 (exact for float32 sources), rounded once by _fill
            b = arrays[("bias_ih", k, rev)] + arrays[("bias_hh", k, rev)]
        return arrays[("weight_ih", k, rev)], arrays[("weight_hh", k, rev)], b

    layers = []
    for k in range(L):
        D_in = D if k == 0 else (2 * H if bidirectional else H)
        if bidirectional:
            m = BiLayer(D_in, H, merge="concat", activation=nl, bias=bias, dtype=dt, seed=0)
            _fill(m.fwd, *weights(k, False))
            _fill(m.bwd, *weights(k, True))
        else:
            m = Layer(D_in, H, activation=nl, bias=bias, dtype=dt, seed=0)
            _fill(m, *weights(k, False))
        layers.append(m)
    stack = Stack(layers)
    stack.batch_first = batch_first
    return stack


def _torch_modules(obj):
    """The modules of `obj` as nn.RNN layers, checked to be expressible by nn.RNN."""
    if isinstance(obj, Stack):
        mods = list(obj.layers)
    elif isinstance(obj, (Layer, BiLayer)):
        mods = [obj]
    else:
        raise TypeError(f"to_torch needs a crnn Stack, Layer or BiLayer, got {type(obj).__name__}")
    bi = [isinstance(m, BiLayer) for m in mods]
    if any(bi) and not all(bi):
        raise ValueError("the Stack mixes Layer and BiLayer: nn.RNN is bidirectional in "
                         "every layer or in none")
    first = mods[0]
    for i, m in enumerate(mods):
        where = f"layer {i} {m!r}"
        if isinstance(m, BiLayer):
            if m.merge != "concat":
                raise ValueError(f"{where} merges with {m.merge!r}: nn.RNN concatenates the "
                                 "two directions (merge='concat' only)")
            dirs = [m.fwd, m.bwd]
            if m.fwd.reverse or not m.bwd.reverse:
                raise ValueError(f"{where}: its fwd must run left to right and its bwd "
                                 "right to left")
        else:
            if m.reverse:
                raise ValueError(f"{where} is a reverse-only Layer: nn.RNN has no "
                                 "right-to-left unidirectional layer")
            dirs = [m]
        for d in dirs:
            if d.output_size is not None:
                raise ValueError(f"{where} has an output projection (output_size="
                                 f"{d.output_size}): nn.RNN has none")
            if d.activation not in TORCH_NONLINEARITIES:
                raise ValueError(f"{where} has activation {d.activation!r}: nn.RNN offers "
                                 "only 'tanh' and 'relu'")
            ref = first.fwd if isinstance(first, BiLayer) else first
            if d.activation != ref.activation:
                raise ValueError(f"{where} has activation {d.activation!r} but layer 0 has "
                                 f"{ref.activation!r}: nn.RNN uses one nonlinearity for all "
                                 "layers")
            if d.hidden_size != ref.hidden_size:
                raise ValueError(f"{where} has hidden_size {d.hidden_size} but layer 0 has "
                                 f"{ref.hidden_size}: nn.RNN uses one hidden_size for all "
                                 "layers")
            if d.bias != ref.bias:
                raise ValueError(f"{where} has bias={d.bias} but layer 0 has bias="
                                 f"{ref.bias}: nn.RNN has biases in all layers or in none")
    return mods


def to_torch(stack_or_module):
    """(state_dict, kwargs) such that ``rnn = torch.nn.RNN(**kwargs)`` followed
    by ``rnn.load_state_dict(state_dict)`` computes what the crnn module does.

    stack_or_module: a Stack of Layers, or of BiLayer(merge="concat"), or a
    single Layer / BiLayer (num_layers=1). kwargs: input_size, hidden_size,
    num_layers, nonlinearity, bias, bidirectional, batch_first=False, and,
    when torch is importable, dtype (torch.float32 / torch.float64, so that
    nn.RNN(**kwargs) holds the weights without rounding). The state dict
    holds b_ih = b_h and b_hh = 0; values are fresh torch tensors when torch
    is importable, else NumPy arrays (then build nn.RNN with dtype matching
    the arrays', or load_state_dict casts them to float32).

    Refused (ValueError, saying why): output projections, merges other than
    concat, sigmoid/identity activations, hidden sizes, activations or bias
    that differ across layers, a reverse-only Layer, Layer and BiLayer mixed.
    """
    mods = _torch_modules(stack_or_module)
    first = mods[0]
    bidirectional = isinstance(first, BiLayer)
    sd = {}
    for k, m in enumerate(mods):
        for suffix, layer in ([("", m.fwd), ("_reverse", m.bwd)] if bidirectional else [("", m)]):
            p = layer.params
            sd[f"weight_ih_l{k}{suffix}"] = p["W_xh"].copy()
            sd[f"weight_hh_l{k}{suffix}"] = p["W_hh"].copy()
            if layer.bias:
                sd[f"bias_ih_l{k}{suffix}"] = p["b_h"].copy()
                sd[f"bias_hh_l{k}{suffix}"] = np.zeros_like(p["b_h"])
    kwargs = dict(input_size=first.input_size, hidden_size=first.hidden_size,
                  num_layers=len(mods), nonlinearity=first.activation, bias=first.bias,
                  batch_first=False, bidirectional=bidirectional)
    torch = _import_torch()
    if torch is not None:
        sd = {k: torch.from_numpy(v) for k, v in sd.items()}
        kwargs["dtype"] = getattr(torch, first.dtype.name)
    return sd, kwargs


# --------------------------------------------------------------------------
# Keras

_KERAS_NAMES = ("kernel", "recurrent_kernel", "bias")


def _keras_arrays(weights, what):
    """[kernel, recurrent_kernel(, bias)] checked -> (W_xh, W_hh, b_h or None, sources)."""
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) \
            or len(weights) not in (2, 3):
        raise ValueError(f"{what} must be a list [kernel (input_dim, units), recurrent_kernel "
                         "(units, units), bias (units,)], or without bias, as SimpleRNN."
                         f"get_weights() returns; got {type(weights).__name__}"
                         + (f" of length {len(weights)}" if isinstance(weights, (list, tuple))
                            else ""))
    arrs, sources = [], []
    for i, w in enumerate(weights):
        a, src = _to_numpy(w, f"{what}[{i}] ({_KERAS_NAMES[i]})")
        arrs.append(a)
        sources.append(src)
    kernel = arrs[0]
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(f"{what}[0] (kernel) must have shape (input_dim, units), "
                         f"got {kernel.shape}")
    D, H = kernel.shape
    _check_shape(arrs[1], f"{what}[1] (recurrent_kernel)", (H, H), "(units, units)")
    b = None
    if len(arrs) == 3:
        _check_shape(arrs[2], f"{what}[2] (bias)", (H,), "(units,)")
        b = arrs[2]
    return kernel.T, arrs[1].T, b, sources


def from_keras(weights, *, activation="tanh", go_backwards=False, dtype=np.float64):
    """A Layer from Keras ``SimpleRNN`` weights.

    weights: ``[kernel (D, H), recurrent_kernel (H, H), bias (H,)]`` (or the
    first two, for use_bias=False), as ``layer.get_weights()`` returns; Keras
    computes h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel).
    activation: "tanh", "relu", "sigmoid", "linear" / None (crnn's "identity"),
    or such a function. go_backwards=True gives a reverse Layer; note that a
    standalone Keras SimpleRNN(go_backwards=True, return_sequences=True)
    returns its outputs in processing order (reversed), while crnn aligns them
    with the input steps: y_crnn = y_keras[:, ::-1] (batch-major). dtype: the
    Layer's (None: float32 if the weights are float32, else float64).
    Keras masks of right-padded sequences correspond to crnn's ``lengths``.
    """
    W_xh, W_hh, b, sources = _keras_arrays(weights, "weights")
    return _new_layer(W_xh, W_hh, b, activation=_activation(activation, "activation"),
                      reverse=bool(go_backwards), dtype=_resolve_dtype(dtype, sources))


def to_keras(layer):
    """Keras ``SimpleRNN`` weights of a Layer: [kernel (D, H), recurrent_kernel
    (H, H), bias (H,)], without bias when layer.bias is False; copies in the
    layer's dtype, for ``SimpleRNN(H, activation=..., use_bias=layer.bias)
    .set_weights(...)`` (crnn's "identity" is Keras's "linear"). The weights
    carry no direction: a reverse Layer is SimpleRNN(go_backwards=True), whose
    output sequence Keras returns reversed. Refuses an output projection.
    """
    _plain_layer(layer, "to_keras")
    p = layer.params
    out = [np.ascontiguousarray(p["W_xh"].T), np.ascontiguousarray(p["W_hh"].T)]
    if layer.bias:
        out.append(p["b_h"].copy())
    return out


def from_keras_bidirectional(forward_weights, backward_weights, *, merge_mode="concat",
                             activation="tanh", dtype=np.float64):
    """A BiLayer from a Keras ``Bidirectional(SimpleRNN(..., return_sequences=True))``.

    forward_weights, backward_weights: SimpleRNN weight lists as for
    `from_keras` (``Bidirectional.get_weights()`` is their concatenation:
    split it in half). merge_mode: "concat", "sum", "ave" (crnn's "mean") or
    "mul"; None (unmerged outputs) is refused: convert each half with
    from_keras. Keras runs the backward layer with go_backwards=True and then
    flips its output sequence back, so that step t of both directions refers
    to input step t, which is exactly crnn's BiLayer; with a mask of
    right-padded sequences Keras's backward layer first carries its state
    through the padding, i.e. starts at the last valid step, as crnn's
    ``lengths`` does. Both directions share the activation.
    """
    if merge_mode not in KERAS_MERGES:
        raise ValueError(f"merge_mode must be one of 'concat', 'sum', 'ave', 'mul', got "
                         f"{merge_mode!r}" + (" (unmerged outputs: convert each direction "
                                              "with from_keras)" if merge_mode is None else ""))
    fw = _keras_arrays(forward_weights, "forward_weights")
    bw = _keras_arrays(backward_weights, "backward_weights")
    for i, name in enumerate(("kernel", "recurrent_kernel")):
        want, got = fw[i].T.shape, bw[i].T.shape
        if got != want:
            raise ValueError(f"backward_weights[{i}] ({name}) must have the forward one's "
                             f"shape {want}, got {got}: both directions have the same sizes")
    if (fw[2] is None) != (bw[2] is None):
        raise ValueError("one direction has a bias and the other has none: both must have "
                         "use_bias equal")
    H, D = fw[0].shape
    m = BiLayer(D, H, merge=KERAS_MERGES[merge_mode],
                activation=_activation(activation, "activation"), bias=fw[2] is not None,
                dtype=_resolve_dtype(dtype, fw[3] + bw[3]), seed=0)
    _fill(m.fwd, *fw[:3])
    _fill(m.bwd, *bw[:3])
    return m


def to_keras_bidirectional(bilayer):
    """(forward_weights, backward_weights, merge_mode) of a BiLayer for Keras
    ``Bidirectional(SimpleRNN(H, return_sequences=True), merge_mode=...)``;
    ``bidirectional.set_weights(fw + bw)``. crnn's "mean" is Keras's "ave".
    Refuses output projections."""
    if not isinstance(bilayer, BiLayer):
        raise TypeError(f"to_keras_bidirectional needs a crnn.BiLayer, got "
                        f"{type(bilayer).__name__}")
    return (to_keras(bilayer.fwd), to_keras(bilayer.bwd), _CRNN_TO_KERAS_MERGE[bilayer.merge])


# --------------------------------------------------------------------------
# Flax

def _unwrap_flax(params):
    """Descend through {"params": ...} (a variables dict) and {"cell": ...}
    (an nn.RNN's params) wrappers."""
    while isinstance(params, Mapping) and len(params) == 1:
        (key,) = params
        if key not in ("params", "cell"):
            break
        params = params[key]
    return params


def _flax_keys(d, where, expected):
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {sorted(expected)}, "
                         f"got {type(d).__name__}")
    unknown = sorted(map(str, set(d) - set(expected)))
    missing = sorted(set(expected) - set(d))
    if unknown or missing:
        raise ValueError(f"{where} must have exactly the keys {sorted(expected)} (Flax "
                         f"SimpleCell); unknown: {unknown}, missing: {missing}")


def from_flax(params, *, activation="tanh", residual=False, reverse=False, dtype=np.float64):
    """A Layer from Flax linen ``SimpleCell`` params.

    params: {"i": {"kernel": (D, H), "bias": (H,)}, "h": {"kernel": (H, H)}},
    possibly wrapped in {"params": ...} (what ``init`` returns) and/or
    {"cell": ...} (the cell inside ``nn.RNN``). Flax computes
    h' = act(x @ i.kernel + i.bias + h @ h.kernel) (+ h inside act when the
    cell has residual=True; that is folded into W_hh = h.kernel^T + I, so it
    does not round-trip bitwise). The recurrent Dense ``h`` has no bias.
    activation: "tanh" (Flax's default), "relu", "sigmoid", "identity", or
    such a function. reverse=True matches ``nn.RNN(cell, reverse=True,
    keep_order=True)`` (outputs aligned with the input steps; with
    keep_order=False Flax returns them in processing order). Flax's
    ``seq_lengths`` is crnn's ``lengths``, but Flax does not zero the outputs
    at padded steps, crnn does. dtype: the Layer's (None: float32 if the
    params are float32, Flax's default param_dtype, else float64).
    """
    p = _unwrap_flax(params)
    _flax_keys(p, "params", {"i", "h"})
    _flax_keys(p["i"], 'params["i"]', {"kernel", "bias"})
    _flax_keys(p["h"], 'params["h"]', {"kernel"})
    ik, s1 = _to_numpy(p["i"]["kernel"], "i.kernel")
    ib, s2 = _to_numpy(p["i"]["bias"], "i.bias")
    hk, s3 = _to_numpy(p["h"]["kernel"], "h.kernel")
    if ik.ndim != 2 or min(ik.shape) < 1:
        raise ValueError(f"i.kernel must have shape (input_features, features), got {ik.shape}")
    D, H = ik.shape
    _check_shape(ib, "i.bias", (H,), "(features,)")
    _check_shape(hk, "h.kernel", (H, H), "(features, features)")
    W_hh = hk.T + np.eye(H) if residual else hk.T
    return _new_layer(ik.T, W_hh, ib, activation=_activation(activation, "activation"),
                      reverse=bool(reverse), dtype=_resolve_dtype(dtype, [s1, s2, s3]))


def to_flax(layer):
    """Flax linen ``SimpleCell(features=H, residual=False)`` params of a Layer:
    {"i": {"kernel": (D, H), "bias": (H,)}, "h": {"kernel": (H, H)}}, copies
    in the layer's dtype (wrap as {"params": ...} for ``apply``; inside
    ``nn.RNN`` as {"params": {"cell": ...}}). A Layer with bias=False gets a
    zero i.bias, since SimpleCell always has one. The params carry no
    direction: run a reverse Layer as nn.RNN(cell, reverse=True,
    keep_order=True). Refuses an output projection."""
    _plain_layer(layer, "to_flax")
    p = layer.params
    bias = p["b_h"].copy() if layer.bias else np.zeros(layer.hidden_size, dtype=layer.dtype)
    return {"i": {"kernel": np.ascontiguousarray(p["W_xh"].T), "bias": bias},
            "h": {"kernel": np.ascontiguousarray(p["W_hh"].T)}}
