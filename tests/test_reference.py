"""Self-tests of crnn.reference against oracles that share nothing with it.

The reference is the oracle for the C core, so it is checked here against:
central finite differences of its own forward pass (every gradient), scalar
arithmetic written out by hand, a vectorised backward recursion (BPTT) written
in this file, and structural facts (padding is never read, a reverse layer is
a forward layer on the reversed valid prefix).
"""

import importlib.util
import math
import pathlib

import numpy as np
import pytest

try:
    from crnn import reference as ref
except Exception:  # crnn/__init__ imports the compiled core, which may not be built
    _path = pathlib.Path(__file__).resolve().parents[1] / "crnn" / "reference.py"
    _spec = importlib.util.spec_from_file_location("crnn_reference", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)

ACTS = ["tanh", "relu", "sigmoid", "identity"]
OUT_ACTS = ["identity", "tanh", "relu", "sigmoid", "softmax"]
MERGES = ["concat", "sum", "mean", "mul"]

FD_STEP = 1e-6
FD_RTOL = 1e-6       # gradients vs central differences (relative to the array's scale)
BPTT_RTOL = 1e-12    # literal product of Jacobians vs the backward recursion


# --------------------------------------------------------------------------
# Builders

def layer_cfg(D, H, O=None, f="tanh", g="identity", reverse=False, bias=True):
    return {"type": "Layer", "input_size": D, "hidden_size": H, "output_size": O,
            "activation": f, "output_activation": g, "reverse": reverse, "bias": bias,
            "dtype": "float64"}


def bilayer_cfg(D, H, O=None, merge="concat", f="tanh", g="identity", bias=True):
    return {"type": "BiLayer", "input_size": D, "hidden_size": H, "output_size": O,
            "merge": merge, "activation": f, "output_activation": g, "bias": bias,
            "dtype": "float64"}


def stack_cfg(*layers):
    return {"type": "Stack", "layers": list(layers)}


def make_params(rng, cfg, prefix="", scale=0.6):
    if cfg["type"] == "Stack":
        out = {}
        for i, sub in enumerate(cfg["layers"]):
            out.update(make_params(rng, sub, f"{prefix}{i}.", scale))
        return out
    if cfg["type"] == "BiLayer":
        return {**make_params(rng, dict(cfg, type="Layer"), prefix + "fwd.", scale),
                **make_params(rng, dict(cfg, type="Layer"), prefix + "bwd.", scale)}
    D, H, O = cfg["input_size"], cfg["hidden_size"], cfg["output_size"]
    p = {"W_xh": rng.normal(0, scale, (H, D)), "W_hh": rng.normal(0, scale, (H, H))}
    if cfg["bias"]:
        p["b_h"] = rng.normal(0, scale, H)
    if O is not None:
        p["W_hy"] = rng.normal(0, scale, (O, H))
        if cfg["bias"]:
            p["b_y"] = rng.normal(0, scale, O)
    return {prefix + k: v for k, v in p.items()}


def out_features(cfg):
    if cfg["type"] == "Stack":
        return out_features(cfg["layers"][-1])
    o = cfg["output_size"] or cfg["hidden_size"]
    return 2 * o if cfg["type"] == "BiLayer" and cfg["merge"] == "concat" else o


def make_state(cfg, B, rng=None):
    """A state in the module's structure: random if rng is given, else zeros."""
    if cfg["type"] == "Stack":
        return [make_state(sub, B, rng) for sub in cfg["layers"]]
    if cfg["type"] == "BiLayer":
        return (make_state(dict(cfg, type="Layer"), B, rng),
                make_state(dict(cfg, type="Layer"), B, rng))
    shape = (B, cfg["hidden_size"])
    return np.zeros(shape) if rng is None else rng.normal(0, 0.5, shape)


def fill_state(cfg, s, B):
    """Replace None (anywhere in the structure) by zeros."""
    if s is None:
        return make_state(cfg, B)
    if cfg["type"] == "Stack":
        return [fill_state(c, si, B) for c, si in zip(cfg["layers"], s)]
    if cfg["type"] == "BiLayer":
        return tuple(fill_state(dict(cfg, type="Layer"), si, B) for si in s)
    return s


def leaves(s):
    if isinstance(s, np.ndarray):
        return [s]
    out = []
    for si in s:
        out += leaves(si)
    return out


def check_structure(cfg, s, B):
    """s is a state-structured value of arrays (no None), as DESIGN.md §2 says."""
    if cfg["type"] == "Stack":
        assert isinstance(s, list) and len(s) == len(cfg["layers"])
        for c, si in zip(cfg["layers"], s):
            check_structure(c, si, B)
    elif cfg["type"] == "BiLayer":
        assert isinstance(s, tuple) and len(s) == 2
        for si in s:
            check_structure(dict(cfg, type="Layer"), si, B)
    else:
        assert isinstance(s, np.ndarray) and s.dtype == np.float64
        assert s.shape == (B, cfg["hidden_size"])


def random_x(rng, T, B, D, tokens=False):
    return rng.integers(0, D, (T, B)) if tokens else rng.normal(0, 1, (T, B, D))


# --------------------------------------------------------------------------
# Finite differences

def loss(cfg, params, x, h0, lengths, dy, dstate):
    """L = sum dy * y + sum dstate * state (dstate may hold None anywhere)."""
    y, state = ref.forward(cfg, params, x, h0=h0, lengths=lengths)
    L = 0.0 if dy is None else float(np.sum(dy * y))

    def pairs(ds, st):
        if ds is None:
            return []
        if isinstance(ds, np.ndarray):
            return [(ds, st)]
        return [p for d, s in zip(ds, st) for p in pairs(d, s)]

    return L + sum(float(np.sum(d * s)) for d, s in pairs(dstate, state))


def central_differences(arr, L):
    """dL/darr by central differences, perturbing arr in place (and restoring it)."""
    g = np.zeros(arr.shape)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + FD_STEP
        lp = L()
        arr[i] = old - FD_STEP
        lm = L()
        arr[i] = old
        g[i] = (lp - lm) / (2 * FD_STEP)
    return g


def assert_grad_close(analytic, numeric, what):
    assert analytic.shape == numeric.shape, what
    assert analytic.dtype == np.float64, what
    scale = max(np.max(np.abs(numeric)), np.max(np.abs(analytic)), 1e-4)
    err = np.max(np.abs(analytic - numeric)) / scale
    assert err <= FD_RTOL, f"{what}: relative error {err:.3g}"


def gradcheck(cfg, params, x, dy, h0=None, lengths=None, dstate=None):
    """Every output of ref.gradients against central differences of ref.forward."""
    B = x.shape[1]
    grads, dx, dh0 = ref.gradients(cfg, params, x, dy, h0=h0, lengths=lengths, dstate=dstate)
    assert list(grads) == list(params)
    check_structure(cfg, dh0, B)

    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    h0_fd = fill_state(cfg, h0, B)
    x_fd = np.array(x)

    def L():
        return loss(cfg, params, x_fd, h0_fd, lengths, dy, dstate)

    for key in params:
        assert_grad_close(grads[key], central_differences(params[key], L), key)
    if x.ndim == 2:
        assert dx is None
    else:
        assert_grad_close(dx, central_differences(x_fd, L), "dx")
    for i, (h, d) in enumerate(zip(leaves(h0_fd), leaves(dh0))):
        assert_grad_close(d, central_differences(h, L), f"dh0 leaf {i}")
    return grads, dx, dh0


# --------------------------------------------------------------------------
# Layer: gradients vs finite differences

T, B = 4, 3
LENGTHS = np.array([T, 0, 2])    # full, empty, partial


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("g", [None] + OUT_ACTS)
@pytest.mark.parametrize("f", ACTS)
def test_layer_gradcheck(f, g, reverse):
    i, j = ACTS.index(f), ([None] + OUT_ACTS).index(g)
    bias = (i + j + reverse) % 2 == 0       # every f and every g meets both bias settings
    rng = np.random.default_rng([i, j, reverse])
    D, H = 3, 3
    O = None if g is None else 3
    cfg = layer_cfg(D, H, O, f=f, g=g or "identity", reverse=reverse, bias=bias)
    params = make_params(rng, cfg)
    x = random_x(rng, T, B, D)
    dy = rng.normal(0, 1, (T, B, out_features(cfg)))
    h0 = make_state(cfg, B, rng)
    dstate = make_state(cfg, B, rng)
    gradcheck(cfg, params, x, dy, h0=h0, lengths=LENGTHS, dstate=dstate)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("f", ACTS)
def test_layer_tokens_gradcheck(f, reverse):
    rng = np.random.default_rng([10, ACTS.index(f), reverse])
    D, H, O = 4, 3, 2
    g = "softmax" if reverse else "tanh"
    cfg = layer_cfg(D, H, O, f=f, g=g, reverse=reverse)
    params = make_params(rng, cfg)
    x = random_x(rng, T, B, D, tokens=True)
    x[T - 1] = D - 1                         # the edge id occurs
    dy = rng.normal(0, 1, (T, B, O))
    grads, _, _ = gradcheck(cfg, params, x, dy, h0=make_state(cfg, B, rng),
                            lengths=np.array([T, 1, 0]), dstate=make_state(cfg, B, rng))
    # Columns of W_xh for ids that never occur at a valid step get no gradient.
    seen = set(x[:, 0]) | {x[0, 1]}
    for d in set(range(D)) - seen:
        assert np.all(grads["W_xh"][:, d] == 0.0)


@pytest.mark.parametrize("case", ["defaults", "state-only loss", "uint lengths"])
def test_layer_gradcheck_defaults(case):
    """h0=None (dh0 is then dL/dh0 at 0), lengths=None, dstate=None, dy=None."""
    rng = np.random.default_rng(["defaults", "state-only loss", "uint lengths"].index(case) + 20)
    cfg = layer_cfg(2, 3, 2, f="tanh", g="sigmoid")
    params = make_params(rng, cfg)
    x = random_x(rng, T, B, 2)
    if case == "defaults":
        gradcheck(cfg, params, x, rng.normal(0, 1, (T, B, 2)))
    elif case == "state-only loss":     # an encoder: only the final state is used
        gradcheck(cfg, params, x, None, dstate=make_state(cfg, B, rng), lengths=[1, 3, 0])
    else:
        gradcheck(cfg, params, x, rng.normal(0, 1, (T, B, 2)),
                  lengths=np.array([4, 2, 3], np.uint8))


# --------------------------------------------------------------------------
# BiLayer and Stack: gradients vs finite differences

@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("merge", MERGES)
def test_bilayer_gradcheck(merge, tokens):
    rng = np.random.default_rng([30, MERGES.index(merge), tokens])
    D, H = 3, 3
    if tokens:
        cfg = bilayer_cfg(D, H, 2, merge=merge, f="relu", g="softmax", bias=merge != "sum")
    else:
        cfg = bilayer_cfg(D, H, None, merge=merge, f="tanh")
    params = make_params(rng, cfg)
    x = random_x(rng, T, B, D, tokens)
    dy = rng.normal(0, 1, (T, B, out_features(cfg)))
    h0 = make_state(cfg, B, rng)
    dstate = (make_state(layer_cfg(D, H), B, rng), None)
    gradcheck(cfg, params, x, dy, h0=h0, lengths=np.array([T, 0, 3]), dstate=dstate)


STACKS = {
    "tokens-layer-bi-softmax": (
        stack_cfg(layer_cfg(5, 3), bilayer_cfg(3, 2, merge="concat", f="relu"),
                  layer_cfg(4, 3, 2, g="softmax")),
        True, np.array([4, 2, 0])),
    "bi-mul-then-reverse": (
        stack_cfg(bilayer_cfg(2, 3, 2, merge="mul", f="sigmoid", g="sigmoid"),
                  layer_cfg(2, 3, f="identity", reverse=True, bias=False)),
        False, np.array([4, 4, 1])),
    "reverse-then-bi-mean": (
        stack_cfg(layer_cfg(3, 3, reverse=True), bilayer_cfg(3, 2, merge="mean")),
        False, None),
}


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_gradcheck(name):
    cfg, tokens, lengths = STACKS[name]
    rng = np.random.default_rng(list(STACKS).index(name) + 40)
    params = make_params(rng, cfg)
    x = random_x(rng, T, B, cfg["layers"][0]["input_size"], tokens)
    dy = rng.normal(0, 1, (T, B, out_features(cfg)))
    if name == "reverse-then-bi-mean":
        h0 = dstate = None
    else:
        h0 = make_state(cfg, B, rng)
        h0[1] = None                       # None for one layer = zeros
        dstate = make_state(cfg, B, rng)
        dstate[0] = None
    gradcheck(cfg, params, x, dy, h0=h0, lengths=lengths, dstate=dstate)


# --------------------------------------------------------------------------
# By hand

def test_hand_computed_tanh():
    """H = D = 1, T = 2, B = 1: the equations as scalar arithmetic."""
    wx, wh, bh, wy, by, h0 = 0.5, -0.3, 0.1, 2.0, -1.0, 0.2
    x1, x2 = 1.0, 2.0
    a1 = wx * x1 + wh * h0 + bh              # 0.54
    h1 = math.tanh(a1)
    a2 = wx * x2 + wh * h1 + bh
    h2 = math.tanh(a2)
    assert a1 == pytest.approx(0.54, abs=1e-15)

    cfg = layer_cfg(1, 1)
    params = {"W_xh": np.array([[wx]]), "W_hh": np.array([[wh]]), "b_h": np.array([bh])}
    x = np.array([x1, x2]).reshape(2, 1, 1)
    y, state = ref.forward(cfg, params, x, h0=np.array([[h0]]))
    np.testing.assert_allclose(y.ravel(), [h1, h2], rtol=1e-15)
    np.testing.assert_allclose(state, [[h2]], rtol=1e-15)

    # With an output projection: y_t = W_hy h_t + b_y.
    cfg_o = layer_cfg(1, 1, 1)
    params_o = dict(params, W_hy=np.array([[wy]]), b_y=np.array([by]))
    y, _ = ref.forward(cfg_o, params_o, x, h0=np.array([[h0]]))
    np.testing.assert_allclose(y.ravel(), [wy * h1 + by, wy * h2 + by], rtol=1e-15)

    # L = h_2 (dy = [0, 1]), differentiated by hand through both steps.
    d1, d2 = 1 - h1 ** 2, 1 - h2 ** 2        # tanh'(a1), tanh'(a2)
    grads, dx, dh0 = ref.gradients(cfg, params, x, np.array([0.0, 1.0]).reshape(2, 1, 1),
                                   h0=np.array([[h0]]))
    np.testing.assert_allclose(grads["W_hh"], [[d2 * (h1 + wh * d1 * h0)]], rtol=1e-14)
    np.testing.assert_allclose(grads["W_xh"], [[d2 * (x2 + wh * d1 * x1)]], rtol=1e-14)
    np.testing.assert_allclose(grads["b_h"], [d2 * (1 + wh * d1)], rtol=1e-14)
    np.testing.assert_allclose(dx.ravel(), [d2 * wh * d1 * wx, d2 * wx], rtol=1e-14)
    np.testing.assert_allclose(dh0, [[d2 * wh * d1 * wh]], rtol=1e-14)

    # Reverse: step 2 first, then step 1; the final state is after step 1.
    r2 = math.tanh(wx * x2 + wh * h0 + bh)
    r1 = math.tanh(wx * x1 + wh * r2 + bh)
    y, state = ref.forward(layer_cfg(1, 1, reverse=True), params, x, h0=np.array([[h0]]))
    np.testing.assert_allclose(y.ravel(), [r1, r2], rtol=1e-15)
    np.testing.assert_allclose(state, [[r1]], rtol=1e-15)


def test_relu_derivative_at_zero_is_zero():
    """relu'(0) := 0 for f and for g: pre-activations exactly 0 pass no gradient."""
    cfg = layer_cfg(1, 1, 1, f="relu", g="relu")
    params = {"W_xh": np.array([[1.0]]), "W_hh": np.array([[1.0]]), "b_h": np.array([0.0]),
              "W_hy": np.array([[0.0]]), "b_y": np.array([0.0])}
    x = np.zeros((2, 1, 1))
    dy = np.ones((2, 1, 1))
    grads, dx, dh0 = ref.gradients(cfg, params, x, dy, dstate=np.ones((1, 1)))
    for k in params:
        assert np.all(grads[k] == 0.0), k
    assert np.all(dx == 0.0) and np.all(dh0 == 0.0)


# --------------------------------------------------------------------------
# An independent oracle for the gradient: the O(T) backward recursion.

def _f(name, a):
    return {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0),
            "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "identity": lambda v: v}[name](a)


def _g(name, z):
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return _f(name, z)


def _f_prime_from_h(name, h):
    return {"tanh": lambda: 1 - h ** 2, "relu": lambda: (h > 0).astype(float),
            "sigmoid": lambda: h * (1 - h), "identity": lambda: np.ones_like(h)}[name]()


def bptt(cfg, p, x, dy, h0, lengths, dstate):
    """Vectorised forward + backward recursion, as a C core would do it."""
    f, g, rev = cfg["activation"], cfg["output_activation"], cfg["reverse"]
    Tn, Bn = x.shape[:2]
    b_h = p.get("b_h", 0.0)
    mask = np.arange(Tn)[:, None] < lengths[None, :]
    order = list(range(Tn))[::-1] if rev else list(range(Tn))
    h = h0.copy()
    hprev, hs, ys = {}, {}, np.zeros((Tn, Bn, out_features(cfg)))
    for t in order:
        hprev[t] = h.copy()
        hn = _f(f, x[t] @ p["W_xh"].T + h @ p["W_hh"].T + b_h)
        h = np.where(mask[t][:, None], hn, h)
        hs[t] = h
        if "W_hy" in p:
            ys[t] = _g(g, h @ p["W_hy"].T + p.get("b_y", 0.0))
        else:
            ys[t] = h
        ys[t][~mask[t]] = 0.0
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    dh = dstate.copy()
    for t in order[::-1]:
        m = mask[t][:, None]
        dyt = np.where(m, dy[t], 0.0)
        if "W_hy" in p:
            y = ys[t]
            if g == "softmax":
                dz = y * (dyt - np.sum(dyt * y, axis=-1, keepdims=True))
            else:
                z = hs[t] @ p["W_hy"].T + p.get("b_y", 0.0)
                dz = dyt * _f_prime_from_h(g, _g(g, z))
            dz = np.where(m, dz, 0.0)
            grads["W_hy"] += dz.T @ hs[t]
            if "b_y" in p:
                grads["b_y"] += dz.sum(0)
            dht = dh + dz @ p["W_hy"]
        else:
            dht = dh + dyt
        da = np.where(m, dht * _f_prime_from_h(f, hs[t]), 0.0)
        grads["W_xh"] += da.T @ x[t]
        grads["W_hh"] += da.T @ hprev[t]
        if "b_h" in p:
            grads["b_h"] += da.sum(0)
        dx[t] = da @ p["W_xh"]
        dh = np.where(m, da @ p["W_hh"], dh)
    return np.stack([ys[t] for t in range(Tn)]), h, grads, dx, dh


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("g", [None] + OUT_ACTS)
@pytest.mark.parametrize("f", ACTS)
def test_layer_matches_backward_recursion(f, g, reverse):
    rng = np.random.default_rng([50, ACTS.index(f), ([None] + OUT_ACTS).index(g), reverse])
    Tn, Bn, D, H = 6, 4, 3, 4
    O = None if g is None else 3
    cfg = layer_cfg(D, H, O, f=f, g=g or "identity", reverse=reverse, bias=bool(rng.integers(2)))
    params = make_params(rng, cfg)
    x = random_x(rng, Tn, Bn, D)
    dy = rng.normal(0, 1, (Tn, Bn, out_features(cfg)))
    h0, dstate = make_state(cfg, Bn, rng), make_state(cfg, Bn, rng)
    lengths = np.array([6, 0, 3, 5])
    y_r, s_r = ref.forward(cfg, params, x, h0=h0, lengths=lengths)
    grads, dx, dh0 = ref.gradients(cfg, params, x, dy, h0=h0, lengths=lengths, dstate=dstate)
    y_b, s_b, grads_b, dx_b, dh0_b = bptt(cfg, params, x, dy, h0, lengths, dstate)

    def close(a, b, what):
        scale = max(np.max(np.abs(b)), 1e-300)
        assert np.max(np.abs(a - b)) <= BPTT_RTOL * scale, what

    close(y_r, y_b, "y")
    close(s_r, s_b, "state")
    for k in params:
        close(grads[k], grads_b[k], k)
    close(dx, dx_b, "dx")
    close(dh0, dh0_b, "dh0")


# --------------------------------------------------------------------------
# Padding: never read, output exactly zero

PAD_MODULES = {
    "layer": layer_cfg(3, 4, f="relu"),
    "layer-reverse-softmax": layer_cfg(3, 4, 2, g="softmax", reverse=True),
    "bi-mul": bilayer_cfg(3, 3, 2, merge="mul", g="tanh"),
    "bi-concat": bilayer_cfg(3, 3, merge="concat", f="sigmoid"),
    "stack": stack_cfg(layer_cfg(3, 3, reverse=True), bilayer_cfg(3, 2, merge="sum")),
}


@pytest.mark.parametrize("name", list(PAD_MODULES))
def test_padding_is_never_read(name):
    cfg = PAD_MODULES[name]
    rng = np.random.default_rng(list(PAD_MODULES).index(name) + 60)
    Tn, Bn = 5, 4
    lengths = np.array([5, 0, 2, 1])
    pad = np.arange(Tn)[:, None] >= lengths[None, :]          # (T, B)
    params = make_params(rng, cfg)
    D = cfg["input_size"] if cfg["type"] != "Stack" else cfg["layers"][0]["input_size"]
    x0 = random_x(rng, Tn, Bn, D)
    dy0 = rng.normal(0, 1, (Tn, Bn, out_features(cfg)))
    x0[pad], dy0[pad] = 0.0, 0.0
    x_nan, dy_nan = x0.copy(), dy0.copy()
    x_nan[pad], dy_nan[pad] = np.nan, np.nan
    h0, dstate = make_state(cfg, Bn, rng), make_state(cfg, Bn, rng)

    y0, s0 = ref.forward(cfg, params, x0, h0=h0, lengths=lengths)
    y1, s1 = ref.forward(cfg, params, x_nan, h0=h0, lengths=lengths)
    g0 = ref.gradients(cfg, params, x0, dy0, h0=h0, lengths=lengths, dstate=dstate)
    g1 = ref.gradients(cfg, params, x_nan, dy_nan, h0=h0, lengths=lengths, dstate=dstate)

    assert np.array_equal(y0, y1)
    assert np.all(y1[pad] == 0.0)
    assert not np.isnan(y1).any()
    for a, b in zip(leaves(s0), leaves(s1)):
        assert np.array_equal(a, b)
    for k in params:
        assert np.array_equal(g0[0][k], g1[0][k]) and np.all(np.isfinite(g1[0][k])), k
    assert np.array_equal(g0[1], g1[1])
    assert np.all(g1[1][pad] == 0.0)                       # nothing flows into padding
    for a, b in zip(leaves(g0[2]), leaves(g1[2])):
        assert np.array_equal(a, b)
    # Finite garbage in the padding changes nothing either.
    x_big, dy_big = x0.copy(), dy0.copy()
    x_big[pad], dy_big[pad] = 1e300, -1e300
    g2 = ref.gradients(cfg, params, x_big, dy_big, h0=h0, lengths=lengths, dstate=dstate)
    for k in params:
        assert np.array_equal(g0[0][k], g2[0][k])


@pytest.mark.parametrize("cfg", [layer_cfg(2, 3), layer_cfg(2, 3, 2, reverse=True),
                                 bilayer_cfg(2, 3, merge="concat")],
                         ids=["layer", "reverse", "bilayer"])
def test_zero_length_keeps_h0(cfg):
    rng = np.random.default_rng(70)
    Tn, Bn = 3, 3
    lengths = np.array([0, 3, 0])
    params = make_params(rng, cfg)
    x = random_x(rng, Tn, Bn, 2)
    h0, dstate = make_state(cfg, Bn, rng), make_state(cfg, Bn, rng)
    dy = rng.normal(0, 1, (Tn, Bn, out_features(cfg)))
    y, state = ref.forward(cfg, params, x, h0=h0, lengths=lengths)
    _, dx, dh0 = ref.gradients(cfg, params, x, dy, h0=h0, lengths=lengths, dstate=dstate)
    for b in (0, 2):
        assert np.all(y[:, b] == 0.0)
        assert np.all(dx[:, b] == 0.0)
        for h, s, d, ds in zip(leaves(h0), leaves(state), leaves(dh0), leaves(dstate)):
            assert np.array_equal(s[b], h[b])                 # h_last == h0
            assert np.array_equal(d[b], ds[b])                # dL/dh0 == dL/dh_last
    assert np.all(y[:, 1] != 0.0)


# --------------------------------------------------------------------------
# Reverse = forward over each sequence's valid prefix, reversed in time

@pytest.mark.parametrize("g", [None, "softmax"])
def test_reverse_is_forward_on_reversed_prefix(g):
    rng = np.random.default_rng([80, g is None])
    Tn, Bn, D, H = 5, 4, 3, 3
    O = None if g is None else 2
    cfg_r = layer_cfg(D, H, O, g=g or "identity", reverse=True)
    cfg_f = dict(cfg_r, reverse=False)
    params = make_params(rng, cfg_r)
    lengths = np.array([5, 0, 3, 1])
    x = random_x(rng, Tn, Bn, D)
    dy = rng.normal(0, 1, (Tn, Bn, out_features(cfg_r)))
    h0, dstate = make_state(cfg_r, Bn, rng), make_state(cfg_r, Bn, rng)

    y, state = ref.forward(cfg_r, params, x, h0=h0, lengths=lengths)
    grads, dx, dh0 = ref.gradients(cfg_r, params, x, dy, h0=h0, lengths=lengths, dstate=dstate)

    total = {k: np.zeros_like(v) for k, v in params.items()}
    for b, n in enumerate(lengths):
        if n == 0:
            assert np.all(y[:, b] == 0.0) and np.array_equal(state[b], h0[b])
            assert np.array_equal(dh0[b], dstate[b])
            continue
        xb = x[:n, b:b + 1][::-1]
        yb, sb = ref.forward(cfg_f, params, xb, h0=h0[b:b + 1])
        np.testing.assert_allclose(y[:n, b], yb[::-1, 0], rtol=1e-13, atol=1e-15)
        assert np.all(y[n:, b] == 0.0)
        np.testing.assert_allclose(state[b], sb[0], rtol=1e-13, atol=1e-15)
        gb, dxb, dh0b = ref.gradients(cfg_f, params, xb, dy[:n, b:b + 1][::-1],
                                      h0=h0[b:b + 1], dstate=dstate[b:b + 1])
        for k in total:
            total[k] += gb[k]
        np.testing.assert_allclose(dx[:n, b], dxb[::-1, 0], rtol=1e-12, atol=1e-14)
        assert np.all(dx[n:, b] == 0.0)
        np.testing.assert_allclose(dh0[b], dh0b[0], rtol=1e-12, atol=1e-14)
    for k in params:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------
# Smaller facts

def test_softmax_is_stable_and_normalised():
    rng = np.random.default_rng(90)
    cfg = layer_cfg(2, 3, 4, g="softmax")
    params = make_params(rng, cfg)
    params["W_hy"] *= 1e4                          # logits of order 1e4: exp would overflow
    y, _ = ref.forward(cfg, params, random_x(rng, 3, 2, 2))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-14)


def test_merges_combine_directions():
    rng = np.random.default_rng(91)
    base = bilayer_cfg(2, 3)
    params = make_params(rng, base)
    x, lengths = random_x(rng, 4, 2, 2), np.array([4, 2])
    h0 = make_state(base, 2, rng)
    fwd = {k[4:]: v for k, v in params.items() if k.startswith("fwd.")}
    bwd = {k[4:]: v for k, v in params.items() if k.startswith("bwd.")}
    yf, hf = ref.forward(layer_cfg(2, 3), fwd, x, h0=h0[0], lengths=lengths)
    yb, hb = ref.forward(layer_cfg(2, 3, reverse=True), bwd, x, h0=h0[1], lengths=lengths)
    expect = {"concat": np.concatenate([yf, yb], -1), "sum": yf + yb,
              "mean": (yf + yb) / 2, "mul": yf * yb}
    for merge in MERGES:
        y, (sf, sb) = ref.forward(dict(base, merge=merge), params, x, h0=h0, lengths=lengths)
        np.testing.assert_array_equal(y, expect[merge])
        np.testing.assert_array_equal(sf, hf)
        np.testing.assert_array_equal(sb, hb)


def test_inputs_are_not_modified_and_dtypes():
    rng = np.random.default_rng(92)
    cfg = stack_cfg(layer_cfg(3, 2), bilayer_cfg(2, 2, merge="mul"))
    params = {k: v.astype(np.float32) for k, v in make_params(rng, cfg).items()}
    x = rng.normal(0, 1, (3, 2, 3)).astype(np.float32)
    dy = rng.normal(0, 1, (3, 2, 2))
    h0, dstate = make_state(cfg, 2, rng), make_state(cfg, 2, rng)
    copies = [{k: v.copy() for k, v in params.items()}, x.copy(), dy.copy(),
              [a.copy() for a in leaves(h0)], [a.copy() for a in leaves(dstate)]]
    y, state = ref.forward(cfg, params, x, h0=h0, lengths=[3, 1])
    grads, dx, dh0 = ref.gradients(cfg, params, x, dy, h0=h0, lengths=[3, 1], dstate=dstate)
    for k in params:
        assert np.array_equal(params[k], copies[0][k]) and params[k].dtype == np.float32
        assert grads[k].dtype == np.float64
    assert np.array_equal(x, copies[1]) and np.array_equal(dy, copies[2])
    for a, b in zip(leaves(h0), copies[3]):
        assert np.array_equal(a, b)
    for a, b in zip(leaves(dstate), copies[4]):
        assert np.array_equal(a, b)
    assert y.dtype == dx.dtype == np.float64
    check_structure(cfg, state, 2)
    check_structure(cfg, dh0, 2)
    # Boolean and integer 3-D input is numeric input, converted.
    y_b, _ = ref.forward(cfg, params, x > 0)
    y_f, _ = ref.forward(cfg, params, (x > 0).astype(np.float64))
    assert np.array_equal(y_b, y_f)


def _bad(**kw):
    """A valid Layer call, with one thing replaced."""
    rng = np.random.default_rng(93)
    cfg = kw.pop("cfg", layer_cfg(2, 3))
    params = kw.pop("params", None) or make_params(rng, cfg)
    x = kw.pop("x", random_x(rng, 3, 2, 2))
    return cfg, params, x, kw


def _with(d, **kw):
    return dict(d, **kw)


_P = make_params(np.random.default_rng(0), layer_cfg(2, 3))
ERRORS = {
    "activation": dict(cfg=_with(layer_cfg(2, 3), activation="gelu")),
    "output activation": dict(cfg=layer_cfg(2, 3, 2, g="softplus")),
    "g without projection": dict(cfg=layer_cfg(2, 3, None, g="softmax")),
    "merge": dict(cfg=bilayer_cfg(2, 3, merge="max")),
    "type": dict(cfg=_with(layer_cfg(2, 3), type="GRU")),
    "no type": dict(cfg={k: v for k, v in layer_cfg(2, 3).items() if k != "type"}, params=_P),
    "nested stack": dict(cfg=stack_cfg(stack_cfg(layer_cfg(2, 3)))),
    "stack size mismatch": dict(cfg=stack_cfg(layer_cfg(2, 3), layer_cfg(2, 3))),
    "empty stack": dict(cfg=stack_cfg(), params={"x": 1}),
    "bias mismatch": dict(params={k: v for k, v in _P.items() if k != "b_h"}),
    "extra param": dict(params=_with(_P, **{"fwd.W_xh": _P["W_xh"]})),
    "missing W_hh": dict(params={"W_xh": _P["W_xh"]}),
    "size mismatch": dict(cfg=_with(layer_cfg(2, 3), input_size=5), params=_P),
    "output_size mismatch": dict(cfg=layer_cfg(2, 3, 4), params=_P),
    "token id = D": dict(x=np.full((3, 2), 2)),
    "token id < 0": dict(x=np.full((3, 2), -1)),
    "2-D float x": dict(x=np.zeros((3, 2))),
    "wrong D": dict(x=np.zeros((3, 2, 4))),
    "T = 0": dict(x=np.zeros((0, 2, 2))),
    "B = 0": dict(x=np.zeros((3, 0, 2))),
    "NaN in valid x": dict(x=np.array([[[np.nan, 0.0]] * 2] * 3)),
    "inf in h0": dict(h0=np.full((2, 3), np.inf)),
    "h0 shape": dict(h0=np.zeros((3, 3))),
    "length > T": dict(lengths=[4, 1]),
    "length < 0": dict(lengths=[-1, 1]),
    "float lengths": dict(lengths=[1.0, 2.0]),
    "lengths shape": dict(lengths=[1, 2, 3]),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors(name):
    cfg, params, x, kw = _bad(**ERRORS[name])
    with pytest.raises(ValueError):
        ref.forward(cfg, params, x, **kw)
    with pytest.raises(ValueError):
        ref.gradients(cfg, params, x, np.zeros((3, 2, 3)), **kw)


@pytest.mark.parametrize("what", ["nan dy", "inf dstate", "dy shape", "bilayer dstate"])
def test_gradient_input_errors(what):
    rng = np.random.default_rng(94)
    cfg = layer_cfg(2, 3)
    params = make_params(rng, cfg)
    x, dy = random_x(rng, 3, 2, 2), np.zeros((3, 2, 3))
    kw = {}
    if what == "nan dy":
        dy[0, 0, 0] = np.nan                 # a valid position
    elif what == "inf dstate":
        kw["dstate"] = np.full((2, 3), -np.inf)
    elif what == "dy shape":
        dy = np.zeros((3, 2, 4))
    else:
        cfg = bilayer_cfg(2, 3)
        params = make_params(rng, cfg)
        dy = np.zeros((3, 2, 6))
        kw["dstate"] = np.zeros((2, 3))      # not a pair
    with pytest.raises(ValueError):
        ref.gradients(cfg, params, x, dy, **kw)
