"""The training loop (`fit`), inference (`predict`) and text generation (`generate`).

Data is time-major, as everywhere in crnn: ``x`` is (T, N, D) floats or (T, N)
int token ids for N sequences; minibatches are slices of the N axis.

    model = crnn.Stack([crnn.Layer(V, 64, seed=0), crnn.Layer(64, 64, V, seed=1)])
    hist = crnn.train.fit(model, x, target, loss="cross_entropy_logits",
                          epochs=10, batch_size=32, bptt=50, clip_norm=1.0, seed=0)
    hist.history["loss"]          # per-epoch mean training loss
    ids = crnn.train.generate(model, prefix_ids, 200, temperature=0.8, seed=0)
"""
import math
import numbers
import sys

import numpy as np

from crnn import losses, optim
from crnn.layers import BiLayer, Layer, Stack

__all__ = ["fit", "predict", "generate", "History", "LOSSES"]


def _ce(y, target, lengths=None, reduction="mean"):
    return losses.cross_entropy(y, target, lengths, reduction=reduction)


def _ce_logits(y, target, lengths=None, reduction="mean"):
    return losses.cross_entropy(y, target, lengths, reduction=reduction, from_logits=True)


def _bce(y, target, lengths=None, reduction="mean"):
    return losses.binary_cross_entropy(y, target, lengths, reduction=reduction)


def _bce_logits(y, target, lengths=None, reduction="mean"):
    return losses.binary_cross_entropy(y, target, lengths, reduction=reduction, from_logits=True)


def _mse(y, target, lengths=None, reduction="mean"):
    return losses.mse(y, target, lengths, reduction=reduction)


#: The loss names `fit` accepts, each used with reduction="mean".
LOSSES = {
    "mse": _mse,
    "cross_entropy": _ce,                 # y: softmax probabilities; target: class ids
    "cross_entropy_logits": _ce_logits,   # y: logits (identity output)
    "bce": _bce,                          # y: sigmoid probabilities; target in [0, 1]
    "bce_logits": _bce_logits,            # y: logits
}


class History:
    """What `fit` returns, in the manner of Keras.

    history   {"loss": [per-epoch mean training loss], "val_loss": [...]};
              "val_loss" only when `validation` was given
    epoch     the 0-based indices of the epochs run
    steps     the total number of optimizer steps taken
    step_loss the loss of every optimizer step, in order
    stopped   True when a callback stopped training early
    """

    def __init__(self):
        self.history = {"loss": []}
        self.epoch = []
        self.steps = 0
        self.step_loss = []
        self.stopped = False

    def __repr__(self):
        last = {k: (v[-1] if v else None) for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, steps={self.steps}, last={last})"


# --------------------------------------------------------------------------
# helpers

def _int(value, name, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{' or None' if allow_none else ''}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _positive(value, name):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or None, got {value!r}")
    if not (value > 0) or math.isnan(value):
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def _layers(model):
    """The Layer/BiLayer modules of a model, in order."""
    return list(model.layers) if isinstance(model, Stack) else [model]


def _non_causal(model):
    """Index and description of the first layer that reads future steps, or None."""
    for i, m in enumerate(_layers(model)):
        if isinstance(m, BiLayer):
            return i, f"layer {i} is a BiLayer (its bwd half runs right to left)"
        if getattr(m, "reverse", False):
            return i, f"layer {i} is a reverse Layer (it runs right to left)"
    return None


def _take(state, idx):
    """A state structure (array, pair, list, None) restricted to the sequences `idx`."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(_take(s, idx) for s in state)
    if isinstance(state, list):
        return [_take(s, idx) for s in state]
    return np.asarray(state)[idx]


def _loss_fn(loss):
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable "
                     f"(y, target, lengths) -> (loss, dy), got {loss!r}")


def _data(x, target, lengths, many_to_one, what):
    """Check a data set; return (x, target, lengths, T, N)."""
    x = np.asarray(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{what} x must be (T, N, D) or token ids (T, N), got shape {x.shape}")
    T, N = x.shape[:2]
    if T < 1 or N < 1:
        raise ValueError(f"{what} x must have T >= 1 and N >= 1, got shape {x.shape}")
    target = np.asarray(target)
    if many_to_one:
        if target.ndim < 1 or target.shape[0] != N:
            raise ValueError(f"{what} target must be (N, ...) with N = {N} (many_to_one=True), "
                             f"got shape {target.shape}")
    elif target.ndim < 2 or target.shape[:2] != (T, N):
        raise ValueError(f"{what} target must be (T, N, ...) = ({T}, {N}, ...) like x, got shape "
                         f"{target.shape}" + ("" if target.shape[:1] != (N,) else
                                              "; pass many_to_one=True for one target per sequence"))
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.dtype == bool or not np.issubdtype(lengths.dtype, np.integer):
            raise TypeError(f"{what} lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.shape != (N,):
            raise ValueError(f"{what} lengths must have shape (N,) = ({N},), got {lengths.shape}")
        if lengths.min() < 0 or lengths.max() > T:
            raise ValueError(f"{what} lengths must lie in [0, T] = [0, {T}]")
        lengths = lengths.astype(np.int64)
    return x, target, lengths, T, N


def _chunk_loss(loss_fn, y, target, lengths, T, many_to_one, start):
    """(loss, dy, weight) for the chunk y of steps [start, start + Tc) of a minibatch.

    lengths: the minibatch's full lengths (None: all T steps valid). The
    weight is the number of valid terms the loss averages over: valid (t, b)
    positions, or, many-to-one, the sequences whose last step lies in this
    chunk. Returns None when nothing in the chunk carries loss.
    """
    Tc, B = y.shape[:2]
    full = np.full(B, T, dtype=np.int64) if lengths is None else lengths
    cl = np.clip(full - start, 0, Tc)
    if many_to_one:
        ends_here = (full > start) & (full <= start + Tc)
        weight = int(ends_here.sum())
        if weight == 0:
            return None
        loss, dy = losses.many_to_one(lambda yy, tt, lengths=None: loss_fn(yy, tt, lengths),
                                      y, target, np.where(ends_here, cl, 0))
    else:
        weight = int(cl.sum())
        if weight == 0:
            return None
        loss, dy = loss_fn(y, target, None if lengths is None else cl)
    return float(loss), dy, weight


def _grads_finite(model):
    return all(np.isfinite(g).all() for g in model.grads.values())


def _evaluate(model, loss_fn, x, target, lengths, many_to_one, batch_size):
    """The weighted mean loss over a data set, full sequences, minibatches in order."""
    N = x.shape[1]
    total = weight = 0.0
    for i in range(0, N, batch_size):
        idx = slice(i, i + batch_size)
        ln = None if lengths is None else lengths[idx]
        y, _ = model.forward(x[:, idx], None, ln)
        r = _chunk_loss(loss_fn, y, target[idx] if many_to_one else target[:, idx], ln,
                        y.shape[0], many_to_one, 0)
        if r is not None:
            total += r[0] * r[2]
            weight += r[2]
    return total / weight if weight else 0.0


# --------------------------------------------------------------------------
# fit

def fit(model, x, target, *, loss="mse", optimizer=None, epochs=1, batch_size=32, lengths=None,
        h0=None, bptt=None, clip_norm=None, clip_value=None, validation=None, shuffle=True,
        seed=None, progress=True, checkpoint=None, checkpoint_every=None, many_to_one=False,
        callback=None):
    """Train `model` (Layer, BiLayer or Stack) by minibatch gradient descent with BPTT.

    x: (T, N, D) real or (T, N) int token ids, N sequences, time-major.
    target: (T, N, ...) per-step targets ((T, N, F) for "mse"/"bce", (T, N)
        class ids for "cross_entropy*"), or (N, ...) with many_to_one=True,
        where only each sequence's last valid step is scored.
    loss: "mse", "cross_entropy" (the model ends in a softmax output),
        "cross_entropy_logits" (identity output, softmax applied by the loss),
        "bce", "bce_logits"; all with reduction="mean" (per valid element for
        mse/bce, per valid step for cross-entropy; see crnn.losses). Or a
        callable (y, target, lengths) -> (loss, dy) with any reduction; with
        many_to_one=True it is called on the last valid steps as a T = 1
        sequence, (1, B, F) and (1, B, ...) (crnn.losses.many_to_one).
    optimizer: a crnn.optim optimizer built on `model`; default Adam(model, lr=1e-3).
    epochs, batch_size: passes over the data; sequences per minibatch (the
        last minibatch of an epoch may be smaller).
    lengths: (N,) valid prefix of each sequence, or None.
    h0: initial state for all N sequences (the model's state structure with N
        rows, e.g. (N, H) for a Layer), or None (zeros); each minibatch starts
        from its rows.
    bptt: truncated BPTT chunk length k, or None. The minibatch is cut into
        chunks of k steps; the final state of each chunk is the initial state
        of the next (carried as a value: no gradient flows across chunks), the
        optimizer steps once per chunk, and lengths are cut per chunk as
        clip(lengths - start, 0, k). None or k >= T: one step per minibatch
        over the whole sequence, i.e. exact full BPTT. Truncated BPTT needs a
        causal model (no reverse Layer or BiLayer).
    clip_value, clip_norm: before each step, clip every gradient element to
        [-clip_value, clip_value], then scale the gradients to global L2 norm
        <= clip_norm (crnn.optim.clip_grad_value / clip_grad_norm).
    validation: (x, target) or (x, target, lengths), scored at the end of each
        epoch over full sequences from zero state, in minibatches of batch_size.
    shuffle, seed: minibatches are slices of a permutation of the N sequences
        drawn each epoch from np.random.default_rng(seed) (in order if
        shuffle=False). The same seed, model and optimizer give the same run.
    progress: a tqdm progress bar per epoch on stderr (False: none).
    checkpoint, checkpoint_every: a path to which {"model", "optimizer",
        "meta"} is saved with crnn.io.save (atomically) every
        `checkpoint_every` optimizer steps, or at the end of every epoch when
        checkpoint_every is None, and at the end of training; meta holds
        {"epochs_done", "epoch_step", "step", "history"} at the time of saving.
    callback: called as callback(epoch, logs, history) at the end of every
        epoch (epoch 0-based, logs {"loss": ..., "val_loss": ...}); returning
        True stops training.

    Returns a History. history["loss"][e] is epoch e's mean training loss: the
    loss of each optimizer step weighted by its number of valid terms (valid
    (t, b) positions, or sequences ending in the chunk for many-to-one), so for
    the named losses it is the mean over every valid term of the epoch (each
    computed with the parameters of its step). "val_loss" is the same over the
    validation set. Chunks with no valid term (all sequences already ended, or
    no sequence ending there for many-to-one) are run forward for the carried
    state but take no optimizer step.

    A non-finite output, loss or gradient raises FloatingPointError naming the
    epoch and step, before that step changes any parameter.
    """
    loss_fn = _loss_fn(loss)
    epochs = _int(epochs, "epochs", 0)
    batch_size = _int(batch_size, "batch_size", 1)
    bptt = _int(bptt, "bptt", 1, allow_none=True)
    clip_norm = _positive(clip_norm, "clip_norm")
    clip_value = _positive(clip_value, "clip_value")
    checkpoint_every = _int(checkpoint_every, "checkpoint_every", 1, allow_none=True)
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every needs a checkpoint path")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    many_to_one = bool(many_to_one)
    x, target, lengths, T, N = _data(x, target, lengths, many_to_one, "training")
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            raise TypeError("validation must be a tuple (x, target) or (x, target, lengths)")
        vx, vt, vl, _, _ = _data(*validation, *([None] * (3 - len(validation))),
                                 many_to_one, "validation")
    k = T if bptt is None or bptt >= T else bptt
    if k < T:
        bad = _non_causal(model)
        if bad is not None:
            raise ValueError(f"truncated BPTT (bptt={bptt} < T={T}) carries the state forward in "
                             f"time, but {bad[1]}: its state cannot be carried across chunks. "
                             "Use bptt=None (full sequences) with this model.")
    if optimizer is None:
        optimizer = optim.Adam(model, lr=1e-3)
    elif getattr(optimizer, "module", model) is not model:
        raise ValueError("optimizer was built for a different module than `model`; "
                         "build it as e.g. crnn.optim.Adam(model, lr=...)")
    if checkpoint is not None:
        from crnn import io as crnn_io  # crnn.io sits beside this module (DESIGN.md §4)

    rng = np.random.default_rng(seed)
    hist = History()
    if validation is not None:
        hist.history["val_loss"] = []
    n_batches = -(-N // batch_size)
    n_chunks = -(-T // k)

    def save_checkpoint(epoch, epoch_step):
        meta = {"epochs_done": epoch, "epoch_step": epoch_step, "step": hist.steps,
                "history": {k_: list(v) for k_, v in hist.history.items()}}
        crnn_io.save({"model": model, "optimizer": optimizer, "meta": meta}, checkpoint)

    bar_cls = None
    if progress:
        try:
            from tqdm.auto import tqdm as bar_cls
        except ImportError:  # pragma: no cover - tqdm is a declared dependency
            bar_cls = None

    for epoch in range(epochs):
        order = rng.permutation(N) if shuffle else np.arange(N)
        bar = None
        if bar_cls is not None:
            bar = bar_cls(total=n_batches * n_chunks, desc=f"epoch {epoch + 1}/{epochs}",
                          file=sys.stderr, leave=True, dynamic_ncols=True)
        total = weight = 0.0
        epoch_step = 0
        try:
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                xb = x[:, idx]
                tb = target[idx] if many_to_one else target[:, idx]
                lb = None if lengths is None else lengths[idx]
                state = _take(h0, idx)
                for c, start in enumerate(range(0, T, k)):
                    stop = min(start + k, T)
                    xc = xb if k == T else xb[start:stop]
                    cl = None if lb is None else (lb if k == T else np.clip(lb - start, 0, stop - start))
                    optimizer.zero_grad()
                    y, new_state = model.forward(xc, state, cl)
                    def where():
                        return (f"epoch {epoch + 1}, step {epoch_step + 1} of the epoch (global step "
                                f"{hist.steps + 1}; minibatch {b + 1}, chunk {c + 1})")
                    if not np.isfinite(y).all():
                        raise FloatingPointError(f"the model output is not finite at {where()}; the "
                                                 "parameters diverged: lower the learning rate or clip "
                                                 "gradients (clip_norm=...)")
                    tc = tb if (many_to_one or k == T) else tb[start:stop]
                    r = _chunk_loss(loss_fn, y, tc, lb, T, many_to_one, start)
                    state = new_state
                    if bar is not None:
                        bar.update(1)
                    if r is None:
                        continue
                    loss_value, dy, w = r
                    if not math.isfinite(loss_value):
                        raise FloatingPointError(f"non-finite loss {loss_value} at {where()}; lower the "
                                                 "learning rate or clip gradients (clip_norm=...)")
                    model.backward(dy, need_dx=False)
                    if not _grads_finite(model):
                        raise FloatingPointError(f"non-finite gradient at {where()} (loss {loss_value}); "
                                                 "lower the learning rate or clip gradients")
                    if clip_value is not None:
                        optim.clip_grad_value(model, clip_value)
                    if clip_norm is not None:
                        optim.clip_grad_norm(model, clip_norm)
                    optimizer.step()
                    hist.steps += 1
                    epoch_step += 1
                    hist.step_loss.append(loss_value)
                    total += loss_value * w
                    weight += w
                    if bar is not None:
                        bar.set_postfix(loss=f"{total / weight:.4g}", refresh=False)
                    if checkpoint_every is not None and hist.steps % checkpoint_every == 0:
                        save_checkpoint(epoch, epoch_step)
        finally:
            if bar is not None:
                bar.close()
        logs = {"loss": total / weight if weight else 0.0}
        hist.history["loss"].append(logs["loss"])
        if validation is not None:
            logs["val_loss"] = _evaluate(model, loss_fn, vx, vt, vl, many_to_one, batch_size)
            hist.history["val_loss"].append(logs["val_loss"])
        hist.epoch.append(epoch)
        if bar_cls is not None:
            msg = " - ".join(f"{k_}: {v:.4g}" for k_, v in logs.items())
            print(f"epoch {epoch + 1}/{epochs} - {msg}", file=sys.stderr)
        stop = callback is not None and callback(epoch, logs, hist) is True
        if checkpoint is not None and (checkpoint_every is None or stop or epoch == epochs - 1):
            save_checkpoint(epoch + 1, 0)   # every epoch, or at the end of training
        if stop:
            hist.stopped = True
            break
    return hist


# --------------------------------------------------------------------------
# inference

def predict(model, x, h0=None, lengths=None):
    """The model's output y (T, B, out_features) for x, as a new writable array."""
    y, _ = model.forward(x, h0, lengths)
    return np.array(y)


def _log_probs(model, y):
    """log-probabilities (float64) from one output row y (V,) of a softmax or identity output."""
    last = _layers(model)[-1]
    y = np.asarray(y, dtype=np.float64)
    if last.output_activation == "softmax":
        return np.log(np.maximum(y, np.finfo(np.float64).tiny))
    z = y - y.max()
    return z - np.log(np.exp(z).sum())


def generate(model, prefix, n, *, temperature=1.0, seed=None, h0=None, greedy=False,
             return_state=False):
    """Sample n new token ids from a language model, one step at a time.

    model: a Layer or Stack of forward (causal) layers whose layer 0 takes token
        ids (input_size = V) and whose output is a distribution over the same V
        tokens (out_features = V): softmax probabilities (output_activation
        "softmax") or logits (identity output; softmax is applied here).
    prefix: 1-D sequence of at least one token id in [0, V) (a (T, 1) array is
        accepted too). It is run through the model in one forward call; then
        each sampled token is fed back as a T = 1, B = 1 step, carrying the
        state (only the current state is kept, never the history).
    n: number of tokens to generate (>= 0).
    temperature: > 0; tokens are drawn from softmax(log p / temperature) with
        np.random.default_rng(seed) (lower: more conservative).
    greedy: take argmax p at every step instead of sampling.
    h0: the state before the prefix (B = 1 structure), or None (zeros).
    return_state: also return the state after every token of prefix + ids
        but the last one, which has not been fed yet; feeding it (ids[-1:], or
        the prefix's last id when n = 0) with this state continues the text.

    Returns an int64 array of n ids (and the state with return_state=True).
    A model with a reverse Layer or a BiLayer cannot generate step by step
    (its output at step t depends on later steps): ValueError.
    """
    if not isinstance(model, (Layer, Stack)):
        if isinstance(model, BiLayer):
            raise ValueError("a BiLayer cannot generate step by step: its bwd half reads the sequence "
                             "right to left, so its output at step t depends on tokens not generated yet")
        raise TypeError(f"model must be a Layer or Stack, got {type(model).__name__}")
    bad = _non_causal(model)
    if bad is not None:
        raise ValueError(f"this model cannot generate step by step: {bad[1]}, so its output at step t "
                         "depends on tokens not generated yet")
    V = model.input_size
    if model.out_features != V:
        raise ValueError(f"the model's output must be a distribution over its {V} input tokens, "
                         f"but out_features = {model.out_features}")
    out_act = _layers(model)[-1].output_activation
    if out_act not in ("softmax", "identity"):
        raise ValueError(f"the model's output must be softmax probabilities or identity logits, "
                         f"got output_activation={out_act!r}")
    n = _int(n, "n", 0)
    if not greedy:
        temperature = _positive(temperature, "temperature")
        if math.isinf(temperature):
            raise ValueError("temperature must be finite")
    ids = np.asarray(prefix)
    if ids.ndim == 2 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.ndim != 1 or ids.size < 1:
        raise ValueError(f"prefix must be a non-empty 1-D sequence of token ids, got shape {ids.shape}")
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"prefix must hold integer token ids, got dtype {ids.dtype}")
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    state = h0
    if n == 0:
        if return_state and ids.size > 1:
            _, state = model.forward(ids[:-1, None], h0)
        return (out, state) if return_state else out
    y, state = model.forward(ids[:, None], state)
    last = y[-1, 0]
    for i in range(n):
        logp = _log_probs(model, last)
        if greedy:
            tok = int(np.argmax(logp))
        else:
            z = logp / temperature
            p = np.exp(z - z.max())
            cdf = np.cumsum(p)
            tok = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            tok = min(tok, V - 1)
        out[i] = tok
        if i + 1 < n:
            y, state = model.forward(np.array([[tok]], dtype=np.int64), state)
            last = y[0, 0]
    return (out, state) if return_state else out
