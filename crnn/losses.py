"""Losses for time-major sequence outputs; NumPy only.

Size letters: T time steps, B sequences in the batch, F features (classes) per
step. Every loss takes the network output ``y`` of shape (T, B, F) and returns
``(loss, dy)``: ``loss`` a Python float and ``dy = dloss/dy``, an array of the
shape and dtype of ``y``, ready for ``module.backward(dy)``.

``lengths`` (B,) with 0 <= len_b <= T marks the valid prefix of each sequence
(None: all T steps). A position (t, b) with t >= len_b is padding: it adds
nothing to the loss, its ``dy`` is exactly 0, and its values in ``y`` and
``target`` are never read into the result, so they may hold NaN or garbage.

``reduction="sum"`` (the default) is the notes' L = sum_t L_t; ``"mean"``
divides by the number of valid terms (given per loss). With no valid term at
all the loss is 0 and ``dy`` is 0.

Internally everything is computed in float64 (or wider, for longdouble input)
and ``dy`` is cast back to ``y.dtype``.
"""

import numpy as np

__all__ = [
    "mse",
    "cross_entropy",
    "binary_cross_entropy",
    "last_step",
    "scatter_last",
    "many_to_one",
]

_REDUCTIONS = ("sum", "mean")


# --------------------------------------------------------------------------
# argument checks

def _check_y(y):
    """Return y as a 3-D floating ndarray (T, B, F) with T, B, F >= 1."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        raise TypeError(f"y must be a floating-point array of shape (T, B, F), got dtype {y.dtype}")
    if y.ndim != 3:
        raise ValueError(f"y must have shape (T, B, F), got shape {y.shape}")
    if 0 in y.shape:
        raise ValueError(f"y must have T, B, F >= 1, got shape {y.shape}")
    return y


def _check_lengths(lengths, T, B):
    """Return lengths as an int ndarray (B,) with values in [0, T]; None means all T."""
    if lengths is None:
        return np.full(B, T, dtype=np.intp)
    lengths = np.asarray(lengths)
    if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"lengths must be an integer array of shape (B,) = ({B},), got dtype {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got shape {lengths.shape}")
    if np.any(lengths < 0) or np.any(lengths > T):
        raise ValueError(
            f"lengths must lie in [0, T] = [0, {T}], got values from {lengths.min()} to {lengths.max()}"
        )
    return lengths.astype(np.intp)


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_real_target(target, shape):
    """A real-valued target (bool, int or float) of exactly ``shape``."""
    target = np.asarray(target)
    if not (target.dtype == np.bool_ or np.issubdtype(target.dtype, np.integer)
            or np.issubdtype(target.dtype, np.floating)):
        raise TypeError(f"target must be a real numeric array, got dtype {target.dtype}")
    if target.shape != shape:
        raise ValueError(f"target must have the shape of y (T, B, F) = {shape}, got shape {target.shape}")
    return target


def _valid_mask(lengths, T):
    """(T, B) bool: True where t < len_b."""
    return np.arange(T)[:, None] < lengths[None, :]


def _work_dtype(y):
    """float64, or y's dtype when it is wider (longdouble)."""
    return np.promote_types(y.dtype, np.float64)


def _masked(a, valid, fill, dtype):
    """a at valid positions, ``fill`` elsewhere (never reads padded values into arithmetic)."""
    return np.where(valid, a, fill).astype(dtype, copy=False)


def _check_probabilities(x, valid, what="y"):
    """x must lie in [0, 1] (not NaN) wherever valid."""
    bad = valid & ~((x >= 0) & (x <= 1))
    if np.any(bad):
        raise ValueError(
            f"{what} must hold probabilities in [0, 1] at valid positions, found {x[bad][0]!r}"
            + (" (pass from_logits=True for logits)" if what == "y" else "")
        )


def _finish(total, dy, count, reduction, dtype):
    """Apply the reduction; return (float loss, dy cast to dtype)."""
    if reduction == "mean":
        if count == 0:
            return 0.0, np.zeros(dy.shape, dtype=dtype)
        total = total / count
        dy = dy / count
    return float(total), dy.astype(dtype, copy=False)


# --------------------------------------------------------------------------
# losses

def mse(y, target, lengths=None, reduction="sum"):
    """Squared error over the valid positions.

    y, target: (T, B, F); lengths: (B,) or None.

        L    = sum_{t < len_b, f} (y[t,b,f] - target[t,b,f])**2     (no 1/2, as torch's MSELoss)
        dy   = 2 (y - target)  at valid positions, 0 elsewhere

    ``"mean"`` divides by the number of valid elements, sum_b len_b * F.
    """
    y = _check_y(y)
    T, B, F = y.shape
    target = _check_real_target(target, y.shape)
    lengths = _check_lengths(lengths, T, B)
    _check_reduction(reduction)

    valid = _valid_mask(lengths, T)[:, :, None]
    wt = _work_dtype(y)
    diff = _masked(y, valid, 0, wt) - _masked(target, valid, 0, wt)   # exactly 0 at padding
    return _finish(np.sum(diff * diff), 2 * diff, int(lengths.sum()) * F, reduction, y.dtype)


def cross_entropy(y, target, lengths=None, reduction="sum", from_logits=False):
    """Categorical cross-entropy with integer class targets, one class per step.

    y: (T, B, F); target: (T, B) integer ids, in [0, F) at valid steps (padded
    steps may hold any integer); lengths: (B,) or None.

    from_logits=False: y holds probabilities (a softmax output layer, every
    valid y in [0, 1]), c = target[t, b]:

        L  = -sum_{t < len_b} log y[t,b,c]
        dy = -1 / y[t,b,c]  at the target entry, 0 elsewhere

    crnn's softmax output layer clamps every probability to at least
    ``np.finfo(dtype).tiny``, so -1/y stays finite and the softmax backward
    y * (dy - sum(y * dy)) yields exactly p - onehot even when the target
    probability underflowed. This function adds no clipping of its own beyond
    that same floor (y[t,b,c] is read as max(y[t,b,c], tiny) in both log and
    dy, which changes nothing for crnn's outputs and keeps log finite for
    other input); in particular no Keras-style [eps, 1 - eps] clipping.

    from_logits=True: y holds logits z, computed stably:

        L  = sum_{t < len_b} (logsumexp(z[t,b,:]) - z[t,b,c])
        dy = softmax(z[t,b,:]) - onehot(c)

    ``"mean"`` divides by the number of valid steps, sum_b len_b.
    """
    y = _check_y(y)
    T, B, F = y.shape
    target = np.asarray(target)
    if target.dtype == np.bool_ or not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"target must be an integer array of class ids, shape (T, B), got dtype {target.dtype}")
    if target.shape != (T, B):
        raise ValueError(f"target must have shape (T, B) = {(T, B)}, got shape {target.shape}")
    lengths = _check_lengths(lengths, T, B)
    _check_reduction(reduction)
    from_logits = _check_flag("from_logits", from_logits)

    valid = _valid_mask(lengths, T)                                  # (T, B)
    bad = valid & ((target < 0) | (target >= F))
    if np.any(bad):
        t, b = np.argwhere(bad)[0]
        raise ValueError(
            f"target class ids must lie in [0, F) = [0, {F}) at valid steps, got {target[t, b]} at (t={t}, b={b})"
        )
    cls = np.where(valid, target, 0).astype(np.intp)[:, :, None]     # (T, B, 1)
    wt = _work_dtype(y)

    if from_logits:
        z = _masked(y, valid[:, :, None], 0, wt)
        m = np.max(z, axis=2, keepdims=True)
        e = np.exp(z - m)
        s = np.sum(e, axis=2, keepdims=True)
        per_step = (m + np.log(s) - np.take_along_axis(z, cls, axis=2))[:, :, 0]
        dy = e / s
        np.put_along_axis(dy, cls, np.take_along_axis(dy, cls, axis=2) - 1, axis=2)
        dy = np.where(valid[:, :, None], dy, 0)
    else:
        p = _masked(y, valid[:, :, None], 1, wt)
        _check_probabilities(p, valid[:, :, None])
        pc = np.maximum(np.take_along_axis(p, cls, axis=2), np.finfo(y.dtype).tiny)
        per_step = -np.log(pc)[:, :, 0]
        dy = np.zeros(y.shape, dtype=wt)
        np.put_along_axis(dy, cls, np.where(valid[:, :, None], -1 / pc, 0), axis=2)

    total = np.sum(np.where(valid, per_step, 0))
    return _finish(total, dy, int(lengths.sum()), reduction, y.dtype)


def binary_cross_entropy(y, target, lengths=None, reduction="sum", from_logits=False):
    """Element-wise binary cross-entropy (independent sigmoid outputs).

    y, target: (T, B, F), target in [0, 1] at valid positions; lengths: (B,) or None.

    from_logits=False: y holds probabilities in [0, 1]:

        L  = -sum_valid [t log y + (1 - t) log(1 - y)]
        dy = -t / y + (1 - t) / (1 - y)   (= (y - t) / (y (1 - y)))

    dy is evaluated in the two-term form so that y = 1 with t = 1 (or y = 0
    with t = 0), a saturated sigmoid, gives a finite dy. As in
    ``cross_entropy``, y and 1 - y are floored at ``np.finfo(dtype).tiny``
    (only so that log stays finite), nothing else.

    from_logits=True: y holds logits z, computed stably (softplus form):

        L  = sum_valid [max(z, 0) - t z + log1p(exp(-|z|))]
        dy = sigmoid(z) - t

    ``"mean"`` divides by the number of valid elements, sum_b len_b * F.
    """
    y = _check_y(y)
    T, B, F = y.shape
    target = _check_real_target(target, y.shape)
    lengths = _check_lengths(lengths, T, B)
    _check_reduction(reduction)
    from_logits = _check_flag("from_logits", from_logits)

    valid = _valid_mask(lengths, T)[:, :, None]
    wt = _work_dtype(y)
    t = _masked(target, valid, 0, wt)
    _check_probabilities(t, valid, what="target")

    if from_logits:
        z = _masked(y, valid, 0, wt)
        e = np.exp(-np.abs(z))                                       # in (0, 1]
        per_elem = np.maximum(z, 0) - t * z + np.log1p(e)
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        dy = sig - t
    else:
        p = _masked(y, valid, 0.5, wt)
        _check_probabilities(p, valid)
        tiny = np.finfo(y.dtype).tiny
        p1 = np.maximum(p, tiny)
        q1 = np.maximum(1 - p, tiny)
        per_elem = -(t * np.log(p1) + (1 - t) * np.log(q1))
        dy = -t / p1 + (1 - t) / q1

    total = np.sum(np.where(valid, per_elem, 0))
    dy = np.where(valid, dy, 0)
    return _finish(total, dy, int(lengths.sum()) * F, reduction, y.dtype)


# --------------------------------------------------------------------------
# many-to-one

def last_step(y, lengths=None):
    """Each sequence's last valid step.

    y: (T, B, F); lengths: (B,) or None (all T). Returns (B, F) in y's dtype:
    row b is y[len_b - 1, b], or zeros when len_b = 0. Padded steps are never read.
    """
    y = _check_y(y)
    T, B, _ = y.shape
    lengths = _check_lengths(lengths, T, B)
    rows = y[np.maximum(lengths - 1, 0), np.arange(B)]              # (B, F)
    return np.where((lengths > 0)[:, None], rows, 0).astype(y.dtype, copy=False)


def scatter_last(d_last, lengths, T):
    """Inverse of ``last_step`` for gradients.

    d_last: (B, F); lengths: (B,) or None (all T); T >= 1. Returns (T, B, F) in
    d_last's dtype with d_last[b] at step len_b - 1 and zeros elsewhere; rows
    with len_b = 0 are dropped (never read).
    """
    d_last = np.asarray(d_last)
    if not np.issubdtype(d_last.dtype, np.floating):
        raise TypeError(f"d_last must be a floating-point array of shape (B, F), got dtype {d_last.dtype}")
    if d_last.ndim != 2 or 0 in d_last.shape:
        raise ValueError(f"d_last must have shape (B, F) with B, F >= 1, got shape {d_last.shape}")
    if isinstance(T, (bool, np.bool_)) or not isinstance(T, (int, np.integer)):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    B, F = d_last.shape
    lengths = _check_lengths(lengths, int(T), B)
    out = np.zeros((int(T), B, F), dtype=d_last.dtype)
    (b,) = np.nonzero(lengths > 0)
    out[lengths[b] - 1, b] = d_last[b]
    return out


def many_to_one(loss_fn, y, target, lengths=None, **kwargs):
    """Apply a sequence loss to the last valid step only.

    loss_fn: ``mse``, ``cross_entropy`` or ``binary_cross_entropy`` (any
    callable with their signature); y: (T, B, F); target: (B, F) for mse/bce or
    (B,) class ids for cross_entropy; lengths: (B,) or None; kwargs (e.g.
    ``reduction``, ``from_logits``) go to loss_fn.

    ``last_step(y, lengths)`` is treated as a T = 1 sequence; sequences with
    len_b = 0 have no last step and are masked out (their target row is never
    read, and ``"mean"`` does not count them). Returns (loss, dy) with dy of
    y's shape and dtype, nonzero only at each sequence's last valid step.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a loss function such as crnn.losses.mse, got {loss_fn!r}")
    y = _check_y(y)
    T, B, F = y.shape
    lengths = _check_lengths(lengths, T, B)
    target = np.asarray(target)
    if target.ndim not in (1, 2) or target.shape[0] != B:
        raise ValueError(f"target must have shape (B, F) = {(B, F)} or (B,) = ({B},), got shape {target.shape}")

    last = last_step(y, lengths)[None]                                # (1, B, F)
    present = (lengths > 0).astype(np.intp)
    loss, d_last = loss_fn(last, target[None], lengths=present, **kwargs)
    return loss, scatter_last(d_last[0], lengths, T)
