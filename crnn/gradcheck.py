"""Finite-difference gradient checks through SciPy, in float64.

The scalar checked is L = Σ dy·y + Σ dstate·state for random (or given) dy
and dstate, so every output and the final state carry gradient. Central
differences come from `scipy.optimize.approx_fprime` with steps +h and -h:
their mean is exactly (L(θ+h) − L(θ−h)) / 2h.
"""
import numpy as np
from scipy.optimize import approx_fprime

__all__ = ["gradcheck", "flatten_state", "random_state_like", "scaled_error"]


def scaled_error(got, ref):
    """max |got − ref| / max(1, |ref|), elementwise, in float64 (inf when the
    shapes differ): the measure DESIGN.md's reference tolerances use."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return np.inf
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))


def flatten_state(state):
    """The arrays of a state structure (array, pair, or list; None skipped), in order."""
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in flatten_state(s)]
    return [state]


def _like(state, values):
    """A state structure shaped like `state`, filled from the iterator `values`."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(_like(s, values) for s in state)
    if isinstance(state, list):
        return [_like(s, values) for s in state]
    return next(values)


def random_state_like(state, rng):
    """A state structure shaped like `state`, standard normal draws from `rng`
    taken in flatten_state order."""
    return _like(state, iter([rng.standard_normal(s.shape) for s in flatten_state(state)]))


def _complete(value, default):
    """`value` with every None entry replaced by the matching entry of `default`."""
    if value is None:
        return default
    if isinstance(value, (tuple, list)):
        return type(value)(_complete(v, d) for v, d in zip(value, default))
    return value


def _relative_error(numeric, analytic):
    """max |numeric − analytic| / max(max |numeric|, max |analytic|); 0 when both are 0."""
    scale = max(np.abs(numeric).max(initial=0.0), np.abs(analytic).max(initial=0.0))
    diff = np.abs(numeric - analytic).max(initial=0.0)
    return 0.0 if diff == 0 else float(diff / (scale if scale > 0 else 1.0))


def _central(f, v, step):
    """Central-difference gradient of scalar f at the flat vector v, step `step`·max(1, |v|)."""
    h = step * np.maximum(1.0, np.abs(v))
    return 0.5 * (approx_fprime(v, f, h) + approx_fprime(v, f, -h))


def _zero_state(module, B):
    """A zero initial state in the module's structure (so that dh0 can be checked)."""
    from crnn.layers import BiLayer, Stack  # gradcheck sits above layers in the module map

    if isinstance(module, Stack):
        return [_zero_state(m, B) for m in module.layers]
    H = module.hidden_size
    z = lambda: np.zeros((B, H))  # noqa: E731
    return (z(), z()) if isinstance(module, BiLayer) else z()


def gradcheck(module, x, h0=None, lengths=None, dy=None, dstate=None, *, step=1e-5, seed=0):
    """Compare `module.backward` with central finite differences of `module.forward`.

    module: a float64 Layer, BiLayer or Stack; x, h0, lengths as for forward
    (h0=None checks dL/dh0 at h0 = 0). dy and dstate default to standard
    normal draws from `seed`. Returns {name: max relative error} for every
    parameter, for "x" (dense input only) and for "h0". The module's
    parameters and gradients are left as they were.
    """
    if np.dtype(module.dtype) != np.float64:
        raise ValueError(f"gradcheck needs a float64 module, got {np.dtype(module.dtype).name}")
    rng = np.random.default_rng(seed)
    tokens = np.asarray(x).ndim == 2
    x = np.array(x, dtype=np.int64 if tokens else np.float64)
    T, B = x.shape[:2]
    mask = np.ones((T, B), bool)
    if lengths is not None:
        mask = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    if not tokens:  # padded steps are never read: keep NaN there out of the differences
        x = np.where(mask[..., None], x, 0.0)
    h0 = _complete(h0, _zero_state(module, B))
    y, state = module.forward(x, h0, lengths)
    dy = rng.standard_normal(y.shape) if dy is None else np.asarray(dy, dtype=np.float64)
    dstate = _complete(dstate, random_state_like(state, rng))
    dstate_flat = flatten_state(dstate)
    dy = np.where(mask[..., None], dy, 0.0)  # padded steps carry no loss

    def loss(xx, hh):
        yy, ss = module.forward(xx, hh, lengths)
        return float(np.sum(dy * yy) + sum(np.sum(d * s) for d, s in zip(dstate_flat, flatten_state(ss))))

    saved_grads = {k: g.copy() for k, g in module.grads.items()}
    try:
        module.zero_grad()
        module.forward(x, h0, lengths)
        dx, dh0 = module.backward(dy, dstate)
        analytic = {k: g.copy() for k, g in module.grads.items()}
        errors = {}
        for name, p in module.params.items():
            original = p.copy()

            def f(v, p=p):
                p[...] = v.reshape(p.shape)
                return loss(x, h0)

            try:
                numeric = _central(f, original.ravel(), step).reshape(p.shape)
            finally:
                p[...] = original
            errors[name] = _relative_error(numeric, analytic[name])
        if not tokens:
            numeric = _central(lambda v: loss(v.reshape(x.shape), h0), x.ravel(), step)
            errors["x"] = _relative_error(numeric.reshape(x.shape), dx)
        h_flat = flatten_state(h0)
        sizes = np.cumsum([0] + [a.size for a in h_flat])

        def fh(v):
            parts = iter([v[sizes[i]:sizes[i + 1]].reshape(a.shape) for i, a in enumerate(h_flat)])
            return loss(x, _like(h0, parts))

        numeric = _central(fh, np.concatenate([a.ravel() for a in h_flat]), step)
        analytic_h0 = np.concatenate([a.ravel() for a in flatten_state(dh0)])
        errors["h0"] = _relative_error(numeric, analytic_h0)
    finally:
        for k, g in module.grads.items():
            g[...] = saved_grads[k]
    return errors
