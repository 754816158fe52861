"""The benchmark's baselines: a vectorised NumPy Elman RNN, and torch.nn.RNN
built with crnn's weights.

NumpyRNN is what a careful NumPy programmer writes for one Elman layer
(DESIGN.md §1, no output projection, no lengths):

    forward   A = X W_xh^T + b_h          one GEMM over all T*B rows
              h_t = f(a_t + h_prev W_hh^T)  a per-step loop, h_t stored
    backward  dh_prev = da_t W_hh          a per-step loop (da_t = dh_t * f'(a_t))
              dW_xh += da^T X,  dW_hh += da^T H_prev,  db_h += sum da,  dx = da W_xh
                                          whole-sequence GEMMs/reductions

Every array keeps the parameters' dtype (float32 stays float32). Per-step work
goes through preallocated buffers and `out=` so that the loop measures NumPy's
per-call cost and BLAS, not the allocator.

The torch helpers copy a crnn Layer / Stack into torch.nn.RNN (b_h goes to
bias_ih, bias_hh is zero), so every contender computes the same numbers.
"""
import numpy as np


def _act(a, act):
    """a <- f(a), in place."""
    if act == "tanh":
        np.tanh(a, out=a)
    elif act == "relu":
        np.maximum(a, 0, out=a)
    elif act == "sigmoid":   # 1 / (1 + e^-a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        a += 1
        np.reciprocal(a, out=a)


def _act_grad(v, act, out):
    """out <- f'(a), written in terms of v = f(a) as the C core does."""
    if act == "tanh":
        np.multiply(v, v, out=out)
        np.subtract(1, out, out=out)
    elif act == "relu":
        np.greater(v, 0, out=out)
    elif act == "sigmoid":
        np.subtract(1, v, out=out)
        np.multiply(out, v, out=out)
    else:
        out[...] = 1
    return out


class NumpyRNN:
    """One Elman layer in NumPy: forward(x, h0) -> (hs, h_last),
    backward(dy, dstate) -> (dx, dh0), gradients accumulated into `grads`."""

    def __init__(self, W_xh, W_hh, b_h=None, *, activation="tanh", reverse=False):
        self.W_xh = np.array(W_xh, copy=True)
        self.W_hh = np.array(W_hh, copy=True, dtype=self.W_xh.dtype)
        self.b_h = None if b_h is None else np.array(b_h, copy=True, dtype=self.W_xh.dtype)
        self.activation = activation
        self.reverse = reverse
        self.dtype = self.W_xh.dtype
        self.grads = {"W_xh": np.zeros_like(self.W_xh), "W_hh": np.zeros_like(self.W_hh)}
        if self.b_h is not None:
            self.grads["b_h"] = np.zeros_like(self.b_h)
        self._ctx = None

    @classmethod
    def from_layer(cls, layer):
        """A copy of a crnn.Layer without output projection."""
        if layer.output_size is not None:
            raise ValueError("NumpyRNN has no output projection")
        p = layer.params
        return cls(p["W_xh"], p["W_hh"], p.get("b_h"), activation=layer.activation,
                   reverse=layer.reverse)

    def _steps(self, T):
        """The forward's step order."""
        return range(T - 1, -1, -1) if self.reverse else range(T)

    def forward(self, x, h0=None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        T, B, D = x.shape
        H = self.W_hh.shape[0]
        # the input projection for all T*B rows at once; hs holds a_t, then h_t
        hs = (x.reshape(T * B, D) @ self.W_xh.T).reshape(T, B, H)
        if self.b_h is not None:
            hs += self.b_h
        W_hhT = self.W_hh.T
        rec = np.empty((B, H), self.dtype)
        prev = h0
        for t in self._steps(T):
            a = hs[t]
            if prev is not None:
                np.matmul(prev, W_hhT, out=rec)   # h_prev W_hh^T
                a += rec
            _act(a, self.activation)
            prev = a
        self._ctx = (x, h0, hs)
        return hs, prev.copy()

    def backward(self, dy, dstate=None, need_dx=True):
        x, h0, hs = self._ctx
        T, B, H = hs.shape
        D = x.shape[2]
        dy = np.asarray(dy, dtype=self.dtype)
        da = np.empty_like(hs)
        fprime = np.empty((B, H), self.dtype)
        g = np.zeros((B, H), self.dtype)          # dL/dh_t from the step after
        if dstate is not None:
            g += dstate
        for t in self._bptt_order(T):
            np.add(dy[t], g, out=da[t])             # dL/dh_t
            da[t] *= _act_grad(hs[t], self.activation, fprime)   # dL/da_t
            np.matmul(da[t], self.W_hh, out=g)      # dL/dh_prev = da_t W_hh
        dh0 = g
        # whole-sequence parameter gradients
        da2 = da.reshape(T * B, H)
        self.grads["W_xh"] += da2.T @ x.reshape(T * B, D)
        if T > 1:
            if self.reverse:   # step t's predecessor is t+1
                self.grads["W_hh"] += da[:-1].reshape(-1, H).T @ hs[1:].reshape(-1, H)
            else:
                self.grads["W_hh"] += da[1:].reshape(-1, H).T @ hs[:-1].reshape(-1, H)
        if h0 is not None:
            first = T - 1 if self.reverse else 0
            self.grads["W_hh"] += da[first].T @ h0
        if self.b_h is not None:
            self.grads["b_h"] += da2.sum(axis=0)
        dx = (da2 @ self.W_xh).reshape(T, B, D) if need_dx else None
        return dx, dh0

    def _bptt_order(self, T):
        """The forward's steps, last first."""
        return range(T) if self.reverse else range(T - 1, -1, -1)


class NumpyBiStack:
    """Layers of (forward, reverse) NumpyRNN pairs merged by concatenation: the
    NumPy twin of crnn.Stack([BiLayer(..., merge="concat"), ...])."""

    def __init__(self, pairs):
        self.pairs = pairs

    @classmethod
    def from_stack(cls, stack):
        return cls([(NumpyRNN.from_layer(m.fwd), NumpyRNN.from_layer(m.bwd)) for m in stack])

    def forward(self, x):
        for f, b in self.pairs:
            yf, _ = f.forward(x)
            yb, _ = b.forward(x)
            x = np.concatenate([yf, yb], axis=2)
        return x

    def backward(self, dy):
        for f, b in reversed(self.pairs):
            H = f.W_hh.shape[0]
            dxf, _ = f.backward(dy[..., :H])
            dxb, _ = b.backward(dy[..., H:])
            dy = dxf + dxb
        return dy


# --------------------------------------------------------------------------
# torch.nn.RNN with crnn's weights

def _torch():
    import torch
    return torch


def _torch_dtype(np_dtype):
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(np_dtype)]


def _copy_direction(rnn, suffix, layer):
    """Copy one crnn Layer into the nn.RNN parameters named *_l{k}{suffix}."""
    torch = _torch()
    p = layer.params
    with torch.no_grad():
        getattr(rnn, "weight_ih" + suffix).copy_(torch.from_numpy(np.asarray(p["W_xh"])))
        getattr(rnn, "weight_hh" + suffix).copy_(torch.from_numpy(np.asarray(p["W_hh"])))
        if "b_h" in p:
            getattr(rnn, "bias_ih" + suffix).copy_(torch.from_numpy(np.asarray(p["b_h"])))
            getattr(rnn, "bias_hh" + suffix).zero_()


def torch_rnn_from_layer(layer):
    """torch.nn.RNN (time-major, one layer) computing what `layer` computes."""
    torch = _torch()
    if layer.output_size is not None or layer.activation not in ("tanh", "relu"):
        raise ValueError("nn.RNN has tanh/relu and no output projection")
    rnn = torch.nn.RNN(layer.input_size, layer.hidden_size, num_layers=1,
                       nonlinearity=layer.activation, bias=layer.bias,
                       dtype=_torch_dtype(layer.dtype))
    if layer.reverse:
        raise ValueError("a lone reverse Layer has no nn.RNN twin")
    _copy_direction(rnn, "_l0", layer)
    return rnn


def torch_rnn_from_stack(stack):
    """torch.nn.RNN(num_layers=len(stack), bidirectional=...) with the weights
    of a crnn.Stack of Layers (all forward) or of BiLayers merged by concat."""
    torch = _torch()
    first = stack[0]
    bidir = hasattr(first, "fwd")
    if bidir and any(getattr(m, "merge", None) != "concat" for m in stack):
        raise ValueError("nn.RNN merges the two directions by concatenation only")
    rnn = torch.nn.RNN(first.input_size, first.hidden_size, num_layers=len(stack),
                       nonlinearity=first.activation, bias=first.bias,
                       bidirectional=bidir, dtype=_torch_dtype(first.dtype))
    for k, m in enumerate(stack):
        if bidir:
            _copy_direction(rnn, f"_l{k}", m.fwd)
            _copy_direction(rnn, f"_l{k}_reverse", m.bwd)
        else:
            _copy_direction(rnn, f"_l{k}", m)
    return rnn
