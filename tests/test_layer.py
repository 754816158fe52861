"""crnn.Layer: the C core against the literal oracle (crnn.reference), against
finite differences (crnn.gradcheck), float32 against float64, input layouts,
and every error path."""
import itertools
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

import crnn
from crnn import reference
from crnn.gradcheck import gradcheck

ACTS = ["tanh", "relu", "sigmoid", "identity"]
# (output_size, output_activation): no projection, or a projection with each g
OUTS = [(None, "identity")] + [(3, g) for g in ["identity", "tanh", "relu", "sigmoid", "softmax"]]
SHAPES = [  # (T, B, D, H)
    (1, 1, 1, 1),
    (1, 3, 2, 4),
    (4, 1, 3, 2),
    (5, 3, 1, 4),
    (6, 4, 5, 1),
    (7, 3, 4, 5),
]


def _lengths(kind, T, B, rng):
    if kind is None:
        return None
    if kind == "full":
        return np.full(B, T)
    # "mixed": 0 and T among them
    lens = rng.integers(0, T + 1, size=B)
    lens[0] = 0
    if B > 1:
        lens[-1] = T
    return lens


def _case(T, B, D, H, *, tokens, lengths, h0, dstate, O, seed):
    """Random inputs for one configuration, padding filled with NaN."""
    rng = np.random.default_rng(seed)
    lens = _lengths(lengths, T, B, rng)
    if tokens:
        x = rng.integers(0, D, size=(T, B))
    else:
        x = rng.standard_normal((T, B, D))
    F = O or H
    dy = rng.standard_normal((T, B, F))
    if lens is not None:
        for b, n in enumerate(lens):
            dy[n:, b] = np.nan
            if not tokens:
                x[n:, b] = np.nan
    h0v = rng.standard_normal((B, H)) if h0 else None
    ds = rng.standard_normal((B, H)) if dstate else None
    return x, lens, h0v, dy, ds


def _close(got, ref, tol):
    """|got - ref| <= tol * max(1, |ref|), elementwise, with a readable failure."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert np.all(np.isfinite(got)), "non-finite values"
    assert err.max(initial=0) <= tol, f"max scaled error {err.max():.3e} > {tol:.0e}"


def _compare_with_reference(layer, x, lens, h0, dy, ds, tol):
    y, h_last = layer.forward(x, h0, lens)
    y_ref, h_ref = reference.forward(layer.config(), layer.params, x, h0, lens)
    _close(y, y_ref, tol)
    _close(h_last, h_ref, tol)
    layer.zero_grad()
    dx, dh0 = layer.backward(dy, ds)
    g_ref, dx_ref, dh0_ref = reference.gradients(layer.config(), layer.params, x, dy, h0, lens, ds)
    assert set(g_ref) == set(layer.grads)
    for name in g_ref:
        _close(layer.grads[name], g_ref[name], tol)
    if dx_ref is None:
        assert dx is None
    else:
        _close(dx, dx_ref, tol)
    _close(dh0, dh0_ref, tol)


# Every (f, g) pair with and without projection, bias, reverse; the remaining
# options (lengths, h0, dstate, tokens, shape) cycle through the cases so
# that each value meets many others.
CORE_CASES = [
    (f, out, bias, reverse) for f, out, bias, reverse in
    itertools.product(ACTS, OUTS, [True, False], [False, True])
]


@pytest.mark.parametrize("i,case", list(enumerate(CORE_CASES)))
def test_forward_and_gradients_match_reference(i, case):
    f, (O, g), bias, reverse = case
    T, B, D, H = SHAPES[i % len(SHAPES)]
    opts = dict(tokens=i % 3 == 1, lengths=[None, "mixed", "full"][i % 3 if i % 5 else 1],
                h0=i % 2 == 0, dstate=i % 4 < 2)
    layer = crnn.Layer(D, H, O, activation=f, output_activation=g, bias=bias,
                       reverse=reverse, seed=i)
    x, lens, h0, dy, ds = _case(T, B, D, H, O=O, seed=100 + i, **opts)
    _compare_with_reference(layer, x, lens, h0, dy, ds, 1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tokens,lengths,h0,dstate",
                         list(itertools.product([False, True], [None, "mixed", "full"],
                                                [False, True], [False, True])))
def test_options_product_match_reference(shape, tokens, lengths, h0, dstate):
    T, B, D, H = shape
    seed = hash((shape, tokens, lengths, h0, dstate)) % 2**32
    layer = crnn.Layer(D, H, 2, activation="tanh", output_activation="sigmoid",
                       reverse=bool(seed % 2), seed=seed)
    x, lens, h0v, dy, ds = _case(T, B, D, H, tokens=tokens, lengths=lengths, h0=h0,
                                 dstate=dstate, O=2, seed=seed)
    _compare_with_reference(layer, x, lens, h0v, dy, ds, 1e-12)


def test_larger_shape_matches_reference():
    layer = crnn.Layer(9, 16, 5, activation="tanh", output_activation="softmax", seed=3,
                       reverse=True)
    x, lens, h0, dy, ds = _case(12, 6, 9, 16, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=5, seed=4)
    _compare_with_reference(layer, x, lens, h0, dy, ds, 1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 40, 6), (2, 1, 9, 3), (3, 2, 30, 5), (2, 3, 24, 4),
                                   (2, 1, 30, 17), (1, 8, 20, 19), (3, 4, 17, 24)])
@pytest.mark.parametrize("lengths", [None, "mixed"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_tokens_from_a_large_vocabulary_match_reference(shape, lengths, dtype, tol):
    """Fewer than D/4 tokens: the core reads W_xh's columns (and adds into
    dW_xh's) in place instead of through its transposed table (crnn.h); at
    4 T*B >= D (the fourth, sixth and seventh shapes) it uses the table,
    built and added back in transposed register blocks where the CPU has
    AVX2."""
    T, B, D, H = shape
    layer = crnn.Layer(D, H, 3, activation="tanh", seed=D, dtype=dtype)
    ref = crnn.Layer(D, H, 3, activation="tanh", seed=D)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=True, lengths=lengths, h0=True,
                                dstate=True, O=3, seed=T * B)
    if dtype == np.float64:
        _compare_with_reference(layer, x, lens, h0, dy, ds, tol)
    else:  # against float64 crnn, itself checked against the reference above
        y32, h32 = layer.forward(x, h0, lens)
        y64, h64 = ref.forward(x, h0, lens)
        _close(y32, y64, tol)
        _close(h32, h64, tol)
        layer.backward(dy.astype(np.float32), ds.astype(np.float32))
        ref.backward(dy, ds)
        for name in ref.grads:
            _close(layer.grads[name], ref.grads[name], tol)
    # a second backward adds the same again onto gradients that are not 0
    g1 = {k: v.copy() for k, v in layer.grads.items()}
    layer.backward(dy.astype(dtype), ds.astype(dtype))
    for name in g1:
        _close(layer.grads[name], 2 * g1[name], tol)


GRAD_CASES = [
    (f, out, bias, reverse, tokens, lengths)
    for (f, out), bias, reverse, tokens, lengths in zip(
        itertools.product(ACTS, OUTS),
        itertools.cycle([True, False, True]),
        itertools.cycle([False, True]),
        itertools.cycle([False, False, True]),
        itertools.cycle([None, "mixed", "full", "mixed"]))
]


@pytest.mark.parametrize("f,out,bias,reverse,tokens,lengths", GRAD_CASES)
def test_gradients_match_finite_differences(f, out, bias, reverse, tokens, lengths):
    O, g = out
    T, B, D, H = 5, 3, 3, 4
    seed = ACTS.index(f) * 10 + OUTS.index(out)
    layer = crnn.Layer(D, H, O, activation=f, output_activation=g, bias=bias,
                       reverse=reverse, seed=seed)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=tokens, lengths=lengths, h0=True,
                                dstate=True, O=O, seed=seed)
    if f == "relu":  # keep pre-activations away from the kink, where FD is meaningless
        layer.params["W_hh"][...] *= 0.3
    errors = gradcheck(layer, x, h0, lens, dy=dy, dstate=ds)
    expected = set(layer.params) | {"h0"} | (set() if tokens else {"x"})
    assert set(errors) == expected
    bad = {k: v for k, v in errors.items() if not v <= 1e-7}
    assert not bad, f"relative errors above 1e-7: {bad}"


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    layer = crnn.Layer(2, 3, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    original = crnn.Layer.backward

    def broken(self, dy, dstate=None, **kw):
        out = original(self, dy, dstate, **kw)
        self.grads["W_hh"][0, 0] += 1e-3
        return out

    monkeypatch.setattr(crnn.Layer, "backward", broken)
    errors = gradcheck(layer, x)
    assert errors["W_hh"] > 1e-5
    assert errors["W_xh"] < 1e-7


@pytest.mark.parametrize("f,out", list(itertools.product(ACTS, OUTS)))
@pytest.mark.parametrize("reverse", [False, True])
def test_float32_matches_float64(f, out, reverse):
    O, g = out
    T, B, D, H = 6, 3, 4, 5
    kw = dict(activation=f, output_activation=g, reverse=reverse, seed=11)
    l64 = crnn.Layer(D, H, O, dtype=np.float64, **kw)
    l32 = crnn.Layer(D, H, O, dtype=np.float32, **kw)
    for k in l64.params:  # the same values in both precisions
        l64.params[k][...] = l32.params[k]
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=O, seed=12)
    y64, h64 = l64.forward(x, h0, lens)
    y32, h32 = l32.forward(x, h0, lens)
    assert y32.dtype == np.float32 and h32.dtype == np.float32
    _close(y32, y64, 1e-4)
    _close(h32, h64, 1e-4)
    dx64, dh64 = l64.backward(dy, ds)
    dx32, dh32 = l32.backward(dy, ds)
    assert dx32.dtype == np.float32 and dh32.dtype == np.float32
    _close(dx32, dx64, 1e-4)
    _close(dh32, dh64, 1e-4)
    for k in l64.grads:
        assert l32.grads[k].dtype == np.float32
        _close(l32.grads[k], l64.grads[k], 1e-4)


def _core_run(layer, x, h0, lens, dy, ds, *, packed):
    """Forward + backward of a Layer without projection through crnn._core,
    packed=False putting every time-loop product on the BLAS; NaN padding
    (from _case) zeroed as Layer would. Returns hs, h_last, dx, dh0, grads."""
    from crnn import _core

    T, B = x.shape[:2]
    x, dy, h0, ds = (None if a is None else np.nan_to_num(a).astype(layer.dtype)
                     for a in (x, dy, h0, ds))
    sizes = layer._sizes(T, B)
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    hs, _, h_last = _core.elman_forward(x, None, h0, lens, layer.params, packed=packed,
                                        **sizes)
    dx, dh0 = _core.elman_backward(dy, ds, hs, None, x, None, h0, lens, layer.params, grads,
                                   True, packed=packed, **sizes)
    return [hs, h_last, dx, dh0, *grads.values()]


def _run(layer, x, h0, lens, dy, ds):
    y, h = layer.forward(x, h0, lens)
    layer.zero_grad()
    dx, dh0 = layer.backward(dy, ds)
    return [np.array(a) for a in (y, h, dx, dh0, *layer.grads.values())]


def _placed(a, addr_mod):
    """A C-contiguous copy of a whose data lies at addr_mod modulo 4096."""
    buf = np.empty(a.size + 8192 // a.itemsize, a.dtype)
    k = ((addr_mod - buf.ctypes.data) % 4096) // a.itemsize
    out = buf[k:k + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 4096 == addr_mod % 4096
    return out


@pytest.mark.parametrize("dtype,H", [(np.float64, 300), (np.float32, 520)])
@pytest.mark.parametrize("out", [False, True])
def test_row_copies_at_a_short_distance_give_the_same_bits(dtype, H, out):
    """The core copies each valid row of dy into its workspace (da without
    an output layer, dz with one). Rows of 2048 bytes or more that land 1
    to 63 bytes past their source modulo 4 KiB are copied in pieces
    (copy_row in elman.c: glibc's rep movsb is slow there); here rows of
    2400 and 2560 bytes (float64, H = 300, O = 320) and 2080 and 2160
    (float32, H = 520, O = 540), so pieces that end short of 1 KiB, at
    distances on both sides of that rule."""
    O = H + 20 if out else None
    T, B, D = 4, 3, 5
    layer = crnn.Layer(D, H, O, dtype=dtype, seed=3)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=O, seed=4)
    dy = dy.astype(dtype)
    _run(layer, x, h0, lens, dy, ds)  # makes the workspaces
    ws = layer._work["dz" if O else "da"]
    got = {}
    for d in (0, 8, 16, 48, 64, 256):
        placed = _placed(dy, ws.ctypes.data - d)
        ws[...] = np.nan  # nothing left over from the run before
        got[d] = _run(layer, x, h0, lens, placed, ds)
        assert layer._work["dz" if O else "da"] is ws  # the same workspace each time
    for d in got:
        for a, b in zip(got[d], got[256]):
            np.testing.assert_array_equal(a, b)
    # and the right values, from the literal equations
    tol = 1e-12 if dtype == np.float64 else 1e-4
    _compare_with_reference(layer, x, lens, h0, _placed(dy, ws.ctypes.data - 16), ds, tol)


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "int", "float32_input"])
def test_input_layouts_give_the_same_results(layout):
    T, B, D, H = 5, 3, 4, 6
    layer = crnn.Layer(D, H, 2, output_activation="tanh", seed=5)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=2, seed=6)
    if layout == "int":
        x = np.round(np.nan_to_num(x) * 3)
    if layout == "float32_input":
        x = np.nan_to_num(x).astype(np.float32)
    base = _run(layer, x.copy(), h0.copy(), lens.copy(), dy.copy(), ds.copy())

    def convert(a):
        if layout == "fortran":
            return np.asfortranarray(a)
        if layout == "strided":  # every array a non-contiguous view
            big = np.zeros(a.shape + (2,), a.dtype)
            big[..., 0] = a
            return big[..., 0]
        if layout == "readonly":
            a = a.copy()
            a.flags.writeable = False
            return a
        if layout == "int" and a is x:
            return a.astype(np.int32)
        return a

    got = _run(layer, convert(x), convert(h0), convert(lens), convert(dy), convert(ds))
    for a, b in zip(got, base):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_never_modified_and_outputs_never_reused():
    T, B, D, H = 4, 3, 2, 3
    layer = crnn.Layer(D, H, seed=0)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=1)
    copies = [a.copy() for a in (x, lens, h0, dy, ds)]
    y1, h1 = layer.forward(x, h0, lens)
    dx1, dh1 = layer.backward(dy, ds)
    kept = [a.copy() for a in (y1, h1, dx1, dh1)]
    for a, c in zip((x, lens, h0, dy, ds), copies):
        np.testing.assert_array_equal(a, c)  # NaN padding included
    layer.forward(x * 2, h0, lens)
    layer.backward(dy, ds)
    for a, c in zip((y1, h1, dx1, dh1), kept):
        np.testing.assert_array_equal(a, c)


def test_padding_and_zero_lengths():
    T, B, D, H = 5, 4, 3, 2
    for reverse in (False, True):
        layer = crnn.Layer(D, H, 3, output_activation="sigmoid", reverse=reverse, seed=2)
        rng = np.random.default_rng(3)
        x = rng.standard_normal((T, B, D))
        h0 = rng.standard_normal((B, H))
        lens = np.array([0, 2, 5, 1])
        y, h = layer.forward(x, h0, lens)
        for b, n in enumerate(lens):
            assert np.all(y[n:, b] == 0)
        np.testing.assert_array_equal(h[0], h0[0])  # len 0: h_last = h0
        dy = np.ones((T, B, 3))
        ds = np.ones((B, H))
        dx, dh0 = layer.backward(dy, ds)
        np.testing.assert_array_equal(dh0[0], ds[0])  # len 0: dstate goes to dh0
        for b, n in enumerate(lens):
            assert np.all(dx[n:, b] == 0)
        # each sequence alone, cut to its valid prefix, gives the same numbers
        for b, n in enumerate(lens):
            if n == 0:
                continue
            yb, hb = layer.forward(x[:n, b:b + 1], h0[b:b + 1])
            np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=0, atol=1e-15)
            np.testing.assert_allclose(h[b], hb[0], rtol=0, atol=1e-15)


def test_backward_accumulates_and_zero_grad_clears():
    layer = crnn.Layer(3, 4, 2, seed=0)
    x, lens, h0, dy, ds = _case(5, 2, 3, 4, tokens=False, lengths=None, h0=True,
                                dstate=True, O=2, seed=1)
    layer.forward(x, h0, lens)
    layer.backward(dy, ds)
    once = {k: g.copy() for k, g in layer.grads.items()}
    layer.backward(dy, ds)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-15, atol=0)
    layer.zero_grad()
    assert all(np.all(g == 0) for g in layer.grads.values())


def test_params_are_live_storage():
    layer = crnn.Layer(2, 3, seed=0)
    x = np.ones((2, 1, 2))
    layer.params["W_hh"][...] = 0
    layer.params["W_xh"][...] = 0
    layer.params["b_h"][...] = 0.5
    y, _ = layer.forward(x)
    np.testing.assert_allclose(y, np.tanh(0.5), rtol=0, atol=1e-16)
    g = layer.grads["W_hh"]
    layer.backward(np.ones_like(y))
    assert layer.grads["W_hh"] is g and np.any(g != 0)


def test_dtype_is_kept_and_input_converted():
    layer = crnn.Layer(2, 3, dtype=np.float32, seed=0)
    assert all(p.dtype == np.float32 for p in layer.params.values())
    y, h = layer.forward(np.ones((2, 1, 2), dtype=bool))
    assert y.dtype == np.float32 and h.dtype == np.float32
    dx, dh0 = layer.backward(np.ones((2, 1, 3)))
    assert dx.dtype == np.float32 and dh0.dtype == np.float32
    assert all(p.dtype == np.float32 for p in layer.params.values())
    assert crnn.Layer(2, 3).dtype == np.float64


def test_init_modes_and_seed():
    H = 16
    a = crnn.Layer(3, H, 4, seed=7)
    b = crnn.Layer(3, H, 4, seed=7)
    c = crnn.Layer(3, H, 4, seed=8)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert np.all(np.abs(a.params[k]) < 1 / np.sqrt(H))
    assert not np.array_equal(a.params["W_hh"], c.params["W_hh"])
    o = crnn.Layer(3, H, init="orthogonal", seed=1)
    np.testing.assert_allclose(o.params["W_hh"] @ o.params["W_hh"].T, np.eye(H), atol=1e-12)
    i = crnn.Layer(3, H, activation="relu", init="identity", seed=1)
    np.testing.assert_array_equal(i.params["W_hh"], np.eye(H))
    np.testing.assert_array_equal(i.params["b_h"], np.zeros(H))
    assert set(crnn.Layer(3, H, 2, bias=False).params) == {"W_xh", "W_hh", "W_hy"}


def test_attributes_and_repr():
    layer = crnn.Layer(3, 5, 2, output_activation="softmax", reverse=True, bias=False,
                       dtype=np.float32)
    assert (layer.input_size, layer.hidden_size, layer.output_size, layer.out_features) == (3, 5, 2, 2)
    assert layer.activation == "tanh" and layer.dtype == np.float32
    r = repr(layer)
    for part in ["input_size=3", "hidden_size=5", "output_size=2", "softmax", "reverse=True",
                 "bias=False", "float32"]:
        assert part in r
    assert crnn.Layer(3, 5).out_features == 5


def test_softmax_output_never_underflows_to_zero():
    layer = crnn.Layer(1, 1, 3, output_activation="softmax", bias=False, seed=0)
    layer.params["W_xh"][...] = 1
    layer.params["W_hh"][...] = 0
    layer.params["W_hy"][...] = [[1000.0], [0.0], [-1000.0]]
    y, _ = layer.forward(np.full((1, 1, 1), 20.0))  # h = tanh(20) ~ 1
    assert y[0, 0, 2] == np.finfo(np.float64).tiny
    assert y[0, 0, 0] == 1.0


# ----------------------------------------------------------------- errors

def _layer():
    return crnn.Layer(3, 4, seed=0)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=3, hidden_size=0), ValueError, "hidden_size"),
    (dict(input_size=3, hidden_size=2.5), TypeError, "hidden_size"),
    (dict(input_size=3, hidden_size=4, output_size=0), ValueError, "output_size"),
    (dict(input_size=3, hidden_size=4, activation="softmax"), ValueError, "activation"),
    (dict(input_size=3, hidden_size=4, activation="gelu"), ValueError, "activation"),
    (dict(input_size=3, hidden_size=4, output_size=2, output_activation="swish"), ValueError, "output_activation"),
    (dict(input_size=3, hidden_size=4, output_activation="softmax"), ValueError, "output_size"),
    (dict(input_size=3, hidden_size=4, init="xavier"), ValueError, "init"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, dtype=np.int64), TypeError, "dtype"),
])
def test_bad_constructor_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        crnn.Layer(**kwargs)


NAN_X = np.ones((2, 1, 3))
NAN_X[1, 0, 1] = np.nan


@pytest.mark.parametrize("x,kw,exc,words", [
    (np.ones((2, 3)).astype(float), {}, TypeError, "token"),
    (np.ones((2,)), {}, ValueError, "3-D"),
    (np.ones((2, 1, 3, 1)), {}, ValueError, "3-D"),
    (np.ones((2, 1, 4)), {}, ValueError, "input_size"),
    (np.ones((0, 1, 3)), {}, ValueError, "T >= 1"),
    (np.ones((2, 0, 3)), {}, ValueError, "B >= 1"),
    (np.ones((2, 1, 3), dtype=complex), {}, TypeError, "real"),
    (np.array([[0], [3]]), {}, ValueError, "token ids"),
    (np.array([[0], [-1]]), {}, ValueError, "token ids"),
    (np.array([[0], [2**63]], dtype=np.uint64), {}, ValueError, "max 9223372036854775808"),
    (np.array([[False], [True]]), {}, TypeError, "token"),
    (NAN_X, {}, ValueError, "finite"),
    (np.full((2, 1, 3), np.inf), {}, ValueError, "finite"),
    (np.ones((2, 2, 3)), dict(h0=np.ones((1, 4))), ValueError, "h0"),
    (np.ones((2, 2, 3)), dict(h0=np.ones((2, 5))), ValueError, "h0"),
    (np.ones((2, 1, 3)), dict(h0=np.full((1, 4), np.nan)), ValueError, "h0"),
    (np.ones((2, 2, 3)), dict(lengths=[1]), ValueError, "lengths"),
    (np.ones((2, 2, 3)), dict(lengths=[1, 3]), ValueError, "lengths"),
    (np.ones((2, 2, 3)), dict(lengths=[-1, 1]), ValueError, "lengths"),
    (np.ones((2, 2, 3)), dict(lengths=[1.0, 2.0]), TypeError, "lengths"),
    (np.ones((2, 2, 3)), dict(lengths=np.array([True, False])), TypeError, "lengths"),
    (np.ones((2, 2, 3)), dict(lengths=np.array([1, 2**63], dtype=np.uint64)), ValueError,
     r"lengths must lie in \[0, T\] = \[0, 2\], got min 1, max 9223372036854775808"),
])
def test_bad_forward_inputs(x, kw, exc, words):
    layer = _layer()
    with pytest.raises(exc, match=words):
        layer.forward(x, **kw)


def test_nan_in_padding_is_allowed_but_not_in_valid_steps():
    layer = _layer()
    x = np.ones((3, 2, 3))
    x[2, 0] = np.nan
    layer.forward(x, lengths=[2, 3])  # padded: fine
    with pytest.raises(ValueError, match="x must be finite"):
        layer.forward(x, lengths=[3, 3])


def test_bad_backward_inputs():
    layer = _layer()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 1, 4)))
    y, _ = layer.forward(np.ones((2, 1, 3)), lengths=[1])
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((2, 1, 5)))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((3, 1, 4)))
    bad = np.ones((2, 1, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="dy must be finite"):
        layer.backward(bad)
    bad[0, 0, 0] = 1
    bad[1, 0, 0] = np.nan  # padded step: never read
    layer.backward(bad)
    with pytest.raises(ValueError, match="dstate"):
        layer.backward(np.ones((2, 1, 4)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="dstate"):
        layer.backward(np.ones((2, 1, 4)), np.full((1, 4), np.inf))
    with pytest.raises(TypeError, match="dy"):
        layer.backward(np.ones((2, 1, 4), dtype=complex))


def test_failed_forward_leaves_nothing_for_backward():
    layer = _layer()
    layer.forward(np.ones((2, 1, 3)))
    with pytest.raises(ValueError):
        layer.forward(np.ones((2, 1, 5)))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 1, 4)))


def test_replaced_parameter_of_wrong_shape_is_refused():
    layer = _layer()
    layer.params["W_hh"] = np.ones((3, 3))
    with pytest.raises(ValueError, match="W_hh"):
        layer.forward(np.ones((2, 1, 3)))
    layer.params["W_hh"] = np.ones((4, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="W_hh"):
        layer.forward(np.ones((2, 1, 3)))


def test_binding_refuses_bad_buffers():
    from crnn import _core

    layer = _layer()
    sizes = layer._sizes(2, 1)
    x = np.ones((2, 1, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        _core.elman_forward(np.ones((2, 1, 2)), None, None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.elman_forward(np.ones((2, 1, 6))[..., ::2], None, None, None, layer.params, **sizes)
    with pytest.raises(TypeError, match="dtype"):
        _core.elman_forward(x.astype(np.float32), None, None, None, layer.params, **sizes)
    # the dtype is checked by identity first, then by equality: a byte-swapped
    # float64 (the same type number) is refused, an equal descriptor that is
    # another object (one with metadata) is accepted
    with pytest.raises(TypeError, match="x must have dtype float64"):
        _core.elman_forward(x.astype(">f8"), None, None, None, layer.params, **sizes)
    with pytest.raises(TypeError, match="lengths must have dtype int64"):
        _core.elman_forward(x, None, None, np.array([2], ">i8"), layer.params, **sizes)
    other = np.dtype(np.float64, metadata={"note": 1})
    assert other is not np.dtype(np.float64) and other == np.float64
    y_meta = _core.elman_forward(x.view(other), None, None, None, layer.params, **sizes)[0]
    np.testing.assert_array_equal(y_meta, _core.elman_forward(x, None, None, None, layer.params,
                                                              **sizes)[0])
    with pytest.raises(TypeError, match="x must be a numpy array, got list"):
        _core.elman_forward(x.tolist(), None, None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 1, 3\), got \(2, 1\)"):
        _core.elman_forward(x[..., 0], None, None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 1, 3\), got \(2, 1, 3, 1\)"):
        _core.elman_forward(x[..., None], None, None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match="token id"):
        _core.elman_forward(None, np.full((2, 1), 7, np.int64), None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match="length"):
        _core.elman_forward(x, None, None, np.array([5], np.int64), layer.params, **sizes)
    with pytest.raises(ValueError, match="exactly one"):
        _core.elman_forward(None, None, None, None, layer.params, **sizes)
    with pytest.raises(ValueError, match="activation"):
        _core.elman_forward(x, None, None, None, layer.params, **dict(sizes, activation="softmax"))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_core_activations_match_numpy(act, dtype):
    from crnn import _core

    v = np.concatenate([np.linspace(-30, 30, 2001), [0.0, -0.0, 1e-300, -1e-300, 1e-8,
                                                      -1e-8, 700, -700, np.inf, -np.inf]])
    v = v.astype(dtype)
    ref = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "identity": lambda a: a,
           "sigmoid": lambda a: 1 / (1 + np.exp(-a.astype(np.float64)))}[act](v)
    with np.errstate(over="ignore"):
        got = _core.activate(v, act)
    assert got.dtype == dtype
    tol = 4 * np.finfo(dtype).eps
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf
        err = np.where(got == ref, 0.0, np.abs(got - ref))
    assert np.all(err <= tol * np.maximum(np.abs(ref), np.finfo(dtype).tiny)), act


def _with_policy(run, threads, *mt):
    """run() with `threads` BLAS threads and crnn._core.mt_flops(*mt) in force."""
    from threadpoolctl import threadpool_limits

    from crnn import _core

    old = _core.mt_flops(*mt)
    try:
        with threadpool_limits(threads):
            return run()
    finally:
        _core.mt_flops(*old)


def test_blas_thread_policy_does_not_change_results():
    """Products run on 1 or on the BLAS's thread count depending on their size
    (crnn._core.mt_flops); at these sizes the numbers must not depend on that
    choice. (Larger products shared out by the BLAS's own threads can come
    out in other last bits -- README, Threads; crnn's own two threads keep
    them: test_own_two_threads_give_the_same_bits.)"""
    from threadpoolctl import threadpool_limits

    from crnn import _core

    layer = crnn.Layer(40, 48, 8, seed=1)
    x, lens, h0, dy, ds = _case(30, 24, 40, 48, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=8, seed=2)
    base = _run(layer, x, h0, lens, dy, ds)
    # every whole-sequence product may use every thread (at two, crnn's own:
    # test_own_two_threads_give_the_same_bits); the time loop's stay on one
    # (on the packed W_hh where the CPU allows: a different summation order
    # than the BLAS's, see test_packed_time_loop_*)
    got = _with_policy(lambda: _run(layer, x, h0, lens, dy, ds), 2, 0)
    for a, b in zip(got, base):
        np.testing.assert_array_equal(a, b)
    # the time loop's products on the BLAS (packed=False), on 1 or 2 threads
    plain = crnn.Layer(40, 48, seed=1)
    x, lens, h0, dy, ds = _case(30, 24, 40, 48, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=3)
    with threadpool_limits(1):
        base = _core_run(plain, x, h0, lens, dy, ds, packed=False)
    # every product may use every thread
    got = _with_policy(lambda: _core_run(plain, x, h0, lens, dy, ds, packed=False), 2, 0, 0)
    old = _core.mt_flops()
    for a, b in zip(got, base):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="mt_flops"):
        _core.mt_flops(-1)
    with pytest.raises(ValueError, match="mt_flops step"):
        _core.mt_flops(step=float("nan"))
    assert _core.mt_flops() == old


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens,reverse", [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("B", [13, 3, 1])
@pytest.mark.parametrize("D", [7, 20])
@pytest.mark.parametrize("O", [6, None])
def test_own_two_threads_give_the_same_bits(dtype, tokens, reverse, B, D, O):
    """At two threads crnn runs a call on two threads of its own
    (crnn.mt_flops par): with B >= 4 each time loop as two halves of the
    batch, each large product as two halves of its rows (or, with
    D = H/2, a chunk's dW_hh beside its dW_xh and dx); with B < 4 the
    backward computes each chunk's gradients beside the next chunk's time
    loop. Every sequence and every output element is then computed as on
    one thread: the same bits. With an output layer (O = 6) each chunk's
    dL/dh_t comes from dz W_hy over the whole batch, without one (O = None)
    each half of a split loop copies its rows of dy itself, and adds its
    rows of dstate and of the carry from the chunk after it."""
    # B = 13: T*B >= 48 (2 * CRNN_SPLIT_ALIGN), the products over all rows
    # split; B < 4: the backward's chunk (crnn._core.chunk) is T, so two
    # pipelined halves. D = 20 > 7: OpenBLAS's sgemm sums K >= 8 in tiles
    # whose columns a cut at 64 rows did not respect (0.4.2 and before)
    T, H = 30, 40
    layer = crnn.Layer(D, H, O, reverse=reverse,
                       output_activation="softmax" if O else "identity", dtype=dtype, seed=11)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=tokens, lengths="mixed", h0=True,
                                dstate=True, O=O, seed=12)
    # par = 0 on one thread too: with B < 4 it makes the chunks pipelined ones
    base = _with_policy(lambda: _run(layer, x, h0, lens, dy, ds), 1, None, None, 0)
    # split every loop and every product
    got = _with_policy(lambda: _run(layer, x, h0, lens, dy, ds), 2, 0, None, 0)
    for a, b in zip(got, base):
        assert a.dtype in (dtype, object)  # object: dx = None for tokens
        np.testing.assert_array_equal(a, b)
    if sys.platform.startswith("linux"):  # the worker names itself
        names = {Path(f"/proc/self/task/{t}/comm").read_text().strip()
                 for t in os.listdir("/proc/self/task")}
        assert "crnn-par" in names


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,D,H,O", [(30, 13, 20, 40, 6), (4, 100, 33, 70, 0),
                                       (3, 130, 9, 24, 400), (2, 200, 10, 400, 0),
                                       (6, 20, 48, 48, 0), (4, 100, 1, 70, 1),
                                       (4, 100, 50, 1, 60), (4, 30, 313, 25, 0),
                                       (2, 40, 96, 96, 0)])
@pytest.mark.parametrize("h0", [True, False])
def test_split_products_give_the_same_bits(dtype, T, B, D, H, O, h0):
    """On crnn's own two threads every product of 48 rows or more (of
    the row-major result) runs as two halves of its rows: the input and
    output projections, dx, and dW_hy, dW_hh with O or H >= 48; a chunk's
    dW_hh beside its dx, with dW_xh's rows shared out (D = H = 48: half).
    The cut falls between the BLAS's tiles, so each element is summed as in
    the whole product: the one-thread bits, for K below and above 8. A
    product with one column goes to gemv, which is not split (D = 1: dx and
    dW_xh; O = 1: y; H = 1: hs and dW_hy), and no share of dW_xh is a
    single row (D = 313, H = 25 would cut its rows 24 + 1): gemv sums a row in
    an order that depends on the rows around it. From h0 = None the first
    step adds nothing to dW_hh, and dW_xh's rows are cut where that evens
    the two sides (T = 2, D = H = 96: 72 + 24 rows, against 48 + 48 from an
    h0)."""
    layer = crnn.Layer(D, H, O or None, dtype=dtype, seed=3)
    x, lens, h0v, dy, ds = _case(T, B, D, H, tokens=False, lengths=None, h0=h0,
                                 dstate=True, O=O or None, seed=4)
    run = lambda: _run(layer, x, h0v, lens, dy, ds)  # noqa: E731
    base = _with_policy(run, 1, None, None, float("inf"))
    got = _with_policy(run, 2, 0, float("inf"), float("1e300"))  # products split, loops not
    for a, b in zip(got, base):
        np.testing.assert_array_equal(a, b)


def _own_case():
    """A Layer and data whose calls split on crnn's own two threads."""
    layer = crnn.Layer(24, 64, seed=21)
    x, lens, h0, dy, ds = _case(20, 16, 24, 64, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=22)
    return lambda: _run(layer, x, h0, lens, dy, ds)


def test_own_threads_from_two_python_threads_at_once():
    """Two calls at once on crnn's own threads: one has the worker, the other
    runs its halves in turn (crnn_par_run2); both give the one-thread bits."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        base = _own_case()()

    def many():  # a Layer of its own: a Layer is not shared between threads
        run = _own_case()
        return [run() for _ in range(20)]

    with ThreadPoolExecutor(2) as pool:
        results = _with_policy(lambda: [f.result() for f in [pool.submit(many) for _ in "ab"]],
                               2, 0, None, 0)
    for got in (r for rs in results for r in rs):
        for a, b in zip(got, base):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_own_threads_after_fork():
    """A process forked after crnn's worker thread started has no worker; its
    first call on two threads starts its own and gives the same bits."""
    import time

    from threadpoolctl import threadpool_limits

    run = _own_case()
    with threadpool_limits(1):
        base = run()
    first = _with_policy(run, 2, 0, None, 0)  # the parent's worker runs
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only with the same bits
        ok = False
        try:
            got = _with_policy(run, 2, 0, None, 0)
            ok = all(np.array_equal(a, b) for a, b in zip(got, base))
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish its call within 60 s")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    for a, b in zip(first, base):
        np.testing.assert_array_equal(a, b)


def test_own_threads_can_be_turned_off():
    from crnn import _core

    old = _core.mt_flops()
    assert len(old) == 3 and old[2] == 2 ** 22
    try:
        assert _core.mt_flops(par=float("inf")) == old
        assert _core.mt_flops()[2] == float("inf")
    finally:
        _core.mt_flops(*old)
    with pytest.raises(ValueError, match="mt_flops par"):
        _core.mt_flops(par=-1.0)
    assert _core.mt_flops() == old


def test_thread_control_found_scipys_openblas():
    from crnn import _core

    import scipy

    config = scipy.show_config(mode="dicts")
    if "openblas" in str(config.get("Build Dependencies", {}).get("blas", {})).lower():
        assert _core.thread_control()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_reads_only_valid_steps(dtype):
    from crnn import _core

    a = np.ones((4, 3, 2), dtype)
    lens = np.array([4, 2, 0], np.int64)
    assert _core.all_finite(a) and _core.all_finite(a, lens)
    for bad in (np.nan, np.inf, -np.inf):
        a[2, 1, 1] = bad  # a padded step of sequence 1
        assert not _core.all_finite(a)
        assert _core.all_finite(a, lens)
        a[1, 1, 0] = bad  # a valid one
        assert not _core.all_finite(a, lens)
        a[...] = 1
    assert _core.all_finite(np.ones((0, 3), dtype))
    with pytest.raises(TypeError):
        _core.all_finite(np.ones((4, 3)).T)
    with pytest.raises(TypeError):
        _core.all_finite(np.ones(3, np.int64))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 17, 1000])
def test_in_range_is_min_and_max_against_d(n):
    """crnn_ids_in_range (an OR of unsigned differences, vectorised) against
    NumPy's min and max: one bad value anywhere, at either end of the range,
    and the int64 extremes."""
    from crnn import _core

    rng = np.random.default_rng(n)
    good = rng.integers(0, 50, size=n)
    top = int(good.max())
    assert _core.in_range(good, top + 1)
    assert not _core.in_range(good, top)                    # the largest value is D
    assert _core.in_range(good, 2**63 - 1)
    assert not _core.in_range(good, 0) and not _core.in_range(good, -5)
    for pos in sorted({0, n // 2, n - 1}):
        for bad, D in ((-1, 50), (50, 50), (-2**63, 50), (2**63 - 1, 50), (2**63 - 1, 2**63 - 1),
                       (-2**63, 2**63 - 1), (7, 7)):
            a = good.copy()
            a[pos] = bad
            want = bool(a.min() >= 0 and a.max() < D)
            assert _core.in_range(a, D) == want, (pos, bad, D)
    assert _core.in_range(good.reshape(1, n), top + 1)
    for bad in (np.ones(3, np.int32), np.arange(6).reshape(2, 3).T, np.zeros(0, np.int64), [1, 2]):
        with pytest.raises(TypeError):
            _core.in_range(bad, 10)


# Sizes around the C core's block of 1024 values and its vector widths.
FINITE_SIZES = [1, 7, 8, 15, 255, 256, 257, 1023, 1024, 1025, 2049, 4103]


def _nonfinite_patterns(dtype):
    """NaN, +inf, -inf and a few other NaN bit patterns (signalling, negative,
    all mantissa bits set) of dtype."""
    u = np.uint32 if dtype == np.float32 else np.uint64
    bits = 32 if dtype == np.float32 else 64
    m = np.finfo(dtype).nmant
    exp = ((1 << (bits - 1 - m)) - 1) << m
    sign = 1 << (bits - 1)
    others = np.array([exp | 1, exp | (1 << (m - 1)) | sign, exp | ((1 << m) - 1)], u)
    return [dtype(np.nan), dtype(np.inf), dtype(-np.inf), *others.view(dtype)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", FINITE_SIZES)
def test_all_finite_finds_a_nonfinite_value_anywhere(dtype, n):
    from crnn import _core

    a = np.linspace(-3, 3, n).astype(dtype)
    assert _core.all_finite(a)
    for bad in _nonfinite_patterns(dtype):
        for i in sorted({0, n // 2, n - 1}):
            a[i] = bad
            assert not np.isfinite(a).all()
            assert not _core.all_finite(a), (n, i, bad)
            assert not _core.all_finite(a.reshape(1, n, 1), np.ones(n, np.int64))
            a[i] = 1
    assert _core.all_finite(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", FINITE_SIZES)
def test_all_finite_accepts_every_finite_value(dtype, n):
    from crnn import _core

    fi = np.finfo(dtype)
    edge = np.array([0.0, -0.0, fi.smallest_subnormal, -fi.smallest_subnormal,
                     fi.tiny, -fi.tiny, fi.tiny - fi.smallest_subnormal,
                     fi.max, -fi.max, np.nextafter(fi.max, 0, dtype=dtype), 1, -1], dtype)
    a = np.resize(edge, n)
    assert np.isfinite(a).all() and _core.all_finite(a)
    a[-1] = fi.max  # the largest finite value in the tail after the last block
    assert _core.all_finite(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_with_lengths_matches_isfinite_on_the_valid_steps(dtype):
    from crnn import _core

    rng = np.random.default_rng(7)
    for T, B, F in [(1, 1, 1), (3, 1, 257), (5, 3, 1), (4, 7, 3), (9, 4, 128),
                    (6, 5, 1025), (2, 2, 0)]:
        for _ in range(8):
            lens = rng.integers(0, T + 1, size=B).astype(np.int64)
            a = rng.standard_normal((T, B, F)).astype(dtype)
            bad = rng.random(a.shape) < rng.choice([0, 1e-3, 0.05])
            a[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
            valid = np.arange(T)[:, None] < lens[None, :]
            assert _core.all_finite(a, lens) == np.isfinite(a[valid]).all()
            assert _core.all_finite(a) == np.isfinite(a).all()
        a = np.full((T, B, F), np.nan, dtype)
        assert _core.all_finite(a, np.zeros(B, np.int64))
        lens = np.full(B, T, np.int64)
        if a.size:
            assert not _core.all_finite(a, lens)
            # a NaN only in the last valid step of the last sequence, or only
            # in a padded step just after it
            a[...] = 1
            a[T - 1, B - 1, F - 1] = np.nan
            assert not _core.all_finite(a, lens)
            lens[B - 1] = T - 1
            assert _core.all_finite(a, lens)


def test_all_finite_odd_shapes_and_lengths():
    from crnn import _core

    assert _core.all_finite(np.array(1.0)) and not _core.all_finite(np.array(np.nan))
    assert _core.all_finite(np.ones((0, 3, 2)), np.empty(0, np.int64))
    assert not _core.all_finite(np.full((2, 3), np.nan), np.empty(0, np.int64))  # as None
    a = np.full((4, 3, 2), np.nan)
    assert _core.all_finite(a, np.array([-1, 0, -5], np.int64))
    assert not _core.all_finite(a, np.array([9, 0, 0], np.int64))  # > T: every step
    with pytest.raises(ValueError, match="at least B = 3"):
        _core.all_finite(a, np.array([1, 1], np.int64))
    with pytest.raises(ValueError):
        _core.all_finite(a, np.array([1, 1, 1], np.int32))


# Shapes for the time loop's packed products (crnn.h, pgemm_impl.h): full
# and partial 6-row slivers and column panels, B = 1 (several panels at
# once), H beyond one 256-wide block.
PACKED_SHAPES = [(3, 2, 3, 16), (3, 7, 3, 17), (2, 11, 2, 33), (2, 10, 4, 48), (2, 9, 1, 260),
                 (3, 1, 2, 17), (2, 1, 3, 100), (2, 1, 1, 300)]


@pytest.mark.parametrize("shape", PACKED_SHAPES)
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_time_loop_matches_reference(shape, reverse):
    T, B, D, H = shape
    layer = crnn.Layer(D, H, activation="tanh", reverse=reverse, seed=H)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=B)
    _compare_with_reference(layer, x, lens, h0, dy, ds, 1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_packed_time_loop_matches_the_blas_one(dtype, tol):
    """work given (packed W_hh where the CPU has AVX2+FMA) against packed=False
    (every product on the BLAS): only the summation order may differ."""
    T, B, D, H = 4, 11, 5, 40
    layer = crnn.Layer(D, H, activation="tanh", dtype=dtype, seed=7)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=8)
    packed = _core_run(layer, x, h0, lens, dy, ds, packed=True)
    blas = _core_run(layer, x, h0, lens, dy, ds, packed=False)
    for a, b in zip(packed, blas):
        _close(a, b, tol)


def test_bad_work_buffer_is_refused():
    from crnn import _core

    layer = _layer()
    T, B = 2, 3
    sizes = layer._sizes(T, B)
    x = np.ones((T, B, 3))
    n = _core.worksize(B, layer.input_size, layer.hidden_size, False, np.float64)
    if n == 0:  # built without the packed products (only x86-64 GCC/clang has them)
        assert platform.machine().lower() not in ("x86_64", "amd64")
        return
    with pytest.raises(ValueError, match=f"work must be a 1-D array of at least {n}"):
        _core.elman_forward(x, None, None, None, layer.params, work=np.empty(n - 1), **sizes)
    with pytest.raises(ValueError, match="work must be a 1-D"):
        _core.elman_forward(x, None, None, None, layer.params, work=np.empty((n, 1)), **sizes)
    with pytest.raises(TypeError, match="work must have dtype float64"):
        _core.elman_forward(x, None, None, None, layer.params,
                            work=np.empty(n, np.float32), **sizes)
    with pytest.raises(ValueError, match="work must be writeable"):
        ro = np.empty(n)
        ro.flags.writeable = False
        _core.elman_forward(x, None, None, None, layer.params, work=ro, **sizes)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("tokens,O", [(False, None), (False, 3), (True, None), (True, 2)])
def test_backward_in_chunks_matches_reference(monkeypatch, chunk, reverse, tokens, O):
    """The backward's time loop in chunks of `chunk` steps (crnn.h; 5 = all T
    steps at once here): the carry between chunks, each chunk's share of the
    parameter gradients, dstate and h0 entering in the right chunk."""
    from crnn import layers

    monkeypatch.setattr(layers._core, "chunk", lambda T, B: chunk)
    T, B, D, H = 5, 3, 4, 6
    layer = crnn.Layer(D, H, O, output_activation="tanh" if O else "identity",
                       reverse=reverse, seed=chunk)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=tokens, lengths="mixed", h0=True,
                                dstate=True, O=O, seed=10 * chunk + reverse)
    _compare_with_reference(layer, x, lens, h0, dy, ds, 1e-12)
    assert layer._work["da"].shape == (min(chunk, T) + 1, B, H)


@pytest.fixture
def dx_chunks():
    """crnn._core.dx_chunk_bytes, set by the test, restored after it."""
    from crnn import _core

    old = _core.dx_chunk_bytes()
    yield _core.dx_chunk_bytes
    _core.dx_chunk_bytes(old)


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_in_chunks_held_in_dx_matches_reference(monkeypatch, dx_chunks, chunk, reverse):
    """With dx wanted and no output layer, from dx_chunk_bytes of a chunk's
    da on (1 here: every chunk), the backward's chunks are as long as dx's
    rows not written yet can hold (crnn.h): with T = 11, D = 8, H = 4, the
    chunk ending at step hi has floor(2 hi / 3) steps while that is more
    than `chunk` (chunks of 7, 2, 1, 1 steps for chunk 1; 7, 2, 2 for chunk
    2), its da in the rows of the steps processed after it. The carry, dstate,
    h0 and lengths across such chunks, and dx's rows at padded steps 0."""
    from crnn import layers

    monkeypatch.setattr(layers._core, "chunk", lambda T, B: chunk)
    dx_chunks(1)
    T, B, D, H = 11, 3, 8, 4
    layer = crnn.Layer(D, H, reverse=reverse, seed=chunk)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=30 + 10 * chunk + reverse)
    _compare_with_reference(layer, x, lens, h0, dy, ds, 1e-12)
    layer.zero_grad()
    dx, dh0 = layer.backward(dy, ds)
    for b in range(B):
        assert not dx[lens[b]:, b].any()
    # without dx the chunks are `chunk` steps: the same gradients but for rounding
    with_dx = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    assert layer.backward(dy, ds, need_dx=False)[0] is None
    for k in with_dx:
        _close(layer.grads[k], with_dx[k], 1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_backward_chunks_in_dx_at_the_default_size(dx_chunks, dtype, tol):
    """At the default dx_chunk_bytes (2^20: T = 20, B = 32 and D = H = 512
    in float64, 1024 in float32, give chunks of 8 steps, 1 MiB of da, and a
    first chunk of 10 steps in dx), on the thread count in force: the same
    results as with chunks in the workspace only, and as with all T steps
    in one chunk."""
    from crnn import _core

    T, B = 20, 32
    D = H = 512 if dtype == np.float64 else 1024
    assert _core.chunk(T, B) * B * H * np.dtype(dtype).itemsize == dx_chunks() == 2 ** 20
    layer = crnn.Layer(D, H, dtype=dtype, seed=5)
    x, lens, h0, dy, ds = _case(T, B, D, H, tokens=False, lengths="mixed", h0=True,
                                dstate=True, O=None, seed=6)
    got = _run(layer, x, h0, lens, dy, ds)
    dx_chunks(0)
    plain = _run(layer, x, h0, lens, dy, ds)
    x, _, h0, lens, hs, _ = layer._ctx  # as the core got them (padding zeroed, dtype)
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx, dh0 = _core.elman_backward(dy.astype(dtype), ds.astype(dtype), hs, None, x, None, h0,
                                   lens, layer.params, grads, True, chunk=T,
                                   **layer._sizes(T, B))
    for a, b in zip(got, plain):
        _close(a, b, tol)
    for a, b in zip(got[2:], [dx, dh0, *grads.values()]):
        _close(a, b, tol)


def test_bad_dx_chunk_bytes_is_refused(dx_chunks):
    old = dx_chunks()
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="dx_chunk_bytes must be >= 0"):
            dx_chunks(bad)
    assert dx_chunks() == old
    assert dx_chunks(0) == old and dx_chunks() == 0


def test_bad_chunk_is_refused():
    from crnn import _core

    layer = _layer()
    T, B = 2, 3
    sizes = layer._sizes(T, B)
    x = np.ones((T, B, 3))
    hs, _, _ = _core.elman_forward(x, None, None, None, layer.params, **sizes)
    dy = np.ones_like(hs)
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="chunk must be an int >= 1"):
            _core.elman_backward(dy, None, hs, None, x, None, None, None, layer.params, grads,
                                 True, chunk=bad, **sizes)
    with pytest.raises(ValueError, match="da"):  # chunk 1 needs (2, B, H)
        _core.elman_backward(dy, None, hs, None, x, None, None, None, layer.params, grads,
                             True, chunk=1, da=np.empty((T + 1, B, layer.hidden_size)), **sizes)
    assert not any(g.any() for g in grads.values())
    assert _core.chunk(100, 32) == 8 and _core.chunk(5, 32) == 5 and _core.chunk(100, 1000) == 1


def test_backward_workspace_follows_the_shape():
    layer = crnn.Layer(3, 4, 2, output_activation="tanh", seed=0)
    for T, B in [(5, 2), (7, 3), (5, 2), (1, 1)]:
        x, lens, h0, dy, ds = _case(T, B, 3, 4, tokens=False, lengths="mixed", h0=True,
                                    dstate=True, O=2, seed=T * 10 + B)
        layer.forward(x, h0, lens)
        layer.zero_grad()
        dx, dh0 = layer.backward(dy, ds)
        g_ref, dx_ref, dh0_ref = reference.gradients(layer.config(), layer.params, x, dy, h0,
                                                     lens, ds)
        _close(dx, dx_ref, 1e-12)
        _close(dh0, dh0_ref, 1e-12)
        for k in g_ref:
            _close(layer.grads[k], g_ref[k], 1e-12)


def test_public_thread_controls():
    if not crnn.thread_control():
        pytest.skip("crnn cannot steer this BLAS (threadpoolctl or OpenBLAS missing)")
    saved = crnn.blas_threads()
    try:
        assert crnn.blas_threads(1) == 1
        from threadpoolctl import threadpool_info

        scipy_blas = [i for i in threadpool_info() if "scipy.libs" in i["filepath"]
                      or "scipy/" in i["filepath"]]
        assert not scipy_blas or scipy_blas[0]["num_threads"] == 1
        with pytest.raises(ValueError, match="n must be"):
            crnn.blas_threads(0)
    finally:
        crnn.blas_threads(saved)
    assert crnn.blas_threads() == saved
