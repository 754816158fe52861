"""BiLayer and Stack: against crnn.reference and finite differences, for every
merge, with lengths, states and tokens; construction and state errors."""
import itertools

import numpy as np
import pytest

import crnn
from crnn import reference
from crnn.gradcheck import flatten_state, gradcheck

MERGES = ["concat", "sum", "mean", "mul"]


def _close(got, ref, tol=1e-12):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max(initial=0) <= tol, f"max scaled error {err.max():.3e}"


def _random_like(state, rng):
    if isinstance(state, tuple):
        return tuple(_random_like(s, rng) for s in state)
    if isinstance(state, list):
        return [_random_like(s, rng) for s in state]
    return rng.standard_normal(state.shape)


def _inputs(module, T, B, *, tokens, lengths, seed):
    rng = np.random.default_rng(seed)
    D = module.input_size
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    lens = None
    if lengths:
        lens = rng.integers(0, T + 1, B)
        lens[0], lens[-1] = 0, T
    y, state = module.forward(x, None, lens)
    h0, ds = _random_like(state, rng), _random_like(state, rng)
    dy = rng.standard_normal(y.shape)
    if lens is not None:  # padding may hold anything
        for b, n in enumerate(lens):
            dy[n:, b] = np.nan
            if not tokens:
                x[n:, b] = np.nan
    return x, lens, h0, dy, ds


def _check_against_reference(module, x, lens, h0, dy, ds):
    y, state = module.forward(x, h0, lens)
    y_ref, s_ref = reference.forward(module.config(), dict(module.params), x, h0, lens)
    _close(y, y_ref)
    assert len(flatten_state(state)) == len(flatten_state(s_ref))
    for a, b in zip(flatten_state(state), flatten_state(s_ref)):
        _close(a, b)
    module.zero_grad()
    dx, dh0 = module.backward(dy, ds)
    g_ref, dx_ref, dh0_ref = reference.gradients(module.config(), dict(module.params), x, dy,
                                                 h0, lens, ds)
    assert set(g_ref) == set(module.grads)
    for k in g_ref:
        _close(module.grads[k], g_ref[k])
    assert (dx is None) == (dx_ref is None)
    if dx is not None:
        _close(dx, dx_ref)
    for a, b in zip(flatten_state(dh0), flatten_state(dh0_ref)):
        _close(a, b)
    return y, state, dx, dh0


@pytest.mark.parametrize("merge", MERGES)
@pytest.mark.parametrize("tokens,lengths", [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("out", [(None, "identity"), (3, "softmax"), (2, "tanh")])
def test_bilayer_matches_reference(merge, tokens, lengths, out):
    O, g = out
    bi = crnn.BiLayer(4, 5, O, merge=merge, output_activation=g, activation="tanh", seed=1)
    x, lens, h0, dy, ds = _inputs(bi, 6, 4, tokens=tokens, lengths=lengths, seed=2)
    y, state, dx, dh0 = _check_against_reference(bi, x, lens, h0, dy, ds)
    F = O or 5
    assert y.shape == (6, 4, 2 * F if merge == "concat" else F)
    assert isinstance(state, tuple) and isinstance(dh0, tuple) and len(dh0) == 2
    if lens is not None:
        for b, n in enumerate(lens):
            assert np.all(y[n:, b] == 0)


@pytest.mark.parametrize("merge", MERGES)
def test_bilayer_merge_rules(merge):
    bi = crnn.BiLayer(3, 4, merge=merge, seed=3)
    x = np.random.default_rng(4).standard_normal((5, 2, 3))
    y, (hf, hb) = bi.forward(x, lengths=[5, 3])
    yf, hf2 = bi.fwd.forward(x, lengths=[5, 3])
    yb, hb2 = bi.bwd.forward(x, lengths=[5, 3])
    expected = {"concat": np.concatenate([yf, yb], axis=2), "sum": yf + yb,
                "mean": (yf + yb) / 2, "mul": yf * yb}[merge]
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(hf, hf2)
    np.testing.assert_array_equal(hb, hb2)
    # the backward direction of sequence 1 starts at its own last valid step 2
    yb1, hb1 = bi.bwd.forward(x[:3, 1:2])
    np.testing.assert_allclose(yb[:3, 1], yb1[:, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(hb[1], hb1[0], rtol=0, atol=1e-15)


STACKS = {
    "layer+layer": lambda dt: crnn.Stack([crnn.Layer(5, 4, dtype=dt, seed=1),
                                          crnn.Layer(4, 3, 2, output_activation="sigmoid", dtype=dt, seed=2)]),
    "bi+layer": lambda dt: crnn.Stack([crnn.BiLayer(5, 4, merge="concat", dtype=dt, seed=3),
                                       crnn.Layer(8, 3, activation="relu", dtype=dt, seed=4)]),
    "layer+bi(mul)+layer": lambda dt: crnn.Stack([
        crnn.Layer(5, 4, reverse=True, dtype=dt, seed=5),
        crnn.BiLayer(4, 3, merge="mul", activation="sigmoid", dtype=dt, seed=6),
        crnn.Layer(3, 4, 5, output_activation="softmax", dtype=dt, seed=7)]),
    "bi(sum)+bi(mean)": lambda dt: crnn.Stack([
        crnn.BiLayer(5, 4, merge="sum", dtype=dt, seed=8),
        crnn.BiLayer(4, 2, merge="mean", activation="identity", dtype=dt, seed=9)]),
}


@pytest.mark.parametrize("name", list(STACKS))
@pytest.mark.parametrize("tokens,lengths", [(False, False), (False, True), (True, True)])
def test_stack_matches_reference(name, tokens, lengths):
    stack = STACKS[name](np.float64)
    x, lens, h0, dy, ds = _inputs(stack, 7, 3, tokens=tokens, lengths=lengths, seed=5)
    y, state, dx, dh0 = _check_against_reference(stack, x, lens, h0, dy, ds)
    assert isinstance(state, list) and len(state) == len(stack)
    assert isinstance(dh0, list) and len(dh0) == len(stack)


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_gradients_match_finite_differences(name):
    stack = STACKS[name](np.float64)
    x, lens, h0, dy, ds = _inputs(stack, 5, 3, tokens=False, lengths=True, seed=6)
    errors = gradcheck(stack, x, h0, lens, dy=dy, dstate=ds)
    assert set(errors) == set(stack.params) | {"x", "h0"}
    bad = {k: v for k, v in errors.items() if not v <= 1e-7}
    assert not bad, bad


@pytest.mark.parametrize("merge", MERGES)
def test_bilayer_gradients_match_finite_differences(merge):
    bi = crnn.BiLayer(3, 4, 2, merge=merge, output_activation="tanh", seed=7)
    x, lens, h0, dy, ds = _inputs(bi, 5, 3, tokens=False, lengths=True, seed=8)
    errors = gradcheck(bi, x, h0, lens, dy=dy, dstate=ds)
    bad = {k: v for k, v in errors.items() if not v <= 1e-7}
    assert not bad, bad


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_float32_matches_float64(name):
    s64, s32 = STACKS[name](np.float64), STACKS[name](np.float32)
    for k in s64.params:
        s64.params[k][...] = s32.params[k]
    x, lens, h0, dy, ds = _inputs(s64, 6, 3, tokens=False, lengths=True, seed=9)
    outs = []
    for s in (s64, s32):
        y, st = s.forward(x, h0, lens)
        dx, dh0 = s.backward(dy, ds)
        outs.append([y, dx, *flatten_state(st), *flatten_state(dh0), *s.grads.values()])
    for a, b in zip(outs[1], outs[0]):
        assert a.dtype == np.float32
        _close(a, b, 1e-4)


def test_state_entries_may_be_none_and_h0_none_means_zeros():
    stack = STACKS["bi+layer"](np.float64)
    x = np.random.default_rng(0).standard_normal((4, 2, 5))
    y1, s1 = stack.forward(x)
    y2, s2 = stack.forward(x, [(None, np.zeros((2, 4))), None])
    np.testing.assert_array_equal(y1, y2)
    dx, dh0 = stack.backward(np.ones_like(y2), [None, np.ones((2, 3))])
    assert isinstance(dh0[0], tuple) and dh0[0][0].shape == (2, 4) and dh0[1].shape == (2, 3)


def test_parameter_names_and_live_views():
    stack = STACKS["layer+bi(mul)+layer"](np.float64)
    names = list(stack.params)
    assert names[:3] == ["0.W_xh", "0.W_hh", "0.b_h"]
    assert "1.fwd.W_xh" in names and "1.bwd.W_hh" in names and "2.W_hy" in names
    assert list(stack.grads) == names
    assert stack.params["1.bwd.W_hh"] is stack[1].bwd.params["W_hh"]
    new = np.zeros((3, 3))
    stack.params["1.bwd.W_hh"] = new
    assert stack[1].bwd.params["W_hh"] is new
    with pytest.raises(KeyError):
        stack.params["3.W_xh"]
    with pytest.raises(KeyError):
        stack.params["1.W_xh"] = new
    stack.zero_grad()
    assert all(np.all(g == 0) for g in stack.grads.values())
    assert stack.num_params == sum(p.size for p in stack.params.values())


def test_stack_container_protocol_and_repr():
    layers = [crnn.Layer(3, 4, seed=0), crnn.BiLayer(4, 2, seed=1)]
    stack = crnn.Stack(layers)
    assert len(stack) == 2 and stack[1] is layers[1] and list(stack) == layers
    assert stack.input_size == 3 and stack.out_features == 4 and stack.dtype == np.float64
    r = repr(stack)
    assert "(0): Layer(input_size=3" in r and "(1): BiLayer(input_size=4" in r
    assert repr(crnn.BiLayer(2, 3, merge="sum")).startswith("BiLayer(input_size=2, hidden_size=3")
    cfg = stack.config()
    assert cfg["type"] == "Stack" and cfg["layers"][1]["type"] == "BiLayer"
    assert cfg["layers"][1]["merge"] == "concat"


def test_bilayer_attributes():
    bi = crnn.BiLayer(3, 4, 2, merge="concat", output_activation="sigmoid", dtype=np.float32)
    assert bi.fwd.reverse is False and bi.bwd.reverse is True
    assert (bi.input_size, bi.hidden_size, bi.output_size, bi.out_features) == (3, 4, 2, 4)
    assert bi.dtype == np.float32 and bi.activation == "tanh"
    assert crnn.BiLayer(3, 4, merge="sum").out_features == 4
    a, b = crnn.BiLayer(3, 4, seed=5), crnn.BiLayer(3, 4, seed=5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.fwd.params["W_hh"], a.bwd.params["W_hh"])


def test_stack_construction_errors():
    with pytest.raises(ValueError, match="at least one"):
        crnn.Stack([])
    with pytest.raises(TypeError, match="layer 1"):
        crnn.Stack([crnn.Layer(3, 4), "relu"])
    with pytest.raises(ValueError, match=r"layer 1 .*input_size 5.*layer 0 .*out_features 4"):
        crnn.Stack([crnn.Layer(3, 4), crnn.Layer(5, 2)])
    with pytest.raises(ValueError, match=r"layer 1 .*input_size 4.*out_features 8"):
        crnn.Stack([crnn.BiLayer(3, 4), crnn.Layer(4, 2)])
    with pytest.raises(ValueError, match="dtype"):
        crnn.Stack([crnn.Layer(3, 4), crnn.Layer(4, 2, dtype=np.float32)])
    with pytest.raises(ValueError, match="merge"):
        crnn.BiLayer(3, 4, merge="max")
    # one object at two positions: its second forward would replace the
    # first's stored context, and backward would give wrong gradients
    layer, bi = crnn.Layer(4, 4), crnn.BiLayer(4, 2)
    with pytest.raises(ValueError, match="layer 2 holds the same Layer object as layer 0"):
        crnn.Stack([layer, crnn.Layer(4, 4), layer])
    with pytest.raises(ValueError, match="layer 1 holds the same Layer object as layer 0"):
        crnn.Stack([bi, bi])
    with pytest.raises(ValueError, match="layer 1 holds the same Layer object as layer 0"):
        crnn.Stack([bi, bi.fwd])        # bi: 4 -> 4 (concat of 2 + 2), bi.fwd: 4 -> 2
    assert len(crnn.Stack([layer, crnn.Layer(4, 4)])) == 2  # equal weights in two objects are fine


def test_state_structure_errors():
    stack = crnn.Stack([crnn.Layer(3, 4), crnn.BiLayer(4, 2)])
    x = np.ones((2, 1, 3))
    with pytest.raises(TypeError, match="h0 of a Stack"):
        stack.forward(x, [None])
    with pytest.raises(TypeError, match="h0 of a BiLayer"):
        stack.forward(x, [None, np.zeros((1, 2))])
    with pytest.raises(RuntimeError, match="forward"):
        stack.backward(np.ones((2, 1, 4)))
    y, _ = stack.forward(x)
    with pytest.raises(TypeError, match="dstate of a Stack"):
        stack.backward(np.ones_like(y), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="dy"):
        stack.backward(np.ones((2, 1, 3)))
    with pytest.raises(ValueError):
        stack.forward(np.ones((2, 1, 5)))
    with pytest.raises(RuntimeError, match="forward"):  # the failed forward left nothing
        stack.backward(np.ones_like(y))
    bi = crnn.BiLayer(3, 2)
    with pytest.raises(RuntimeError, match="forward"):
        bi.backward(np.ones((2, 1, 4)))


def test_tokens_only_in_first_layer():
    stack = crnn.Stack([crnn.Layer(6, 4, seed=0), crnn.Layer(4, 3, seed=1)])
    ids = np.array([[0, 5], [3, 2], [1, 1]])
    y, _ = stack.forward(ids)
    onehot = np.eye(6)[ids]
    y2, _ = stack.forward(onehot)
    np.testing.assert_allclose(y, y2, rtol=0, atol=1e-15)
    stack.forward(ids)
    dx, _ = stack.backward(np.ones_like(y))
    assert dx is None


@pytest.mark.parametrize("combo", list(itertools.product([False, True], MERGES)))
def test_bilayer_backward_is_repeatable(combo):
    tokens, merge = combo
    bi = crnn.BiLayer(4, 3, merge=merge, seed=2)
    x, lens, h0, dy, ds = _inputs(bi, 5, 2, tokens=tokens, lengths=True, seed=3)
    bi.forward(x, h0, lens)
    bi.backward(dy, ds)
    once = {k: g.copy() for k, g in bi.grads.items()}
    bi.backward(dy, ds)
    for k in once:
        np.testing.assert_allclose(bi.grads[k], 2 * once[k], rtol=1e-15, atol=0)


@pytest.mark.parametrize("merge", MERGES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilayer_directions_in_parallel_are_bitwise_identical(merge, dtype):
    from crnn import _core

    results = []
    threads_before = _core.blas_threads()
    for parallel in (False, True):
        bi = crnn.BiLayer(24, 32, merge=merge, dtype=dtype, seed=4)
        bi.parallel = parallel
        x, lens, h0, dy, ds = _inputs(bi, 40, 16, tokens=False, lengths=True, seed=5)
        y, (hf, hb) = bi.forward(x, h0, lens)
        dx, (dhf, dhb) = bi.backward(dy, ds)
        results.append([y, hf, hb, dx, dhf, dhb] + [g.copy() for g in bi.grads.values()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert _core.blas_threads() == threads_before  # the BLAS thread count is restored


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_backward_that_raises_accumulates_nothing(merge):
    """A BiLayer or Stack checks every part's dy and dstate before any part
    accumulates: a bad argument for a later part raises with the gradients
    untouched, and a corrected call then gives the gradients of one call."""
    T, B, D, H = 4, 2, 3, 5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D))
    good = rng.standard_normal((B, H))
    nan = good.copy()
    nan[1, 2] = np.nan
    bi = crnn.BiLayer(D, H, merge=merge, seed=0)
    stack = crnn.Stack([crnn.Layer(D, H, seed=1), crnn.BiLayer(H, H, merge=merge, seed=2)])
    F = bi.out_features
    dy_bad = rng.standard_normal((T, B, F))
    dy_bad[2, 1, F - 1] = np.nan  # read by the bwd direction (concat: by it alone)
    cases = [(bi, dy_bad, None, "dy must be finite"),
             (bi, np.ones((T, B, F)), (good, nan), "dstate must be finite"),
             (bi, np.ones((T, B, F)), (good, good[:, :-1]), r"dstate must have shape"),
             (stack, np.ones((T, B, F)), [nan, None], "dstate must be finite"),
             (stack, np.ones((T, B, F)), [good[:1], (good, good)], r"dstate must have shape"),
             (stack, np.ones((T, B, F)), [None, (good, nan)], "dstate must be finite")]
    for module, dy, dstate, msg in cases:
        module.zero_grad()
        module.forward(x)
        with pytest.raises(ValueError, match=msg):
            module.backward(dy, dstate)
        for k, g in module.grads.items():
            assert not np.any(g), (msg, k)
        dy_ok = np.ones((T, B, F))
        module.backward(dy_ok)
        once = {k: g.copy() for k, g in module.grads.items()}
        module.zero_grad()
        module.backward(dy_ok)
        for k in once:
            np.testing.assert_array_equal(module.grads[k], once[k])


def test_bilayer_parallel_failure_leaves_nothing_for_backward():
    bi = crnn.BiLayer(3, 4, seed=0)
    bi.parallel = True
    with pytest.raises(ValueError, match="input_size"):
        bi.forward(np.ones((2, 1, 5)))
    with pytest.raises(RuntimeError, match="forward"):
        bi.backward(np.ones((2, 1, 8)))


@pytest.mark.parametrize("dtype,scale", [(np.float64, 3000.0), (np.float32, 400.0)])
def test_softmax_output_and_logits_give_the_same_gradients_even_when_probabilities_underflow(
        dtype, scale):
    from crnn import losses

    T, B, D, H, O = 4, 3, 2, 3, 5
    probs = crnn.Layer(D, H, O, output_activation="softmax", dtype=dtype, seed=0)
    logits = crnn.Layer(D, H, O, output_activation="identity", dtype=dtype, seed=0)
    for k in probs.params:
        probs.params[k] *= scale if k == "W_hy" else 1  # logit gaps of hundreds
        logits.params[k][...] = probs.params[k]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, D)) * 3
    target = rng.integers(0, O, (T, B))
    p, _ = probs.forward(x)
    z, _ = logits.forward(x)
    exact = np.exp(z.astype(np.float64) - z.max(-1, keepdims=True))
    exact /= exact.sum(-1, keepdims=True)
    p_target = np.take_along_axis(exact, target[..., None], -1)
    assert (p_target < np.finfo(dtype).tiny).any()  # the case this test is about
    _, dy_p = losses.cross_entropy(p, target)
    _, dy_z = losses.cross_entropy(z, target, from_logits=True)
    probs.backward(dy_p)
    logits.backward(dy_z)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    for k in probs.grads:
        assert np.all(np.isfinite(probs.grads[k]))
        _close(probs.grads[k], logits.grads[k], tol)


def test_bilayer_seed_accepts_what_layer_accepts():
    for seed in (3, np.random.SeedSequence(3), np.random.default_rng(3)):
        bi = crnn.BiLayer(2, 3, seed=seed)
        assert not np.array_equal(bi.fwd.params["W_hh"], bi.bwd.params["W_hh"])
    a = crnn.BiLayer(2, 3, seed=np.random.SeedSequence(5))
    b = crnn.BiLayer(2, 3, seed=np.random.SeedSequence(5))
    np.testing.assert_array_equal(a.params["bwd.W_xh"], b.params["bwd.W_xh"])
