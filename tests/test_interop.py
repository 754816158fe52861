"""crnn.interop without torch, TensorFlow or JAX: the Keras, Flax and PyTorch
weight formats as plain NumPy arrays of the documented shapes.

Each framework's documented per-step formula is written out below in a few
lines of NumPy (batch-major where the framework is) and compared with the
converted crnn module's forward pass; round trips crnn -> format -> crnn are
bitwise; every refusal is checked for its message.
"""
import subprocess
import sys

import numpy as np
import pytest

import crnn
from crnn import interop

TOL64 = 1e-12
ACTS = ["tanh", "relu", "sigmoid", "identity"]


def _act(name, a):
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    return a


def _err(a, ref):
    ref = np.asarray(ref)
    return np.max(np.abs(np.asarray(a) - ref)) / max(1.0, np.max(np.abs(ref)))


def _rand(rng, *shape, scale=0.6):
    return rng.uniform(-scale, scale, size=shape)


# --------------------------------------------------------------------------
# Independent oracles: the frameworks' documented formulas

def keras_simple_rnn(x, kernel, rec, bias, act, h0=None, go_backwards=False):
    """Keras SimpleRNN(return_sequences=True, return_state=True) on batch-major
    x (B, T, D): h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel).
    go_backwards processes t = T-1..0 and returns outputs in that order."""
    B, T, _ = x.shape
    h = np.zeros((B, kernel.shape[1])) if h0 is None else h0
    outs = []
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        a = x[:, t] @ kernel + h @ rec
        if bias is not None:
            a = a + bias
        h = _act(act, a)
        outs.append(h)
    return np.stack(outs, axis=1), h


def keras_bidirectional(x, fw, bw, merge_mode, act):
    """Keras Bidirectional: backward layer with go_backwards, its output
    sequence flipped back on the time axis, then merged."""
    y, h_f = keras_simple_rnn(x, *_kw(fw), act)
    y_rev, h_b = keras_simple_rnn(x, *_kw(bw), act, go_backwards=True)
    y_rev = y_rev[:, ::-1]
    merged = {"concat": lambda: np.concatenate([y, y_rev], axis=-1), "sum": lambda: y + y_rev,
              "ave": lambda: (y + y_rev) / 2, "mul": lambda: y * y_rev}[merge_mode]()
    return merged, h_f, h_b


def _kw(weights):
    return weights[0], weights[1], (weights[2] if len(weights) == 3 else None)


def flax_simple_cell_rnn(x, params, act, residual=False, h0=None):
    """nn.RNN(SimpleCell) on batch-major x: h' = act(x @ i.kernel + i.bias + h @ h.kernel (+ h))."""
    ik, ib, hk = params["i"]["kernel"], params["i"]["bias"], params["h"]["kernel"]
    B, T, _ = x.shape
    h = np.zeros((B, ik.shape[1])) if h0 is None else h0
    outs = []
    for t in range(T):
        a = x[:, t] @ ik + ib + h @ hk
        if residual:
            a = a + h
        h = _act(act, a)
        outs.append(h)
    return np.stack(outs, axis=1), h


def torch_rnn_numpy(sd, x, act, h0, lengths):
    """torch.nn.RNN semantics on time-major x (T, B, D), from a state dict of
    NumPy arrays, with packed-sequence lengths: h_t = act(W_ih x_t + b_ih +
    W_hh h_{t-1} + b_hh); the reverse direction runs over each valid prefix
    from its end; padded outputs are 0; h_n (L*dirs, B, H) layer-major."""
    L = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in sd)
    dirs = 2 if any(k.endswith("_reverse") for k in sd) else 1
    T, B, _ = x.shape
    inp, h_n = x, []
    for k in range(L):
        outs = []
        for d in range(dirs):
            s = f"_l{k}" + ("_reverse" if d else "")
            Wi, Wh = sd["weight_ih" + s], sd["weight_hh" + s]
            b = sd["bias_ih" + s] + sd["bias_hh" + s] if "bias_ih" + s in sd else 0.0
            H = Wh.shape[0]
            y = np.zeros((T, B, H))
            hn = np.zeros((B, H))
            for j in range(B):
                n = T if lengths is None else lengths[j]
                h = h0[k * dirs + d, j]
                for t in (range(n - 1, -1, -1) if d else range(n)):
                    h = _act(act, Wi @ inp[t, j] + Wh @ h + b)
                    y[t, j] = h
                hn[j] = h
            outs.append(y)
            h_n.append(hn)
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(h_n)


# --------------------------------------------------------------------------
# Keras SimpleRNN

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_keras_simple_rnn_formula(act, bias, go_backwards):
    rng = np.random.default_rng(1)
    B, T, D, H = 3, 6, 4, 5
    w = [_rand(rng, D, H), _rand(rng, H, H)] + ([_rand(rng, H)] if bias else [])
    x, h0 = rng.standard_normal((B, T, D)), _rand(rng, B, H)
    keras_act = {"identity": "linear"}.get(act, act)
    layer = interop.from_keras(w, activation=keras_act, go_backwards=go_backwards)
    assert isinstance(layer, crnn.Layer)
    assert (layer.activation, layer.bias, layer.reverse) == (act, bias, go_backwards)
    assert layer.dtype == np.float64
    y_ref, h_ref = keras_simple_rnn(x, *_kw(w), act, h0=h0, go_backwards=go_backwards)
    if go_backwards:  # Keras returns processing order, crnn aligns with the input steps
        y_ref = y_ref[:, ::-1]
    y, h = layer.forward(x.transpose(1, 0, 2), h0)
    assert _err(y.transpose(1, 0, 2), y_ref) <= TOL64
    assert _err(h, h_ref) <= TOL64


def test_keras_activation_none_and_functions():
    rng = np.random.default_rng(2)
    w = [_rand(rng, 2, 3), _rand(rng, 3, 3), _rand(rng, 3)]
    assert interop.from_keras(w, activation=None).activation == "identity"
    assert interop.from_keras(w, activation=np.tanh).activation == "tanh"
    assert interop.from_keras(w, activation="ReLU").activation == "relu"


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("bias", [True, False])
def test_keras_bidirectional_formula(merge_mode, bias):
    rng = np.random.default_rng(3)
    B, T, D, H = 2, 5, 3, 4

    def weights():
        return [_rand(rng, D, H), _rand(rng, H, H)] + ([_rand(rng, H)] if bias else [])

    fw, bw = weights(), weights()
    x = rng.standard_normal((B, T, D))
    bi = interop.from_keras_bidirectional(fw, bw, merge_mode=merge_mode, activation="tanh")
    assert isinstance(bi, crnn.BiLayer)
    assert bi.merge == {"ave": "mean"}.get(merge_mode, merge_mode)
    y_ref, hf_ref, hb_ref = keras_bidirectional(x, fw, bw, merge_mode, "tanh")
    y, (hf, hb) = bi.forward(x.transpose(1, 0, 2))
    assert _err(y.transpose(1, 0, 2), y_ref) <= TOL64
    assert _err(hf, hf_ref) <= TOL64 and _err(hb, hb_ref) <= TOL64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_keras_round_trip_is_bitwise(dtype, act, bias):
    layer = crnn.Layer(4, 3, activation=act, bias=bias, dtype=dtype, seed=5)
    w = interop.to_keras(layer)
    assert [a.shape for a in w] == [(4, 3), (3, 3)] + ([(3,)] if bias else [])
    assert all(a.dtype == layer.dtype for a in w)
    back = interop.from_keras(w, activation=act, dtype=dtype)
    assert back.params.keys() == layer.params.keys() and back.dtype == layer.dtype
    for k in layer.params:
        assert np.array_equal(back.params[k], layer.params[k]), k
    # copies, never views of the live parameters
    w[0][...] = 0
    assert not np.array_equal(layer.params["W_xh"], 0)


def test_keras_dtype_none_infers_float32():
    rng = np.random.default_rng(4)
    w = [_rand(rng, 2, 3).astype(np.float32), _rand(rng, 3, 3).astype(np.float32)]
    assert interop.from_keras(w, dtype=None).dtype == np.float32
    assert interop.from_keras(w).dtype == np.float64  # default: the reference's dtype


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_keras_bidirectional_round_trip(merge):
    bi = crnn.BiLayer(3, 4, merge=merge, activation="relu", seed=6)
    fw, bw, mode = interop.to_keras_bidirectional(bi)
    assert mode == {"mean": "ave"}.get(merge, merge)
    back = interop.from_keras_bidirectional(fw, bw, merge_mode=mode, activation="relu")
    assert back.merge == merge and back.activation == "relu"
    for k in bi.params:
        assert np.array_equal(back.params[k], bi.params[k]), k
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    assert np.array_equal(back.forward(x)[0], bi.forward(x)[0])


def test_keras_refusals():
    rng = np.random.default_rng(7)
    k, r, b = _rand(rng, 3, 4), _rand(rng, 4, 4), _rand(rng, 4)
    with pytest.raises(ValueError, match="list"):
        interop.from_keras([k])
    with pytest.raises(ValueError, match="list"):
        interop.from_keras(k)
    with pytest.raises(ValueError, match=r"kernel.*\(input_dim, units\)"):
        interop.from_keras([b, r, b])
    with pytest.raises(ValueError, match=r"recurrent_kernel.*\(4, 4\).*\(4, 3\)"):
        interop.from_keras([k, r[:, :3], b])
    with pytest.raises(ValueError, match=r"weights\[2\] \(bias\).*\(4,\).*\(3,\)"):
        interop.from_keras([k, r, b[:3]])
    with pytest.raises(ValueError, match="finite"):
        interop.from_keras([k, np.full((4, 4), np.nan), b])
    with pytest.raises(TypeError, match="real"):
        interop.from_keras([k.astype(complex), r, b])
    with pytest.raises(ValueError, match="activation"):
        interop.from_keras([k, r, b], activation="softmax")
    with pytest.raises(ValueError, match="output projection"):
        interop.to_keras(crnn.Layer(3, 4, 2))
    with pytest.raises(TypeError, match="Layer"):
        interop.to_keras(crnn.BiLayer(3, 4))
    with pytest.raises(TypeError, match="BiLayer"):
        interop.to_keras_bidirectional(crnn.Layer(3, 4))
    with pytest.raises(ValueError, match="output projection"):
        interop.to_keras_bidirectional(crnn.BiLayer(3, 4, 2))


def test_keras_bidirectional_refusals():
    rng = np.random.default_rng(8)
    fw = [_rand(rng, 3, 4), _rand(rng, 4, 4), _rand(rng, 4)]
    with pytest.raises(ValueError, match="unmerged"):
        interop.from_keras_bidirectional(fw, fw, merge_mode=None)
    with pytest.raises(ValueError, match="merge_mode"):
        interop.from_keras_bidirectional(fw, fw, merge_mode="mean")
    bw = [_rand(rng, 3, 5), _rand(rng, 5, 5), _rand(rng, 5)]
    with pytest.raises(ValueError, match=r"backward_weights\[0\] \(kernel\).*\(3, 4\).*\(3, 5\)"):
        interop.from_keras_bidirectional(fw, bw)
    with pytest.raises(ValueError, match="bias"):
        interop.from_keras_bidirectional(fw, fw[:2])
    with pytest.raises(ValueError, match=r"backward_weights\[1\]"):
        interop.from_keras_bidirectional(fw, [fw[0], fw[1][:2], fw[2]])


# --------------------------------------------------------------------------
# Flax linen SimpleCell

def _flax_params(rng, D, H):
    return {"i": {"kernel": _rand(rng, D, H), "bias": _rand(rng, H)},
            "h": {"kernel": _rand(rng, H, H)}}


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("residual", [False, True])
def test_flax_simple_cell_formula(act, residual):
    rng = np.random.default_rng(9)
    B, T, D, H = 3, 6, 4, 5
    params = _flax_params(rng, D, H)
    x, h0 = rng.standard_normal((B, T, D)), _rand(rng, B, H)
    layer = interop.from_flax(params, activation=act, residual=residual)
    assert isinstance(layer, crnn.Layer) and layer.activation == act and layer.bias
    y_ref, h_ref = flax_simple_cell_rnn(x, params, act, residual=residual, h0=h0)
    y, h = layer.forward(x.transpose(1, 0, 2), h0)
    assert _err(y.transpose(1, 0, 2), y_ref) <= TOL64
    assert _err(h, h_ref) <= TOL64


def test_flax_reverse_keep_order():
    """reverse=True is nn.RNN(cell, reverse=True, keep_order=True): the cell
    runs over the flipped sequence, outputs flipped back."""
    rng = np.random.default_rng(10)
    params = _flax_params(rng, 3, 4)
    x = rng.standard_normal((2, 5, 3))
    y_ref, h_ref = flax_simple_cell_rnn(x[:, ::-1], params, "tanh")
    y, h = interop.from_flax(params, reverse=True).forward(x.transpose(1, 0, 2))
    assert _err(y.transpose(1, 0, 2), y_ref[:, ::-1]) <= TOL64
    assert _err(h, h_ref) <= TOL64


def test_flax_wrappers_and_dtype():
    rng = np.random.default_rng(11)
    params = _flax_params(rng, 3, 4)
    ref = interop.from_flax(params)
    for wrapped in ({"params": params}, {"params": {"cell": params}}, {"cell": params}):
        layer = interop.from_flax(wrapped)
        assert all(np.array_equal(layer.params[k], ref.params[k]) for k in ref.params)
    f32 = {"i": {k: v.astype(np.float32) for k, v in params["i"].items()},
           "h": {"kernel": params["h"]["kernel"].astype(np.float32)}}
    assert interop.from_flax(f32, dtype=None).dtype == np.float32
    assert interop.from_flax(f32).dtype == np.float64
    assert interop.from_flax(params, activation=np.tanh).activation == "tanh"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTS)
def test_flax_round_trip_is_bitwise(dtype, act):
    layer = crnn.Layer(4, 3, activation=act, dtype=dtype, seed=12)
    p = interop.to_flax(layer)
    assert p["i"]["kernel"].shape == (4, 3) and p["i"]["bias"].shape == (3,)
    assert p["h"]["kernel"].shape == (3, 3) and set(p["h"]) == {"kernel"}
    back = interop.from_flax(p, activation=act, dtype=dtype)
    assert back.dtype == layer.dtype
    for k in layer.params:
        assert np.array_equal(back.params[k], layer.params[k]), k
    p["i"]["kernel"][...] = 0
    assert not np.array_equal(layer.params["W_xh"], 0)


def test_flax_bias_false_gets_zero_bias():
    layer = crnn.Layer(2, 3, bias=False, seed=13)
    p = interop.to_flax(layer)
    assert np.array_equal(p["i"]["bias"], np.zeros(3))
    back = interop.from_flax(p)
    assert back.bias and np.array_equal(back.params["b_h"], np.zeros(3))
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    assert np.array_equal(back.forward(x)[0], layer.forward(x)[0])


def test_flax_refusals():
    rng = np.random.default_rng(14)
    p = _flax_params(rng, 3, 4)
    with pytest.raises(ValueError, match=r"missing: \['h'\]"):
        interop.from_flax({"i": p["i"]})
    with pytest.raises(ValueError, match=r"unknown: \['o'\]"):
        interop.from_flax({**p, "o": {}})
    with pytest.raises(ValueError, match=r"params\[\"h\"\].*unknown: \['bias'\]"):
        interop.from_flax({"i": p["i"], "h": {**p["h"], "bias": np.zeros(4)}})
    with pytest.raises(ValueError, match=r"missing: \['bias'\]"):
        interop.from_flax({"i": {"kernel": p["i"]["kernel"]}, "h": p["h"]})
    with pytest.raises(ValueError, match=r"h\.kernel.*\(4, 4\).*\(3, 3\)"):
        interop.from_flax({"i": p["i"], "h": {"kernel": np.zeros((3, 3))}})
    with pytest.raises(ValueError, match=r"i\.bias.*\(4,\)"):
        interop.from_flax({"i": {"kernel": p["i"]["kernel"], "bias": np.zeros(5)}, "h": p["h"]})
    with pytest.raises(ValueError, match=r"i\.kernel"):
        interop.from_flax({"i": {"kernel": np.zeros(4), "bias": np.zeros(4)}, "h": p["h"]})
    with pytest.raises(ValueError, match="mapping"):
        interop.from_flax({"i": 3, "h": p["h"]})
    with pytest.raises(ValueError, match="activation"):
        interop.from_flax(p, activation="gelu")
    with pytest.raises(ValueError, match="output projection"):
        interop.to_flax(crnn.Layer(3, 4, 2))


# --------------------------------------------------------------------------
# PyTorch format as NumPy arrays (no torch)

def _torch_sd(rng, D, H, L, bidirectional, bias, dtype=np.float64):
    sd = {}
    for k in range(L):
        for suffix in ["", "_reverse"] if bidirectional else [""]:
            d_in = D if k == 0 else H * (2 if bidirectional else 1)
            sd[f"weight_ih_l{k}{suffix}"] = _rand(rng, H, d_in).astype(dtype)
            sd[f"weight_hh_l{k}{suffix}"] = _rand(rng, H, H).astype(dtype)
            if bias:
                sd[f"bias_ih_l{k}{suffix}"] = _rand(rng, H).astype(dtype)
                sd[f"bias_hh_l{k}{suffix}"] = _rand(rng, H).astype(dtype)
    return sd


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_from_torch_state_dict_numpy_formula(L, bidirectional, bias, act):
    rng = np.random.default_rng(15)
    T, B, D, H = 5, 4, 3, 4
    dirs = 2 if bidirectional else 1
    sd = _torch_sd(rng, D, H, L, bidirectional, bias)
    stack = interop.from_torch(sd, nonlinearity=act)
    assert isinstance(stack, crnn.Stack) and len(stack) == L and stack.batch_first is None
    assert all(isinstance(m, crnn.BiLayer if bidirectional else crnn.Layer) for m in stack)
    assert all(m.activation == act and m.bias == bias for m in stack)
    x = rng.standard_normal((T, B, D))
    h0 = _rand(rng, L * dirs, B, H)
    lengths = np.array([5, 1, 3, 0])
    y_ref, hn_ref = torch_rnn_numpy(sd, x, act, h0, lengths)
    state0 = [(h0[2 * k], h0[2 * k + 1]) if bidirectional else h0[k] for k in range(L)]
    y, states = stack.forward(x, state0, lengths)
    hn = np.stack([h for s in states for h in (s if bidirectional else [s])])
    assert _err(y, y_ref) <= TOL64
    assert _err(hn, hn_ref) <= TOL64


def test_from_torch_bias_summed_in_float64_and_dtype_inference():
    rng = np.random.default_rng(16)
    sd = _torch_sd(rng, 2, 3, 1, False, True, dtype=np.float32)
    stack = interop.from_torch(sd)
    assert stack.dtype == np.float32 and stack[0].activation == "tanh"
    b = sd["bias_ih_l0"].astype(np.float64) + sd["bias_hh_l0"].astype(np.float64)
    assert np.array_equal(stack.params["0.b_h"], b.astype(np.float32))
    assert interop.from_torch(sd, dtype=np.float64).dtype == np.float64
    sd64 = _torch_sd(rng, 2, 3, 1, False, True)
    assert interop.from_torch(sd64).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        interop.from_torch(sd, dtype=np.float16)


def test_from_torch_state_dict_refusals():
    rng = np.random.default_rng(17)
    sd = _torch_sd(rng, 3, 4, 2, True, True)
    with pytest.raises(ValueError, match=r"keys that torch.nn.RNN does not.*'foo'"):
        interop.from_torch({**sd, "foo": np.zeros(1)})
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch({**sd, "weight_hr_l0": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="prefix"):
        interop.from_torch({"rnn." + k: v for k, v in sd.items()})
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1_reverse'\]"):
        interop.from_torch({k: v for k, v in sd.items() if k != "bias_hh_l1_reverse"})
    with pytest.raises(ValueError, match=r"missing.*weight_ih_l1_reverse"):
        interop.from_torch({k: v for k, v in sd.items() if k != "weight_ih_l1_reverse"})
    no_l0 = {k: v for k, v in sd.items() if "_l0" not in k}
    with pytest.raises(ValueError, match=r"missing.*weight_ih_l0"):
        interop.from_torch(no_l0)
    with pytest.raises(ValueError, match=r"weight_ih_l1 must have shape .*\(4, 8\), got \(4, 4\)"):
        interop.from_torch({**sd, "weight_ih_l1": np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r"weight_hh_l0 must have shape \(hidden_size, hidden"):
        interop.from_torch({**sd, "weight_hh_l0": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"bias_ih_l0_reverse must have shape .*\(4,\)"):
        interop.from_torch({**sd, "bias_ih_l0_reverse": np.zeros(5)})
    with pytest.raises(ValueError, match=r"weight_hh_l1 must have shape .*\(4, 4\)"):
        interop.from_torch({**sd, "weight_hh_l1": np.zeros((5, 5))})
    with pytest.raises(ValueError, match="finite"):
        interop.from_torch({**sd, "bias_hh_l0": np.full(4, np.inf)})
    with pytest.raises(ValueError, match="empty"):
        interop.from_torch({})
    with pytest.raises(ValueError, match="nonlinearity"):
        interop.from_torch(sd, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="state_dict"):
        interop.from_torch([1, 2])


def test_to_torch_without_torch_returns_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    stack = crnn.Stack([crnn.BiLayer(3, 4, activation="relu", seed=1),
                        crnn.BiLayer(8, 4, activation="relu", seed=2)])
    sd, kwargs = interop.to_torch(stack)
    assert kwargs == dict(input_size=3, hidden_size=4, num_layers=2, nonlinearity="relu",
                          bias=True, batch_first=False, bidirectional=True)
    assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in sd.values())
    assert list(sd) == [f"{w}_l{k}{s}" for k in range(2) for s in ["", "_reverse"]
                        for w in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]]
    assert np.array_equal(sd["bias_ih_l1_reverse"], stack.params["1.bwd.b_h"])
    assert not sd["bias_hh_l0"].any()
    assert not np.shares_memory(sd["weight_ih_l0"], stack.params["0.fwd.W_xh"])
    back = interop.from_torch(sd, nonlinearity="relu")
    assert list(back.params) == list(stack.params)
    for k in stack.params:
        assert np.array_equal(back.params[k], stack.params[k]), k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_numpy_round_trip_layers(monkeypatch, dtype, bias):
    monkeypatch.setitem(sys.modules, "torch", None)
    stack = crnn.Stack([crnn.Layer(2, 5, bias=bias, dtype=dtype, seed=i) if i == 0 else
                        crnn.Layer(5, 5, bias=bias, dtype=dtype, seed=i) for i in range(3)])
    sd, kwargs = interop.to_torch(stack)
    assert kwargs["num_layers"] == 3 and kwargs["bias"] is bias and not kwargs["bidirectional"]
    back = interop.from_torch(sd)
    assert back.dtype == dtype
    for k in stack.params:
        assert np.array_equal(back.params[k], stack.params[k]), k


def test_to_torch_single_modules(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    sd, kw = interop.to_torch(crnn.Layer(3, 2, seed=0))
    assert kw["num_layers"] == 1 and set(sd) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                 "bias_hh_l0"}
    sd, kw = interop.to_torch(crnn.BiLayer(3, 2, bias=False, seed=0))
    assert kw["bidirectional"] and not kw["bias"] and len(sd) == 4


def test_to_torch_refusals():
    L = crnn.Layer
    cases = [
        (crnn.Stack([L(3, 4, 2)]), "output projection"),
        (crnn.BiLayer(3, 4, merge="sum"), "merge='concat' only"),
        (L(3, 4, activation="sigmoid"), "only 'tanh' and 'relu'"),
        (L(3, 4, activation="identity"), "only 'tanh' and 'relu'"),
        (crnn.Stack([L(3, 4), L(4, 5)]), "one hidden_size"),
        (crnn.Stack([L(3, 4), L(4, 4, activation="relu")]), "one nonlinearity"),
        (crnn.Stack([L(3, 4), L(4, 4, bias=False)]), "all layers or in none"),
        (L(3, 4, reverse=True), "reverse-only"),
        (crnn.Stack([crnn.BiLayer(3, 4), L(8, 4)]), "mixes Layer and BiLayer"),
    ]
    for module, message in cases:
        with pytest.raises(ValueError, match=message):
            interop.to_torch(module)
    with pytest.raises(TypeError, match="Stack, Layer or BiLayer"):
        interop.to_torch({"W_xh": np.zeros((2, 2))})


def test_from_torch_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    sd = _torch_sd(np.random.default_rng(18), 2, 3, 1, True, False)
    assert isinstance(interop.from_torch(sd)[0], crnn.BiLayer)


def test_import_does_not_import_torch(tmp_path):
    code = "import sys, crnn.interop; print('torch' in sys.modules)"
    # the crnn this test process imported, not whatever the working directory holds
    import os
    import pathlib

    import crnn

    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(crnn.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env)
    assert out.stdout.strip() == "False"
