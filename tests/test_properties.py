"""Property-based checks (hypothesis): for any configuration hypothesis draws,
the C core agrees with the literal oracle, and a few identities hold."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crnn
from crnn import reference
from crnn.gradcheck import flatten_state, scaled_error

ACTS = ["tanh", "relu", "sigmoid", "identity"]
OUTS = ["identity", "tanh", "relu", "sigmoid", "softmax"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layer_cases(draw):
    T, B = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    D, H = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    O = draw(st.one_of(st.none(), st.integers(1, 4)))
    kw = dict(activation=draw(st.sampled_from(ACTS)),
              output_activation=draw(st.sampled_from(OUTS)) if O else "identity",
              reverse=draw(st.booleans()), bias=draw(st.booleans()))
    tokens = draw(st.booleans())
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, T), min_size=B, max_size=B)))
    seed = draw(st.integers(0, 2**31 - 1))
    return T, B, D, H, O, kw, tokens, lengths, seed, draw(st.booleans()), draw(st.booleans())


def _inputs(T, B, D, H, F, tokens, seed, with_h0, with_ds):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    h0 = rng.standard_normal((B, H)) if with_h0 else None
    ds = rng.standard_normal((B, H)) if with_ds else None
    return x, h0, rng.standard_normal((T, B, F)), ds


@SETTINGS
@given(layer_cases())
def test_any_layer_matches_the_reference(case):
    T, B, D, H, O, kw, tokens, lengths, seed, with_h0, with_ds = case
    layer = crnn.Layer(D, H, O, seed=seed, **kw)
    x, h0, dy, ds = _inputs(T, B, D, H, O or H, tokens, seed, with_h0, with_ds)
    y, h = layer.forward(x, h0, lengths)
    dx, dh0 = layer.backward(dy, ds)
    cfg = layer.config()
    y_ref, h_ref = reference.forward(cfg, layer.params, x, h0, lengths)
    g_ref, dx_ref, dh0_ref = reference.gradients(cfg, layer.params, x, dy, h0, lengths, ds)
    errs = [scaled_error(y, y_ref), scaled_error(h, h_ref), scaled_error(dh0, dh0_ref)]
    errs += [scaled_error(layer.grads[k], g_ref[k]) for k in g_ref]
    if dx_ref is not None:
        errs.append(scaled_error(dx, dx_ref))
    assert max(errs) <= 1e-12


@SETTINGS
@given(layer_cases(), st.sampled_from(["concat", "sum", "mean", "mul"]))
def test_any_bilayer_stack_matches_the_reference(case, merge):
    T, B, D, H, O, kw, tokens, lengths, seed, with_h0, with_ds = case
    kw.pop("reverse")
    first = crnn.BiLayer(D, H, merge=merge, seed=seed, activation=kw["activation"],
                         bias=kw["bias"])
    second = crnn.Layer(first.out_features, H, O, seed=seed + 1, **kw)
    stack = crnn.Stack([first, second])
    x, _, dy, _ = _inputs(T, B, D, H, stack.out_features, tokens, seed, False, False)
    y, state = stack.forward(x, None, lengths)
    dx, dh0 = stack.backward(dy)
    cfg = stack.config()
    y_ref, s_ref = reference.forward(cfg, dict(stack.params), x, None, lengths)
    g_ref, dx_ref, dh0_ref = reference.gradients(cfg, dict(stack.params), x, dy, None, lengths)
    errs = [scaled_error(y, y_ref)]
    errs += [scaled_error(a, b) for a, b in zip(flatten_state(state), flatten_state(s_ref))]
    errs += [scaled_error(a, b) for a, b in zip(flatten_state(dh0), flatten_state(dh0_ref))]
    errs += [scaled_error(stack.grads[k], g_ref[k]) for k in g_ref]
    if dx_ref is not None:
        errs.append(scaled_error(dx, dx_ref))
    assert max(errs) <= 1e-12


@SETTINGS
@given(layer_cases())
def test_a_batch_is_its_sequences_run_one_by_one(case):
    """Each sequence of a batch gives what it gives alone, cut to its length
    (batching and padding change nothing)."""
    T, B, D, H, O, kw, tokens, lengths, seed, with_h0, _ = case
    layer = crnn.Layer(D, H, O, seed=seed, **kw)
    x, h0, _, _ = _inputs(T, B, D, H, O or H, tokens, seed, with_h0, False)
    y, h = layer.forward(x, h0, lengths)
    lens = [T] * B if lengths is None else lengths
    for b, n in enumerate(lens):
        h0_b = None if h0 is None else h0[b:b + 1]
        if n == 0:
            assert np.all(y[:, b] == 0)
            np.testing.assert_array_equal(h[b], np.zeros(H) if h0 is None else h0[b])
            continue
        yb, hb = layer.forward(x[:n, b:b + 1], h0_b)
        assert scaled_error(y[:n, b], yb[:, 0]) <= 1e-14
        assert scaled_error(h[b], hb[0]) <= 1e-14
        assert np.all(y[n:, b] == 0)
