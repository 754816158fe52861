"""Tests for crnn.optim: every optimizer against updates written out with scalar
arithmetic, state_dict round trips, argument checks, gradient clipping."""

import copy
import io
import json
import math

import numpy as np
import pytest

from crnn import optim
from crnn.optim import (
    SGD,
    Adagrad,
    Adam,
    RMSprop,
    clip_grad_norm,
    clip_grad_value,
    optimizer_from_state,
)


class FakeModule:
    """The smallest thing an optimizer acts on: .params and .grads dicts."""

    def __init__(self, dtype=np.float64):
        self.params = {
            "W": np.array([[1.0, -2.0], [0.5, 0.0]], dtype=dtype),
            "b": np.array([0.25, -0.75, 3.0], dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


class FakeModuleWithZeroGrad(FakeModule):
    def __init__(self):
        super().__init__()
        self.zero_grad_calls = 0

    def zero_grad(self):
        self.zero_grad_calls += 1


def grads_at(k):
    """A fixed gradient for step k (0-based), changing sign so that momentum matters."""
    rng = np.random.default_rng(100 + k)
    return {"W": rng.normal(size=(2, 2)), "b": rng.normal(size=3)}


def set_grads(module, grads):
    for k, g in grads.items():
        module.grads[k][...] = g          # in place: the arrays are the live storage


# --------------------------------------------------------------------------
# scalar references, one parameter element at a time (torch.optim's documented algorithms)

def ref_sgd(p, gs, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    b, out = None, []
    for g in gs:
        g = g + weight_decay * p
        if momentum != 0:
            b = g if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
        out.append(p)
    return out


def ref_adagrad(p, gs, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    s, out = initial_accumulator_value, []
    for t, g in enumerate(gs, start=1):
        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (math.sqrt(s) + eps)
        out.append(p)
    return out


def ref_rmsprop(p, gs, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    v = m = b = 0.0
    out = []
    for g in gs:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            m = alpha * m + (1 - alpha) * g
            d = math.sqrt(v - m * m) + eps
        else:
            d = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / d
            p = p - lr * b
        else:
            p = p - lr * g / d
        out.append(p)
    return out


def ref_adam(p, gs, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    b1, b2 = betas
    m = v = vmax = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * (m / (1 - b1 ** t)) / (math.sqrt(vhat) + eps)
        out.append(p)
    return out


REFS = {SGD: ref_sgd, Adagrad: ref_adagrad, RMSprop: ref_rmsprop, Adam: ref_adam}

CASES = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.5)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.1, weight_decay=0.01)),
    (SGD, dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1)),
    (Adagrad, dict()),
    (Adagrad, dict(lr=0.5, lr_decay=0.1)),
    (Adagrad, dict(lr=0.5, weight_decay=0.1, initial_accumulator_value=0.3, eps=1e-3)),
    (RMSprop, dict()),
    (RMSprop, dict(lr=0.05, alpha=0.9, centered=True)),
    (RMSprop, dict(lr=0.05, momentum=0.8)),
    (RMSprop, dict(lr=0.05, alpha=0.5, eps=1e-3, momentum=0.8, centered=True, weight_decay=0.1)),
    (Adam, dict()),
    (Adam, dict(lr=0.1, weight_decay=0.1)),
    (Adam, dict(lr=0.1, betas=(0.5, 0.6), eps=1e-3)),
    (Adam, dict(lr=0.1, betas=(0.9, 0.5), amsgrad=True)),
]
IDS = [f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for cls, kw in CASES]


def reference_trajectory(cls, kw, p0, n_steps):
    """{name: (n_steps, *shape)} from the scalar reference, element by element."""
    gs = [grads_at(k) for k in range(n_steps)]
    out = {}
    for name, p in p0.items():
        traj = np.empty((n_steps,) + p.shape)
        for i in np.ndindex(p.shape):
            traj[(slice(None),) + i] = REFS[cls](float(p[i]), [float(g[name][i]) for g in gs], **kw)
        out[name] = traj
    return out


# --------------------------------------------------------------------------
# updates

def test_sgd_written_out():
    """p = 1, gradients 0.5, 0.2, -0.4, lr = 0.1, by hand."""
    def run(**kw):
        m = FakeModule()
        m.params = {"p": np.array([1.0])}
        m.grads = {"p": np.array([0.0])}
        opt = SGD(m, lr=0.1, **kw)
        out = []
        for g in (0.5, 0.2, -0.4):
            m.grads["p"][0] = g
            opt.step()
            out.append(m.params["p"][0])
        return out

    # plain: 1 - 0.05 = 0.95; - 0.02 = 0.93; + 0.04 = 0.97
    np.testing.assert_allclose(run(), [0.95, 0.93, 0.97], rtol=1e-15)
    # momentum 0.9: buffers 0.5; 0.45 + 0.2 = 0.65; 0.585 - 0.4 = 0.185
    np.testing.assert_allclose(run(momentum=0.9), [0.95, 0.885, 0.8665], rtol=1e-15)
    # nesterov: steps use g + 0.9 b = 0.95, 0.785, -0.2335
    np.testing.assert_allclose(run(momentum=0.9, nesterov=True), [0.905, 0.8265, 0.84985], rtol=1e-15)
    # weight decay 0.1: g + 0.1 p = 0.6 -> 0.94; 0.2 + 0.094 = 0.294 -> 0.9106
    np.testing.assert_allclose(run(weight_decay=0.1)[:2], [0.94, 0.9106], rtol=1e-15)


def test_adam_first_step_written_out():
    """Step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected m/sqrt(v) = sign(g)."""
    m = FakeModule()
    m.params = {"p": np.array([1.0, -1.0])}
    m.grads = {"p": np.array([0.5, -2.0])}
    Adam(m, lr=0.01, eps=0.0).step()
    np.testing.assert_allclose(m.params["p"], [0.99, -0.99], rtol=1e-15)


def test_adagrad_written_out():
    """Accumulator 0.25, then 0.25 + 1 = 1.25; lr 0.1, lr_decay 1 halves the 2nd step."""
    m = FakeModule()
    m.params = {"p": np.array([1.0])}
    m.grads = {"p": np.array([0.5])}
    opt = Adagrad(m, lr=0.1, lr_decay=1.0, eps=0.0)
    opt.step()                                     # 1 - 0.1 * 0.5 / 0.5 = 0.9
    np.testing.assert_allclose(m.params["p"], [0.9], rtol=1e-15)
    m.grads["p"][0] = 1.0
    opt.step()                                     # 0.9 - 0.05 * 1 / sqrt(1.25)
    np.testing.assert_allclose(m.params["p"], [0.9 - 0.05 / math.sqrt(1.25)], rtol=1e-15)


def test_rmsprop_written_out():
    """alpha 0.5: v = 0.5 * 4 = 2, then 1 + 0.5 = 1.5."""
    m = FakeModule()
    m.params = {"p": np.array([1.0])}
    m.grads = {"p": np.array([2.0])}
    opt = RMSprop(m, lr=0.1, alpha=0.5, eps=0.0)
    opt.step()                                     # 1 - 0.1 * 2 / sqrt(2)
    np.testing.assert_allclose(m.params["p"], [1 - 0.2 / math.sqrt(2)], rtol=1e-15)
    m.grads["p"][0] = 1.0
    opt.step()
    np.testing.assert_allclose(m.params["p"], [1 - 0.2 / math.sqrt(2) - 0.1 / math.sqrt(1.5)], rtol=1e-15)


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_matches_scalar_reference(cls, kw):
    n = 4
    module = FakeModule()
    p0 = {k: v.copy() for k, v in module.params.items()}
    expected = reference_trajectory(cls, kw, p0, n)
    storage = dict(module.params)
    opt = cls(module, **kw)
    for k in range(n):
        grads = grads_at(k)
        set_grads(module, grads)
        opt.step()
        for name in module.params:
            np.testing.assert_allclose(module.params[name], expected[name][k], rtol=1e-13, atol=1e-15)
        for name, g in grads.items():                       # step never touches grads
            np.testing.assert_array_equal(module.grads[name], g)
    for name, a in module.params.items():                   # updated in place, never rebound
        assert a is storage[name]
    assert opt.step_count == n


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_float32_stays_float32(cls, kw):
    n = 3
    m64, m32 = FakeModule(), FakeModule(np.float32)
    o64, o32 = cls(m64, **kw), cls(m32, **kw)
    for k in range(n):
        set_grads(m64, grads_at(k))
        set_grads(m32, grads_at(k))
        o64.step()
        o32.step()
    for name in m32.params:
        assert m32.params[name].dtype == np.float32
        np.testing.assert_allclose(m32.params[name], m64.params[name], rtol=1e-4, atol=1e-5)
    assert all(a.dtype == np.float32 for a in o32.state_dict()["arrays"].values())


def test_lr_is_settable():
    m = FakeModule()
    m.params = {"p": np.array([1.0])}
    m.grads = {"p": np.array([1.0])}
    opt = SGD(m, lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.hyperparams["lr"] == 0.5
    opt.step()
    assert m.params["p"][0] == 0.5
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.lr = -1
    assert opt.lr == 0.5
    assert "lr=0.5" in repr(opt)


def test_zero_grad():
    m = FakeModule()
    set_grads(m, grads_at(0))
    arrays = dict(m.grads)
    Adam(m).zero_grad()
    for name, g in m.grads.items():
        assert g is arrays[name] and not np.any(g)
    mz = FakeModuleWithZeroGrad()
    set_grads(mz, grads_at(0))
    SGD(mz, lr=0.1).zero_grad()
    assert mz.zero_grad_calls == 1 and np.any(mz.grads["W"])    # the module's own method is used


# --------------------------------------------------------------------------
# state_dict

def run_steps(opt, module, ks):
    for k in ks:
        set_grads(module, grads_at(k))
        opt.step()


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_state_dict_round_trip_continues_bit_identically(cls, kw):
    m1 = FakeModule()
    o1 = cls(m1, **kw)
    run_steps(o1, m1, range(2))
    sd = o1.state_dict()

    # through JSON + .npz, as crnn.save would store it
    config = json.loads(json.dumps(sd["config"]))
    buf = io.BytesIO()
    np.savez(buf, **sd["arrays"])
    buf.seek(0)
    with np.load(buf) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == set(sd["arrays"])
    assert config["type"] == cls.__name__ and config["step"] == 2

    m2 = copy.deepcopy(m1)
    o2 = optimizer_from_state(m2, {"config": config, "arrays": arrays})
    assert type(o2) is cls and o2.hyperparams == o1.hyperparams and o2.step_count == 2

    m3 = copy.deepcopy(m1)
    o3 = cls(m3, lr=0.123) if cls is SGD else cls(m3)           # other hyper-parameters ...
    o3.load_state_dict(sd)                                      # ... are restored from sd
    assert o3.hyperparams == o1.hyperparams

    before = {k: v.copy() for k, v in sd["arrays"].items()}
    for o, m in ((o1, m1), (o2, m2), (o3, m3)):
        run_steps(o, m, range(2, 5))
    for name in m1.params:
        np.testing.assert_array_equal(m2.params[name], m1.params[name])
        np.testing.assert_array_equal(m3.params[name], m1.params[name])
    for k, v in o1.state_dict()["arrays"].items():
        np.testing.assert_array_equal(o2.state_dict()["arrays"][k], v)
    for k, v in sd["arrays"].items():                           # state_dict() returned copies
        np.testing.assert_array_equal(v, before[k])


def test_state_dict_contents():
    opt = Adam(FakeModule(), lr=0.01, amsgrad=True)
    sd = opt.state_dict()
    assert sd["config"] == {"type": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                            "weight_decay": 0.0, "amsgrad": True, "step": 0}
    assert set(sd["arrays"]) == {f"{b}.{p}" for b in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
                                 for p in ("W", "b")}
    assert SGD(FakeModule(), lr=0.1).state_dict()["arrays"] == {}
    assert set(SGD(FakeModule(), lr=0.1, momentum=0.9).state_dict()["arrays"]) == {
        "momentum_buffer.W", "momentum_buffer.b"}
    sd = Adagrad(FakeModule(), initial_accumulator_value=0.5).state_dict()
    assert np.all(sd["arrays"]["sum.W"] == 0.5)


def bad_state_dicts():
    """(description, mutate(sd) -> sd, expected error type, message pattern)."""
    def edit_config(**changes):
        def f(sd):
            sd["config"].update(changes)
            return sd
        return f

    def drop_config(key):
        def f(sd):
            del sd["config"][key]
            return sd
        return f

    def edit_arrays(fn):
        def f(sd):
            fn(sd["arrays"])
            return sd
        return f

    return [
        ("wrong type", edit_config(type="SGD"), ValueError, "optimizer type 'SGD'"),
        ("missing config key", drop_config("eps"), ValueError, r"missing keys \['eps'\]"),
        ("unknown config key", edit_config(momentum=0.9), ValueError, r"unknown keys \['momentum'\]"),
        ("negative step", edit_config(step=-1), ValueError, "step"),
        ("float step", edit_config(step=1.5), ValueError, "step"),
        ("bad lr", edit_config(lr=-1.0), ValueError, "lr must be >= 0"),
        ("bad betas", edit_config(betas=[0.9, 1.0]), ValueError, r"betas\[1\]"),
        ("missing array", edit_arrays(lambda a: a.pop("exp_avg.W")), ValueError, "missing.*exp_avg.W"),
        ("unknown array", edit_arrays(lambda a: a.update(extra=np.zeros(1))), ValueError, "unknown.*extra"),
        ("wrong shape", edit_arrays(lambda a: a.update({"exp_avg.b": np.zeros(4)})), ValueError,
         r"exp_avg.b.*shape \(3,\)"),
        ("wrong dtype", edit_arrays(lambda a: a.update({"exp_avg.b": np.zeros(3, np.float32)})), ValueError,
         "dtype float64"),
        ("not an array", edit_arrays(lambda a: a.update({"exp_avg.b": [0.0, 0.0, 0.0]})), ValueError,
         "exp_avg.b"),
        ("amsgrad without its buffer", edit_config(amsgrad=True), ValueError, "missing.*max_exp_avg_sq"),
        ("extra top-level key", lambda sd: {**sd, "x": 1}, ValueError, "exactly the keys"),
        ("not a dict", lambda sd: [sd], ValueError, "exactly the keys"),
        ("config not a dict", lambda sd: {"config": [], "arrays": sd["arrays"]}, TypeError, "config"),
        ("arrays not a dict", lambda sd: {"config": sd["config"], "arrays": []}, TypeError, "arrays"),
    ]


@pytest.mark.parametrize("what,mutate,exc,pattern", bad_state_dicts(), ids=[b[0] for b in bad_state_dicts()])
def test_load_state_dict_refuses(what, mutate, exc, pattern):
    m = FakeModule()
    opt = Adam(m, lr=0.01)
    run_steps(opt, m, range(2))
    sd = copy.deepcopy(opt.state_dict())
    before = opt.state_dict()
    with pytest.raises(exc, match=pattern):
        opt.load_state_dict(mutate(sd))
    after = opt.state_dict()                              # nothing changed on failure
    assert after["config"] == before["config"]
    for k, v in before["arrays"].items():
        np.testing.assert_array_equal(after["arrays"][k], v)


def test_load_state_dict_refuses_other_module():
    sd = Adam(FakeModule()).state_dict()
    other = FakeModule()
    other.params["c"] = np.zeros(2)
    other.grads["c"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing \['exp_avg.c', 'exp_avg_sq.c'\]"):
        Adam(other).load_state_dict(sd)
    f32 = FakeModule(np.float32)
    with pytest.raises(ValueError, match="dtype float32"):
        Adam(f32).load_state_dict(sd)


def test_optimizer_from_state_refuses():
    sd = Adam(FakeModule()).state_dict()
    with pytest.raises(ValueError, match="must be one of"):
        optimizer_from_state(FakeModule(), {"config": {**sd["config"], "type": "LBFGS"}, "arrays": {}})
    with pytest.raises(ValueError, match="'config' dict"):
        optimizer_from_state(FakeModule(), {"arrays": {}})
    with pytest.raises(ValueError, match=r"missing keys \['lr'\]"):
        cfg = SGD(FakeModule(), lr=0.1).state_dict()["config"]
        del cfg["lr"]
        optimizer_from_state(FakeModule(), {"config": cfg, "arrays": {}})


# --------------------------------------------------------------------------
# argument checks

BAD_HYPER = [
    (SGD, dict(lr=-0.1), ValueError, "lr must be >= 0"),
    (SGD, dict(lr=float("nan")), ValueError, "lr must be finite"),
    (SGD, dict(lr="0.1"), TypeError, "lr must be a real number"),
    (SGD, dict(lr=True), TypeError, "lr must be a real number"),
    (SGD, dict(lr=0.1, momentum=-0.5), ValueError, "momentum must be >= 0"),
    (SGD, dict(lr=0.1, dampening=1.5), ValueError, "dampening must be <= 1"),
    (SGD, dict(lr=0.1, nesterov=True), ValueError, "nesterov=True requires momentum > 0"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening = 0"),
    (SGD, dict(lr=0.1, nesterov="yes"), TypeError, "nesterov must be True or False"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), ValueError, "weight_decay must be >= 0"),
    (Adagrad, dict(lr=-1), ValueError, "lr must be >= 0"),
    (Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay must be >= 0"),
    (Adagrad, dict(initial_accumulator_value=-1), ValueError, "initial_accumulator_value must be >= 0"),
    (Adagrad, dict(eps=-1e-10), ValueError, "eps must be >= 0"),
    (Adagrad, dict(weight_decay=float("inf")), ValueError, "weight_decay must be finite"),
    (RMSprop, dict(alpha=-0.1), ValueError, "alpha must be >= 0"),
    (RMSprop, dict(alpha=1.5), ValueError, "alpha must be <= 1"),
    (RMSprop, dict(eps=-1.0), ValueError, "eps must be >= 0"),
    (RMSprop, dict(momentum=-0.1), ValueError, "momentum must be >= 0"),
    (RMSprop, dict(weight_decay=-0.1), ValueError, "weight_decay must be >= 0"),
    (RMSprop, dict(centered=1), TypeError, "centered must be True or False"),
    (Adam, dict(lr=-1e-3), ValueError, "lr must be >= 0"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be < 1"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be >= 0"),
    (Adam, dict(betas=(0.9,)), TypeError, "betas must be a pair"),
    (Adam, dict(betas=0.9), TypeError, "betas must be a pair"),
    (Adam, dict(eps=-1e-8), ValueError, "eps must be >= 0"),
    (Adam, dict(weight_decay=-1.0), ValueError, "weight_decay must be >= 0"),
    (Adam, dict(amsgrad="no"), TypeError, "amsgrad must be True or False"),
]


@pytest.mark.parametrize("cls,kw,exc,pattern", BAD_HYPER,
                         ids=[f"{c.__name__}-{list(k)[-1]}={k[list(k)[-1]]!r}" for c, k, _, _ in BAD_HYPER])
def test_bad_hyperparameters_raise(cls, kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cls(FakeModule(), **kw)


def test_numpy_scalars_are_accepted():
    opt = Adam(FakeModule(), lr=np.float32(0.5), betas=[np.float64(0.8), 0.9], amsgrad=np.bool_(True))
    assert opt.hyperparams == {"lr": 0.5, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": True}
    assert type(opt.lr) is float
    json.dumps(opt.state_dict()["config"])
    assert SGD(FakeModule(), lr=np.int64(1)).lr == 1.0


def test_bad_modules_raise():
    class NoGrads:
        params = {"w": np.zeros(2)}

    with pytest.raises(TypeError, match=r"\.params and \.grads"):
        SGD(NoGrads(), lr=0.1)
    with pytest.raises(TypeError, match=r"\.params and \.grads"):
        SGD(object(), lr=0.1)
    m = FakeModule()
    del m.grads["b"]
    with pytest.raises(ValueError, match="same keys"):
        SGD(m, lr=0.1)
    m = FakeModule()
    m.grads["b"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"module.grads\['b'\] must be an ndarray of shape \(3,\)"):
        SGD(m, lr=0.1)
    m = FakeModule()
    m.grads["b"] = m.grads["b"].astype(np.float32)
    with pytest.raises(ValueError, match="dtype float64"):
        SGD(m, lr=0.1)
    m = FakeModule()
    m.params["b"] = np.zeros(3, dtype=int)
    with pytest.raises(TypeError, match=r"module.params\['b'\] must be a floating-point"):
        SGD(m, lr=0.1)
    m = FakeModule()
    m.params, m.grads = {}, {}
    with pytest.raises(ValueError, match="no parameters"):
        SGD(m, lr=0.1)


def test_step_refuses_changed_module_without_updating():
    m = FakeModule()
    set_grads(m, grads_at(0))
    opt = SGD(m, lr=0.1)
    p_before = {k: v.copy() for k, v in m.params.items()}
    m.grads["b"] = np.zeros(5)                       # "W" would be updated first if unchecked
    with pytest.raises(ValueError, match=r"module.grads\['b'\]"):
        opt.step()
    for k, v in m.params.items():
        np.testing.assert_array_equal(v, p_before[k])
    assert opt.step_count == 0
    del m.params["b"]
    with pytest.raises(ValueError, match="no longer has parameter 'b'"):
        opt.step()


# --------------------------------------------------------------------------
# clipping

def grad_module(*arrays, dtype=np.float64):
    m = FakeModule()
    m.grads = {f"g{i}": np.array(a, dtype=dtype) for i, a in enumerate(arrays)}
    return m


def test_clip_grad_norm_by_hand():
    m = grad_module([3.0, 0.0], [[4.0]])             # norm 5
    g0, g1 = m.grads["g0"], m.grads["g1"]
    norm = clip_grad_norm(m, 1.0)
    assert norm == 5.0 and type(norm) is float
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(m.grads["g0"], [3.0 * coef, 0.0])
    np.testing.assert_array_equal(m.grads["g1"], [[4.0 * coef]])
    assert m.grads["g0"] is g0 and m.grads["g1"] is g1   # in place

    for max_norm in (5.0, 10.0, float("inf")):           # not above max_norm: untouched
        m = grad_module([3.0, 0.0], [[4.0]])
        assert clip_grad_norm(m, max_norm) == 5.0
        np.testing.assert_array_equal(m.grads["g0"], [3.0, 0.0])
        np.testing.assert_array_equal(m.grads["g1"], [[4.0]])

    m = grad_module([3.0, 0.0], [[4.0]])
    clip_grad_norm(m, 0)
    assert not np.any(m.grads["g0"]) and not np.any(m.grads["g1"])


def test_clip_grad_norm_float32_in_float64():
    m = grad_module([3e20, 4e20], dtype=np.float32)     # squares overflow float32
    norm = clip_grad_norm(m, 1.0)
    np.testing.assert_allclose(norm, 5e20, rtol=1e-7)
    assert m.grads["g0"].dtype == np.float32
    np.testing.assert_allclose(m.grads["g0"], [0.6, 0.8], rtol=1e-6)


def test_clip_grad_norm_huge_float64():
    m = grad_module([3e200], [4e200])                   # squares overflow float64
    norm = clip_grad_norm(m, 1.0)
    np.testing.assert_allclose(norm, 5e200, rtol=1e-15)
    np.testing.assert_allclose([m.grads["g0"][0], m.grads["g1"][0]], [0.6, 0.8], rtol=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_nonfinite_leaves_grads(bad):
    m = grad_module([3.0, bad], [4.0])
    norm = clip_grad_norm(m, 1.0)
    assert math.isnan(norm) if np.isnan(bad) else norm == math.inf
    np.testing.assert_array_equal(m.grads["g0"], [3.0, bad])
    np.testing.assert_array_equal(m.grads["g1"], [4.0])


def test_clip_grad_value_by_hand():
    m = grad_module([-3.0, 0.5, 2.0], [[np.nan, -0.25]])
    g0 = m.grads["g0"]
    assert clip_grad_value(m, 1.0) is None
    np.testing.assert_array_equal(m.grads["g0"], [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(m.grads["g1"], [[np.nan, -0.25]])
    assert m.grads["g0"] is g0
    m = grad_module([-3.0, 2.0], dtype=np.float32)
    clip_grad_value(m, 0.5)
    assert m.grads["g0"].dtype == np.float32
    np.testing.assert_array_equal(m.grads["g0"], [-0.5, 0.5])


@pytest.mark.parametrize("fn,name", [(clip_grad_norm, "max_norm"), (clip_grad_value, "clip_value")])
def test_clip_bad_arguments(fn, name):
    m = grad_module([1.0])
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        fn(m, -1.0)
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        fn(m, float("nan"))
    with pytest.raises(TypeError, match=f"{name} must be a real number"):
        fn(m, "1")
    with pytest.raises(TypeError, match=r"\.grads"):
        fn(object(), 1.0)
    m.grads["g0"] = [1.0]
    with pytest.raises(TypeError, match=r"module.grads\['g0'\]"):
        fn(m, 1.0)


def test_public_names():
    assert set(optim.__all__) == {"Optimizer", "SGD", "Adagrad", "RMSprop", "Adam",
                                  "optimizer_from_state", "clip_grad_norm", "clip_grad_value"}


# --------------------------------------------------------------------------
# against PyTorch, when it happens to be installed

@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_matches_torch(cls, kw):
    torch = pytest.importorskip("torch", reason="torch not installed")
    module = FakeModule()
    tparams = {k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
               for k, v in module.params.items()}
    topt = getattr(torch.optim, cls.__name__)(list(tparams.values()), foreach=False, **kw)
    opt = cls(module, **kw)
    for k in range(5):
        grads = grads_at(k)
        set_grads(module, grads)
        opt.step()
        for name, t in tparams.items():
            t.grad = torch.tensor(grads[name], dtype=torch.float64)
        topt.step()
        for name, t in tparams.items():
            np.testing.assert_allclose(module.params[name], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch", reason="torch not installed")
    grads = grads_at(0)
    m = grad_module(grads["W"], grads["b"])
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in (grads["W"], grads["b"])]
    for t, g in zip(ts, (grads["W"], grads["b"])):
        t.grad = torch.tensor(g)
    tnorm = torch.nn.utils.clip_grad_norm_(ts, 0.5)
    norm = clip_grad_norm(m, 0.5)
    np.testing.assert_allclose(norm, float(tnorm), rtol=1e-14)
    for t, g in zip(ts, m.grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)
