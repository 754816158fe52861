"""Optimizers and gradient clipping; NumPy only.

An optimizer acts on a *module*: any object with ``.params`` and ``.grads``,
two dicts with the same keys whose NumPy arrays are the live storage of the
parameters and their gradients. Every update is made in place
(``p -= ...``); dict entries are never rebound and ``.grads`` is never
modified by ``step()``.

The algorithms, defaults, argument checks and update order follow
``torch.optim`` (single-tensor code path), so trajectories can be compared
with PyTorch's. Hyper-parameters are Python floats, so a float32 module stays
float32; optimizer state arrays have their parameter's dtype.

    opt = Adam(layer, lr=1e-3)
    for x, target in batches:
        opt.zero_grad()
        y, _ = layer.forward(x)
        loss, dy = crnn.losses.mse(y, target)
        layer.backward(dy)
        clip_grad_norm(layer, 1.0)
        opt.step()

``state_dict()`` returns ``{"config": {...}, "arrays": {...}}``: a JSON-able
config (``"type"``, every hyper-parameter, ``"step"``) and the state arrays,
named ``"<buffer>.<param>"`` (e.g. ``"exp_avg.0.W_hh"``), so the whole can be
stored as JSON + .npz without pickle.
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = [
    "Optimizer",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "optimizer_from_state",
    "clip_grad_norm",
    "clip_grad_value",
]


# --------------------------------------------------------------------------
# argument checks

def _real(name, value, low=None, high=None, high_open=False, allow_inf=False):
    """Check a real hyper-parameter (low <= value <= high, or < high); return it as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _grads_of(module):
    """module.grads as a dict of floating ndarrays (for the clipping functions)."""
    grads = getattr(module, "grads", None)
    if not isinstance(grads, Mapping):
        raise TypeError(f"module must have a .grads dict of NumPy arrays, got {type(module).__name__}")
    for name, g in grads.items():
        if not isinstance(g, np.ndarray) or not np.issubdtype(g.dtype, np.floating):
            raise TypeError(f"module.grads[{name!r}] must be a floating-point ndarray, got {type(g).__name__}")
    return grads


def _check_module(module):
    """Validate module.params / module.grads; return {name: (shape, dtype)}."""
    params = getattr(module, "params", None)
    grads = getattr(module, "grads", None)
    if not isinstance(params, Mapping) or not isinstance(grads, Mapping):
        raise TypeError(
            f"module must have .params and .grads dicts of NumPy arrays, got {type(module).__name__}"
        )
    if set(params) != set(grads):
        raise ValueError(
            f"module.params and module.grads must have the same keys, got {sorted(params)} and {sorted(grads)}"
        )
    if not params:
        raise ValueError("module has no parameters to optimize")
    layout = {}
    for name, p in params.items():
        g = grads[name]
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            raise TypeError(f"module.params[{name!r}] must be a floating-point ndarray, got {type(p).__name__}")
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(
                f"module.grads[{name!r}] must be an ndarray of shape {p.shape} and dtype {p.dtype}"
            )
        layout[name] = (p.shape, p.dtype)
    return layout


def _lerp_(a, b, w):
    """a <- a + w (b - a) in place, evaluated as torch.lerp does."""
    if w < 0.5:
        a += w * (b - a)
    else:
        a[...] = b - (b - a) * (1 - w)


# --------------------------------------------------------------------------
# base class

class Optimizer:
    """Base class: bookkeeping, state_dict, zero_grad. Subclasses define

    _hyper_names       the hyper-parameters, in signature order
    _check_hyper(hp)   validate {name: value}, return the normalised dict
    _buffers(hp)       {buffer name: initial fill value} for these hyper-parameters
    _update(p, g, buf, t)  update one parameter p in place from its gradient g,
                           buf = {buffer name: this parameter's state array},
                           t = the 1-based step number
    """

    _hyper_names = ()

    @staticmethod
    def _check_hyper(hp):
        raise NotImplementedError("use a subclass: SGD, Adagrad, RMSprop or Adam")

    @staticmethod
    def _buffers(hp):
        raise NotImplementedError

    def _update(self, p, g, buf, t):
        raise NotImplementedError

    def __init__(self, module, **hyper):
        self.module = module
        self._layout = _check_module(module)
        self._hp = self._check_hyper(hyper)
        self.step_count = 0
        self._state = {
            buf: {name: np.full(shape, fill, dtype=dtype) for name, (shape, dtype) in self._layout.items()}
            for buf, fill in self._buffers(self._hp).items()
        }

    # --- hyper-parameters

    @property
    def lr(self):
        """Learning rate (settable, >= 0), e.g. for a schedule."""
        return self._hp["lr"]

    @lr.setter
    def lr(self, value):
        self._hp["lr"] = _real("lr", value, low=0)

    @property
    def hyperparams(self):
        """A copy of the hyper-parameters, {name: value}."""
        return dict(self._hp)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hp.items())
        return f"{type(self).__name__}({args})"

    # --- the update

    def _pair(self, name):
        """(param, grad) arrays of one parameter, checked against the layout at construction."""
        shape, dtype = self._layout[name]
        try:
            p, g = self.module.params[name], self.module.grads[name]
        except KeyError:
            raise ValueError(f"module no longer has parameter {name!r} in .params and .grads") from None
        for what, a in (("params", p), ("grads", g)):
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                raise ValueError(f"module.{what}[{name!r}] must be an ndarray of shape {shape} and dtype {dtype}")
        return p, g

    def step(self):
        """Update every parameter in place from module.grads (one optimizer step)."""
        pairs = {name: self._pair(name) for name in self._layout}   # check all before changing any
        self.step_count += 1
        for name, (p, g) in pairs.items():
            buf = {b: arrays[name] for b, arrays in self._state.items()}
            self._update(p, g, buf, self.step_count)

    def zero_grad(self):
        """module.zero_grad() if the module has one, else zero every grads array in place."""
        zero_grad = getattr(self.module, "zero_grad", None)
        if callable(zero_grad):
            zero_grad()
        else:
            for g in self.module.grads.values():
                g[...] = 0

    # --- state

    def state_dict(self):
        """{"config": JSON-able dict, "arrays": {"<buffer>.<param>": copy of the state array}}."""
        config = {"type": type(self).__name__}
        for k, v in self._hp.items():
            config[k] = list(v) if isinstance(v, tuple) else v
        config["step"] = self.step_count
        arrays = {f"{b}.{name}": a.copy() for b, per in self._state.items() for name, a in per.items()}
        return {"config": config, "arrays": arrays}

    @classmethod
    def _parse_config(cls, config):
        """Check a state_dict config for this class; return (hyper-parameters, step)."""
        if not isinstance(config, Mapping):
            raise TypeError(f"state_dict['config'] must be a dict, got {type(config).__name__}")
        if config.get("type") != cls.__name__:
            raise ValueError(f"state_dict is for optimizer type {config.get('type')!r}, not {cls.__name__!r}")
        expected = {"type", "step", *cls._hyper_names}
        missing, unknown = expected - set(config), set(config) - expected
        if missing or unknown:
            raise ValueError(
                f"state_dict['config'] for {cls.__name__}: "
                f"missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        step = config["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"state_dict['config']['step'] must be an int >= 0, got {step!r}")
        hp = cls._check_hyper({k: config[k] for k in cls._hyper_names})
        return hp, int(step)

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters, step count and state arrays from ``state_dict()`` output.

        Everything is checked (type, config keys and values, array names,
        shapes, dtypes) before anything changes; a mismatch is a ValueError
        naming it. Arrays are copied.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"config", "arrays"}:
            raise ValueError("state_dict must be a dict with exactly the keys 'config' and 'arrays'")
        hp, step = self._parse_config(state_dict["config"])
        arrays = state_dict["arrays"]
        if not isinstance(arrays, Mapping):
            raise TypeError(f"state_dict['arrays'] must be a dict, got {type(arrays).__name__}")

        buffers = self._buffers(hp)
        expected = {f"{b}.{name}" for b in buffers for name in self._layout}
        missing, unknown = expected - set(arrays), set(arrays) - expected
        if missing or unknown:
            raise ValueError(
                f"state_dict['arrays'] does not match this module: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        for b in buffers:
            for name, (shape, dtype) in self._layout.items():
                a = arrays[f"{b}.{name}"]
                if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                    got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                    raise ValueError(
                        f"state_dict['arrays'][{b + '.' + name!r}] must have shape {shape} and dtype {dtype}, got {got}"
                    )

        self._hp = hp
        self.step_count = step
        self._state = {
            b: {name: np.array(arrays[f"{b}.{name}"], copy=True, order="C") for name in self._layout}
            for b in buffers
        }


# --------------------------------------------------------------------------
# the algorithms

class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (as torch.optim.SGD).

    With g = grad + weight_decay * p and buffer b (b = g at the first step):

        b <- momentum * b + (1 - dampening) * g
        g <- g + momentum * b   (nesterov)   or   g <- b   (momentum > 0)
        p <- p - lr * g

    With momentum = 0 this is the notes' theta <- theta - eta dL/dtheta.
    """

    _hyper_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, module, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(module, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)

    @staticmethod
    def _check_hyper(hp):
        out = {
            "lr": _real("lr", hp["lr"], low=0),
            "momentum": _real("momentum", hp["momentum"], low=0),
            "dampening": _real("dampening", hp["dampening"], low=0, high=1),
            "nesterov": _flag("nesterov", hp["nesterov"]),
            "weight_decay": _real("weight_decay", hp["weight_decay"], low=0),
        }
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")
        return out

    @staticmethod
    def _buffers(hp):
        return {"momentum_buffer": 0.0} if hp["momentum"] != 0 else {}

    def _update(self, p, g, buf, t):
        hp = self._hp
        if hp["weight_decay"] != 0:
            g = g + hp["weight_decay"] * p
        if hp["momentum"] != 0:
            b = buf["momentum_buffer"]
            if t == 1:
                b[...] = g
            else:
                b *= hp["momentum"]
                b += (1 - hp["dampening"]) * g
            g = g + hp["momentum"] * b if hp["nesterov"] else b
        p -= hp["lr"] * g


class Adagrad(Optimizer):
    """Adagrad (as torch.optim.Adagrad).

    With g = grad + weight_decay * p, accumulator s (initially
    initial_accumulator_value) and t the step number:

        clr = lr / (1 + (t - 1) lr_decay)
        s  <- s + g * g
        p  <- p - clr * g / (sqrt(s) + eps)
    """

    _hyper_names = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, module, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(module, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    @staticmethod
    def _check_hyper(hp):
        return {
            "lr": _real("lr", hp["lr"], low=0),
            "lr_decay": _real("lr_decay", hp["lr_decay"], low=0),
            "weight_decay": _real("weight_decay", hp["weight_decay"], low=0),
            "initial_accumulator_value": _real("initial_accumulator_value", hp["initial_accumulator_value"], low=0),
            "eps": _real("eps", hp["eps"], low=0),
        }

    @staticmethod
    def _buffers(hp):
        return {"sum": hp["initial_accumulator_value"]}

    def _update(self, p, g, buf, t):
        hp = self._hp
        if hp["weight_decay"] != 0:
            g = g + hp["weight_decay"] * p
        clr = hp["lr"] / (1 + (t - 1) * hp["lr_decay"])
        s = buf["sum"]
        s += g * g
        p -= clr * g / (np.sqrt(s) + hp["eps"])


class RMSprop(Optimizer):
    """RMSprop (as torch.optim.RMSprop).

    With g = grad + weight_decay * p and buffers v (square_avg), m
    (grad_avg, centered only), b (momentum_buffer, momentum > 0 only), all
    starting at 0:

        v <- alpha v + (1 - alpha) g * g
        m <- m + (1 - alpha) (g - m)                       (centered)
        d  = sqrt(v - m * m) + eps   (centered)   or   sqrt(v) + eps
        b <- momentum b + g / d;  p <- p - lr b            (momentum > 0)
        p <- p - lr g / d                                  (otherwise)
    """

    _hyper_names = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, module, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(module, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    @staticmethod
    def _check_hyper(hp):
        return {
            "lr": _real("lr", hp["lr"], low=0),
            "alpha": _real("alpha", hp["alpha"], low=0, high=1),
            "eps": _real("eps", hp["eps"], low=0),
            "weight_decay": _real("weight_decay", hp["weight_decay"], low=0),
            "momentum": _real("momentum", hp["momentum"], low=0),
            "centered": _flag("centered", hp["centered"]),
        }

    @staticmethod
    def _buffers(hp):
        buffers = {"square_avg": 0.0}
        if hp["momentum"] > 0:
            buffers["momentum_buffer"] = 0.0
        if hp["centered"]:
            buffers["grad_avg"] = 0.0
        return buffers

    def _update(self, p, g, buf, t):
        hp = self._hp
        alpha = hp["alpha"]
        if hp["weight_decay"] != 0:
            g = g + hp["weight_decay"] * p
        v = buf["square_avg"]
        v *= alpha
        v += (1 - alpha) * g * g
        if hp["centered"]:
            m = buf["grad_avg"]
            _lerp_(m, g, 1 - alpha)
            d = np.sqrt(v - m * m)
        else:
            d = np.sqrt(v)
        d += hp["eps"]
        if hp["momentum"] > 0:
            b = buf["momentum_buffer"]
            b *= hp["momentum"]
            b += g / d
            p -= hp["lr"] * b
        else:
            p -= hp["lr"] * g / d


class Adam(Optimizer):
    """Adam, optionally AMSGrad (as torch.optim.Adam; weight decay is L2, not AdamW).

    With g = grad + weight_decay * p, buffers m (exp_avg), v (exp_avg_sq),
    v_max (max_exp_avg_sq, amsgrad only), all starting at 0, t the step number:

        m <- m + (1 - beta1) (g - m)
        v <- beta2 v + (1 - beta2) g * g
        v_max <- max(v_max, v);  use v_max for v below     (amsgrad)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    _hyper_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(module, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    @staticmethod
    def _check_hyper(hp):
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        return {
            "lr": _real("lr", hp["lr"], low=0),
            "betas": (_real("betas[0]", betas[0], low=0, high=1, high_open=True),
                      _real("betas[1]", betas[1], low=0, high=1, high_open=True)),
            "eps": _real("eps", hp["eps"], low=0),
            "weight_decay": _real("weight_decay", hp["weight_decay"], low=0),
            "amsgrad": _flag("amsgrad", hp["amsgrad"]),
        }

    @staticmethod
    def _buffers(hp):
        buffers = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
        if hp["amsgrad"]:
            buffers["max_exp_avg_sq"] = 0.0
        return buffers

    def _update(self, p, g, buf, t):
        hp = self._hp
        beta1, beta2 = hp["betas"]
        if hp["weight_decay"] != 0:
            g = g + hp["weight_decay"] * p
        m, v = buf["exp_avg"], buf["exp_avg_sq"]
        _lerp_(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        if hp["amsgrad"]:
            np.maximum(buf["max_exp_avg_sq"], v, out=buf["max_exp_avg_sq"])
            v = buf["max_exp_avg_sq"]
        step_size = hp["lr"] / (1 - beta1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + hp["eps"]
        p -= step_size * m / denom


_OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, RMSprop, Adam)}


def optimizer_from_state(module, state_dict):
    """Build the optimizer described by ``state_dict`` (from ``opt.state_dict()``) for ``module``
    and load its state into it."""
    if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("config"), Mapping):
        raise ValueError("state_dict must be a dict with a 'config' dict and an 'arrays' dict")
    name = state_dict["config"].get("type")
    cls = _OPTIMIZERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"state_dict['config']['type'] must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
    hp, _ = cls._parse_config(state_dict["config"])
    opt = cls(module, **hp)
    opt.load_state_dict(state_dict)
    return opt


# --------------------------------------------------------------------------
# gradient clipping

def _global_norm(grads):
    """L2 norm over all arrays, accumulated in float64; rescaled if the squares overflow."""
    with np.errstate(over="ignore"):
        total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if math.isinf(total) and all(np.all(np.isfinite(g)) for g in grads):
        scale = max(float(np.max(np.abs(g))) for g in grads if g.size)
        total = scale * math.sqrt(sum(float(np.sum(np.square(g / scale, dtype=np.float64))) for g in grads))
    return total


def clip_grad_norm(module, max_norm):
    """Scale all of module.grads in place so that their global L2 norm is at most max_norm.

    norm = sqrt(sum over every gradient array and element of g**2), computed in
    float64. If norm > max_norm, every gradient is multiplied by
    max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ does. (PyTorch
    also multiplies by that factor when it is below 1 although norm <= max_norm,
    i.e. when norm lies within 1e-6 of max_norm; here grads are left alone then.)
    If the norm is not finite (NaN or inf in a gradient), the gradients are left
    unchanged and the norm is returned, so the caller can skip the step.

    Returns the norm before clipping, as a float.
    """
    grads = list(_grads_of(module).values())
    max_norm = _real("max_norm", max_norm, low=0, allow_inf=True)
    norm = _global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        coef = max_norm / (norm + 1e-6)
        for g in grads:
            g *= coef
    return norm


def clip_grad_value(module, clip_value):
    """Clip every element of module.grads in place to [-clip_value, clip_value] (NaN stays NaN)."""
    grads = list(_grads_of(module).values())
    clip_value = _real("clip_value", clip_value, low=0, allow_inf=True)
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
