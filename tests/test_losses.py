"""Tests for crnn.losses: values and dy against central finite differences,
masking of padded steps, the probability and logit paths, many-to-one."""

import numpy as np
import pytest

from crnn import losses
from crnn.losses import (
    binary_cross_entropy,
    cross_entropy,
    last_step,
    many_to_one,
    mse,
    scatter_last,
)

T, B, F = 4, 5, 3
LENGTHS = {"none": None, "mixed": np.array([4, 0, 2, 1, 4])}   # includes 0 and T


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax_jvp(p, dp):
    """dL/dz from dL/dp through p = softmax(z): p * (dp - sum(p * dp))."""
    return p * (dp - np.sum(p * dp, axis=-1, keepdims=True))


def central_diff(f, y, h=1e-6):
    """d f / d y by central differences, entry by entry (float64)."""
    g = np.zeros_like(y)
    for i in np.ndindex(y.shape):
        yp, ym = y.copy(), y.copy()
        yp[i] += h
        ym[i] -= h
        g[i] = (f(yp) - f(ym)) / (2 * h)
    return g


def make_case(kind, seed=0):
    """(loss function, y, target, kwargs) for one loss and path, float64."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(T, B, F))
    if kind == "mse":
        return mse, z, rng.normal(size=(T, B, F)), {}
    if kind == "ce_prob":
        return cross_entropy, softmax(z), rng.integers(0, F, size=(T, B)), {"from_logits": False}
    if kind == "ce_logits":
        return cross_entropy, 3 * z, rng.integers(0, F, size=(T, B)), {"from_logits": True}
    if kind == "bce_prob":
        return binary_cross_entropy, rng.uniform(0.05, 0.95, size=(T, B, F)), rng.uniform(size=(T, B, F)), {}
    if kind == "bce_logits":
        return binary_cross_entropy, 3 * z, rng.uniform(size=(T, B, F)), {"from_logits": True}
    raise AssertionError(kind)


KINDS = ["mse", "ce_prob", "ce_logits", "bce_prob", "bce_logits"]


def padded(lengths):
    """(T, B) bool, True at padded steps."""
    lengths = np.full(B, T) if lengths is None else lengths
    return np.arange(T)[:, None] >= lengths[None, :]


# --------------------------------------------------------------------------
# gradients

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
def test_dy_matches_finite_differences(kind, reduction, lengths):
    fn, y, target, kw = make_case(kind)
    loss, dy = fn(y, target, lengths=lengths, reduction=reduction, **kw)
    assert isinstance(loss, float)
    assert dy.shape == y.shape and dy.dtype == y.dtype
    fd = central_diff(lambda v: fn(v, target, lengths=lengths, reduction=reduction, **kw)[0], y)
    np.testing.assert_allclose(dy, fd, rtol=1e-6, atol=1e-8)
    assert np.all(dy[padded(lengths)] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_mean_is_sum_over_count(kind):
    fn, y, target, kw = make_case(kind, seed=1)
    lengths = LENGTHS["mixed"]
    s, ds = fn(y, target, lengths=lengths, **kw)
    m, dm = fn(y, target, lengths=lengths, reduction="mean", **kw)
    count = lengths.sum() * (1 if fn is cross_entropy else F)
    np.testing.assert_allclose(m, s / count, rtol=1e-14)
    np.testing.assert_allclose(dm, ds / count, rtol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_padding_with_nan_changes_nothing(kind, reduction):
    fn, y, target, kw = make_case(kind, seed=2)
    lengths = LENGTHS["mixed"]
    pad = padded(lengths)
    loss, dy = fn(y, target, lengths=lengths, reduction=reduction, **kw)

    y_bad, t_bad = y.copy(), target.copy()
    y_bad[pad] = np.nan
    if fn is cross_entropy:
        t_bad[pad] = -7                      # integer garbage, out of range
    else:
        t_bad[pad] = np.nan
    y_bad[pad & (np.arange(B) == 0)[None, :]] = np.inf
    with np.errstate(all="raise"):           # NaN never enters arithmetic
        loss2, dy2 = fn(y_bad, t_bad, lengths=lengths, reduction=reduction, **kw)
    assert loss2 == loss
    np.testing.assert_array_equal(dy2, dy)
    assert np.all(dy2[pad] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_no_valid_step(kind):
    fn, y, target, kw = make_case(kind, seed=3)
    for reduction in ("sum", "mean"):
        loss, dy = fn(y, target, lengths=np.zeros(B, dtype=int), reduction=reduction, **kw)
        assert loss == 0.0
        assert not np.any(dy)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_keeps_dtype(kind):
    fn, y, target, kw = make_case(kind, seed=4)
    loss64, dy64 = fn(y, target, lengths=LENGTHS["mixed"], **kw)
    loss32, dy32 = fn(y.astype(np.float32), target, lengths=LENGTHS["mixed"], **kw)
    assert dy32.dtype == np.float32 and isinstance(loss32, float)
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
    np.testing.assert_allclose(dy32, dy64, rtol=1e-4, atol=1e-6)


def test_inputs_not_modified():
    fn, y, target, kw = make_case("ce_logits", seed=5)
    y0, t0 = y.copy(), target.copy()
    fn(y, target, lengths=LENGTHS["mixed"], **kw)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(target, t0)


# --------------------------------------------------------------------------
# values by hand

def test_mse_by_hand():
    y = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])             # (T=2, B=1, F=2)
    target = np.array([[[0.0, 0.0]], [[9.0, 9.0]]])
    loss, dy = mse(y, target, lengths=[1])
    assert loss == 5.0                                      # 1**2 + 2**2; step 1 is padding
    np.testing.assert_array_equal(dy, [[[2.0, 4.0]], [[0.0, 0.0]]])
    loss, dy = mse(y, target, lengths=[1], reduction="mean")
    assert loss == 2.5
    np.testing.assert_array_equal(dy, [[[1.0, 2.0]], [[0.0, 0.0]]])
    loss, _ = mse(y, target)                                # 5 + 36 + 25
    assert loss == 66.0


def test_cross_entropy_by_hand():
    y = np.array([[[0.25, 0.75]], [[0.5, 0.5]]])
    loss, dy = cross_entropy(y, np.array([[1], [0]]))
    np.testing.assert_allclose(loss, -np.log(0.75) - np.log(0.5), rtol=1e-15)
    np.testing.assert_allclose(dy, [[[0.0, -1 / 0.75]], [[-2.0, 0.0]]], rtol=1e-15)
    z = np.array([[[0.0, np.log(3.0)]]])                    # softmax = (1/4, 3/4)
    loss, dy = cross_entropy(z, np.array([[0]]), from_logits=True)
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(dy, [[[0.25 - 1, 0.75]]], rtol=1e-15)


def test_bce_by_hand():
    y = np.array([[[0.8, 0.3]]])
    t = np.array([[[1.0, 0.0]]])
    loss, dy = binary_cross_entropy(y, t)
    np.testing.assert_allclose(loss, -np.log(0.8) - np.log(0.7), rtol=1e-15)
    np.testing.assert_allclose(dy, [[[-1 / 0.8, 1 / 0.7]]], rtol=1e-15)
    loss, dy = binary_cross_entropy(np.zeros((1, 1, 2)), t, from_logits=True)
    np.testing.assert_allclose(loss, 2 * np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(dy, [[[-0.5, 0.5]]], rtol=1e-15)


def test_bce_saturated_probabilities_stay_finite():
    y = np.array([[[1.0, 0.0, 1.0]]])
    t = np.array([[[1.0, 0.0, 0.0]]])
    loss, dy = binary_cross_entropy(y, t)
    tiny = np.finfo(np.float64).tiny
    np.testing.assert_allclose(loss, -np.log(tiny), rtol=1e-15)  # only the wrong, saturated one counts
    assert np.all(np.isfinite(dy))
    np.testing.assert_array_equal(dy[0, 0, :2], [-1.0, 1.0])


def test_bce_logits_extreme_are_stable():
    z = np.array([[[800.0, -800.0, 40.0]]])
    loss, dy = binary_cross_entropy(z, np.array([[[1.0, 0.0, 1.0]]]), from_logits=True)
    assert np.isfinite(loss) and loss < 1e-16
    np.testing.assert_allclose(dy, [[[0.0, 0.0, 0.0]]], atol=1e-17)
    loss, _ = binary_cross_entropy(z, np.array([[[0.0, 1.0, 0.0]]]), from_logits=True)
    np.testing.assert_allclose(loss, 1640.0, rtol=1e-15)


# --------------------------------------------------------------------------
# probability path vs logit path

@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
def test_cross_entropy_probabilities_equal_logits(lengths):
    rng = np.random.default_rng(6)
    z = 2 * rng.normal(size=(T, B, F))
    target = rng.integers(0, F, size=(T, B))
    p = softmax(z)
    lp, dp = cross_entropy(p, target, lengths=lengths)
    lz, dz = cross_entropy(z, target, lengths=lengths, from_logits=True)
    np.testing.assert_allclose(lp, lz, rtol=1e-13)
    np.testing.assert_allclose(softmax_jvp(p, dp), dz, atol=1e-13)


def test_bce_probabilities_equal_logits():
    rng = np.random.default_rng(7)
    z = 2 * rng.normal(size=(T, B, F))
    t = rng.uniform(size=(T, B, F))
    p = sigmoid(z)
    lp, dp = binary_cross_entropy(p, t, lengths=LENGTHS["mixed"])
    lz, dz = binary_cross_entropy(z, t, lengths=LENGTHS["mixed"], from_logits=True)
    np.testing.assert_allclose(lp, lz, rtol=1e-13)
    np.testing.assert_allclose(dp * p * (1 - p), dz, atol=1e-14)


def test_cross_entropy_target_probability_underflow():
    """A target probability that underflows to 0 in float64, clamped to tiny as crnn's
    softmax layer does, still gives exactly softmax(z) - onehot through the softmax."""
    z = np.array([[[0.0, -800.0, 1.0], [2.0, -1000.0, -3.0]]])    # (T=1, B=2, F=3)
    target = np.array([[1, 1]])
    p = softmax(z)
    assert np.all(p[..., 1] == 0)                                   # underflowed
    onehot = np.zeros_like(z)
    onehot[..., 1] = 1
    expected = p - onehot

    tiny = np.finfo(np.float64).tiny
    p_clamped = np.maximum(p, tiny)
    loss, dy = cross_entropy(p_clamped, target)
    assert np.isfinite(loss) and np.all(np.isfinite(dy))
    np.testing.assert_array_equal(dy[..., 1], -1 / tiny)
    np.testing.assert_allclose(softmax_jvp(p_clamped, dy), expected, rtol=0, atol=1e-12)

    _, dz = cross_entropy(z, target, from_logits=True)
    np.testing.assert_allclose(dz, expected, rtol=0, atol=1e-15)

    # Without the layer's clamp the gradient through the softmax is lost entirely.
    _, dy0 = cross_entropy(p, target)
    assert np.all(softmax_jvp(p, dy0)[..., 1] == 0)


def test_float32_tiny_clamp():
    tiny32 = np.finfo(np.float32).tiny
    p = np.array([[[tiny32, 1.0]]], dtype=np.float32)
    loss, dy = cross_entropy(p, np.array([[0]]))
    assert dy.dtype == np.float32 and np.isfinite(dy).all()
    np.testing.assert_allclose(loss, -np.log(np.float64(tiny32)), rtol=1e-12)
    assert (p * dy)[0, 0, 0] == -1


# --------------------------------------------------------------------------
# many-to-one

def test_last_step_by_hand():
    y = np.arange(3 * 3 * 2, dtype=float).reshape(3, 3, 2)    # y[t, b] = [6t + 2b, 6t + 2b + 1]
    lengths = np.array([3, 0, 1])
    y[:, 1] = np.nan                                            # padding of sequence 1 (len 0)
    y[1:, 2] = np.nan                                           # padding of sequence 2 (len 1)
    out = last_step(y, lengths)
    np.testing.assert_array_equal(out, [[12.0, 13.0], [0.0, 0.0], [4.0, 5.0]])
    np.testing.assert_array_equal(last_step(np.ones((2, 1, 1), np.float32)), [[1.0]])
    assert last_step(y.astype(np.float32), lengths).dtype == np.float32
    np.testing.assert_array_equal(last_step(np.arange(4.0).reshape(2, 2, 1)), [[2.0], [3.0]])


def test_scatter_last_by_hand():
    d_last = np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 6.0]])
    out = scatter_last(d_last, np.array([3, 0, 1]), 3)
    expected = np.zeros((3, 3, 2))
    expected[2, 0] = [1.0, 2.0]
    expected[0, 2] = [5.0, 6.0]
    np.testing.assert_array_equal(out, expected)
    out = scatter_last(d_last[[0]].astype(np.float32), None, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[0.0, 0.0]], [[1.0, 2.0]]])


def test_many_to_one_mse_by_hand():
    y = np.full((3, 3, 2), np.nan)
    y[2, 0] = [1.0, 2.0]        # last step of sequence 0 (len 3)
    y[0, 2] = [3.0, -1.0]       # last step of sequence 2 (len 1)
    y[:2, 0] = 7.0              # earlier valid steps: not part of the loss
    lengths = np.array([3, 0, 1])
    target = np.array([[0.0, 0.0], [np.nan, np.nan], [1.0, 1.0]])
    loss, dy = many_to_one(mse, y, target, lengths)
    assert loss == 1 + 4 + 4 + 4
    expected = np.zeros((3, 3, 2))
    expected[2, 0] = [2.0, 4.0]
    expected[0, 2] = [4.0, -4.0]
    np.testing.assert_array_equal(dy, expected)
    loss, dy = many_to_one(mse, y, target, lengths, reduction="mean")   # 2 sequences x F
    assert loss == 13 / 4
    np.testing.assert_array_equal(dy, expected / 4)


def test_many_to_one_cross_entropy_by_hand():
    z = np.zeros((2, 2, 2))
    z[1, 0] = [0.0, np.log(3.0)]     # sequence 0, len 2: softmax (1/4, 3/4)
    z[0, 1] = [np.log(3.0), 0.0]     # sequence 1, len 1: softmax (3/4, 1/4)
    z[1, 1] = np.nan
    loss, dy = many_to_one(cross_entropy, z, np.array([1, 1]), np.array([2, 1]), from_logits=True)
    np.testing.assert_allclose(loss, np.log(4 / 3) + np.log(4.0), rtol=1e-15)
    expected = np.zeros((2, 2, 2))
    expected[1, 0] = [0.25, -0.25]
    expected[0, 1] = [0.75, -0.75]
    np.testing.assert_allclose(dy, expected, atol=1e-16)


@pytest.mark.parametrize("kind", KINDS)
def test_many_to_one_finite_differences(kind):
    fn, y, target, kw = make_case(kind, seed=8)
    target = target[0]                                   # (B, F) or (B,)
    lengths = LENGTHS["mixed"]
    loss, dy = many_to_one(fn, y, target, lengths, reduction="mean", **kw)
    assert dy.shape == y.shape and dy.dtype == y.dtype
    fd = central_diff(lambda v: many_to_one(fn, v, target, lengths, reduction="mean", **kw)[0], y)
    np.testing.assert_allclose(dy, fd, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# argument errors

Y = np.zeros((2, 2, 3))


@pytest.mark.parametrize("fn", [mse, binary_cross_entropy])
def test_float_target_errors(fn):
    with pytest.raises(ValueError, match="target"):
        fn(Y, np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="target"):
        fn(Y, np.zeros((2, 2, 3), dtype=complex))


@pytest.mark.parametrize("fn,target", [(mse, np.zeros((2, 2, 3))),
                                       (binary_cross_entropy, np.zeros((2, 2, 3))),
                                       (cross_entropy, np.zeros((2, 2), dtype=int))])
def test_common_errors(fn, target):
    y = Y + 0.5
    with pytest.raises(TypeError, match="y must be a floating"):
        fn(y.astype(int), target)
    with pytest.raises(ValueError, match=r"y must have shape \(T, B, F\)"):
        fn(y[0], target[0])
    with pytest.raises(ValueError, match="T, B, F >= 1"):
        fn(y[:0], target[:0])
    with pytest.raises(ValueError, match="lengths must have shape"):
        fn(y, target, lengths=[1, 1, 1])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\]"):
        fn(y, target, lengths=[3, 1])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\]"):
        fn(y, target, lengths=[-1, 1])
    with pytest.raises(TypeError, match="lengths must be an integer"):
        fn(y, target, lengths=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        fn(y, target, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        fn(y, target, reduction=None)


@pytest.mark.parametrize("fn", [cross_entropy, binary_cross_entropy])
def test_from_logits_must_be_bool(fn):
    target = np.zeros((2, 2), int) if fn is cross_entropy else Y
    with pytest.raises(TypeError, match="from_logits"):
        fn(Y + 0.5, target, from_logits="yes")


def test_cross_entropy_target_errors():
    with pytest.raises(TypeError, match="target must be an integer"):
        cross_entropy(Y + 0.5, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"target must have shape \(T, B\)"):
        cross_entropy(Y + 0.5, np.zeros((2, 2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"target class ids must lie in \[0, F\) = \[0, 3\)"):
        cross_entropy(Y + 0.5, np.array([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="target class ids"):
        cross_entropy(Y, np.array([[0, -1], [0, 0]]), from_logits=True)
    # out-of-range ids at padded steps are allowed
    cross_entropy(Y + 0.5, np.array([[0, 0], [0, 99]]), lengths=[2, 1])


def test_probability_range_errors():
    with pytest.raises(ValueError, match="from_logits=True"):
        cross_entropy(Y - 0.5, np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="from_logits=True"):
        binary_cross_entropy(Y + 1.5, Y)
    with pytest.raises(ValueError, match="target must hold probabilities"):
        binary_cross_entropy(Y + 0.5, Y + 2)
    with pytest.raises(ValueError, match="target must hold probabilities"):
        binary_cross_entropy(Y, np.full(Y.shape, np.nan), from_logits=True)


def test_many_to_one_errors():
    with pytest.raises(TypeError, match="loss_fn"):
        many_to_one("mse", Y, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="target must have shape"):
        many_to_one(mse, Y, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="target must have shape"):
        many_to_one(mse, Y, np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="lengths"):
        many_to_one(mse, Y, np.zeros((2, 3)), lengths=[0, 5])
    with pytest.raises(TypeError, match="y must be a floating"):
        last_step(np.zeros((2, 2, 3), dtype=int))


def test_scatter_last_errors():
    d = np.ones((2, 3))
    with pytest.raises(ValueError, match="T must be >= 1"):
        scatter_last(d, None, 0)
    with pytest.raises(TypeError, match="T must be an int"):
        scatter_last(d, None, 1.5)
    with pytest.raises(ValueError, match=r"d_last must have shape \(B, F\)"):
        scatter_last(np.ones((1, 2, 3)), None, 2)
    with pytest.raises(TypeError, match="d_last"):
        scatter_last(np.ones((2, 3), dtype=int), None, 2)
    with pytest.raises(ValueError, match="lengths"):
        scatter_last(d, [1, 3], 2)


def test_public_names():
    assert set(losses.__all__) == {"mse", "cross_entropy", "binary_cross_entropy",
                                   "last_step", "scatter_last", "many_to_one"}
