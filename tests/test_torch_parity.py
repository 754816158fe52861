"""crnn against torch.nn.RNN with copied weights (DESIGN.md section 5):
forward outputs, final states and every gradient (weights, both torch biases,
input, initial state) through torch autograd, float64 within 1e-10 and float32
within 1e-4, relative to max(1, |reference|).

Lengths go through torch.nn.utils.rnn.pack_padded_sequence(enforce_sorted=
False). torch refuses length 0 in a packed sequence, so rows of length 0 are
checked against DESIGN.md's rule (h_last = h0, zero output, dh0 = dstate)
while the other rows of the same batch are checked against torch.
"""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import crnn  # noqa: E402
from crnn import interop  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-4}
T, B, D, H = 7, 4, 3, 5
LENGTHS = np.array([7, 3, 1, 5])  # unsorted, with a full-length and a length-1 row


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _err(a, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return np.max(np.abs(np.asarray(a, dtype=np.float64) - ref)) / max(1.0, np.max(np.abs(ref)))


def _crnn_state(h, L, bidirectional):
    """torch's (L * dirs, B, H) as crnn's state list."""
    return [(h[2 * k], h[2 * k + 1]) if bidirectional else h[k] for k in range(L)]


def _torch_state(states, bidirectional):
    return np.stack([h for s in states for h in (s if bidirectional else [s])])


def _crnn_key(torch_name, bidirectional):
    """weight_ih_l1_reverse -> 1.bwd.W_xh; both biases map to b_h."""
    kind, rest = torch_name.split("_l")
    k, _, rev = rest.partition("_")
    prefix = f"{k}." + (("bwd." if rev else "fwd.") if bidirectional else "")
    return prefix + {"weight_ih": "W_xh", "weight_hh": "W_hh", "bias_ih": "b_h",
                     "bias_hh": "b_h"}[kind]


def run_torch(rnn, x, h0, lengths, dy, dhn):
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    if lengths is None:
        y, hn = rnn(xt, h0t)
    else:
        packed = pack_padded_sequence(xt, torch.as_tensor(lengths), enforce_sorted=False)
        out, hn = rnn(packed, h0t)
        y, _ = pad_packed_sequence(out, total_length=x.shape[0])
    loss = (y * torch.tensor(dy)).sum() + (hn * torch.tensor(dhn)).sum()
    rnn.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in rnn.named_parameters()}
    return y.detach().numpy(), hn.detach().numpy(), xt.grad.numpy(), h0t.grad.numpy(), grads


def run_crnn(stack, x, h0, lengths, dy, dhn, L, bidirectional):
    y, states = stack.forward(x, _crnn_state(h0, L, bidirectional), lengths)
    stack.zero_grad()
    dx, dh0 = stack.backward(dy, _crnn_state(dhn, L, bidirectional))
    return (y, _torch_state(states, bidirectional), dx, _torch_state(dh0, bidirectional),
            {k: v.copy() for k, v in stack.grads.items()})


def _data(rng, L, bidirectional, dtype, Bsize=B):
    dirs = 2 if bidirectional else 1
    x = rng.standard_normal((T, Bsize, D)).astype(dtype)
    h0 = rng.uniform(-0.5, 0.5, (L * dirs, Bsize, H)).astype(dtype)
    dy = rng.standard_normal((T, Bsize, dirs * H)).astype(dtype)
    dhn = rng.standard_normal((L * dirs, Bsize, H)).astype(dtype)
    return x, h0, dy, dhn


def compare(rnn, stack, x, h0, lengths, dy, dhn, tol):
    L, bidirectional = rnn.num_layers, rnn.bidirectional
    y_t, hn_t, dx_t, dh0_t, g_t = run_torch(rnn, x, h0, lengths, dy, dhn)
    y_c, hn_c, dx_c, dh0_c, g_c = run_crnn(stack, x, h0, lengths, dy, dhn, L, bidirectional)
    assert y_c.dtype == x.dtype
    checks = {"y": (y_c, y_t), "h_n": (hn_c, hn_t), "dx": (dx_c, dx_t), "dh0": (dh0_c, dh0_t)}
    for name, grad in g_t.items():
        checks["d" + name] = (g_c[_crnn_key(name, bidirectional)], grad)
    assert set(g_c) == {_crnn_key(n, bidirectional) for n in g_t}
    errors = {name: _err(a, ref) for name, (a, ref) in checks.items()}
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"beyond {tol}: {bad}"


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


GRID = list(itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True],
                              [None, "packed"], [np.float64, np.float32]))


@pytest.mark.parametrize("L, act, bias, bidirectional, lengths, dtype", GRID,
                         ids=[f"L{c[0]}-{c[1]}-{'bias' if c[2] else 'nobias'}-"
                              f"{'bi' if c[3] else 'uni'}-{c[4] or 'full'}-{c[5].__name__}"
                              for c in GRID])
def test_from_torch_parity(L, act, bias, bidirectional, lengths, dtype):
    torch.manual_seed(L * 100 + bias * 10 + bidirectional)
    rnn = torch.nn.RNN(D, H, num_layers=L, nonlinearity=act, bias=bias,
                       bidirectional=bidirectional, dtype=_torch_dtype(dtype))
    with torch.no_grad():  # biases that differ, so that b_ih + b_hh is really tested
        for name, p in rnn.named_parameters():
            if name.startswith("bias_hh"):
                p.uniform_(-0.8, 0.8)
    stack = interop.from_torch(rnn)
    assert stack.dtype == dtype and len(stack) == L and stack.batch_first is False
    rng = np.random.default_rng(L)
    x, h0, dy, dhn = _data(rng, L, bidirectional, dtype)
    compare(rnn, stack, x, h0, None if lengths is None else LENGTHS, dy, dhn, TOL[dtype])


@pytest.mark.parametrize("L", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_to_torch_parity_and_round_trip(L, bidirectional, dtype):
    """crnn -> to_torch -> nn.RNN computes the same; -> from_torch gives back
    the very same parameters (bitwise)."""
    mod = crnn.BiLayer if bidirectional else crnn.Layer
    width = 2 * H if bidirectional else H
    stack = crnn.Stack([mod(D if k == 0 else width, H, activation="relu", dtype=dtype, seed=k)
                        for k in range(L)])
    sd, kwargs = interop.to_torch(stack)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert kwargs["dtype"] == _torch_dtype(dtype)
    rnn = torch.nn.RNN(**kwargs)
    rnn.load_state_dict(sd)
    assert all(p.dtype == _torch_dtype(dtype) for p in rnn.parameters())
    back = interop.from_torch(rnn)
    assert list(back.params) == list(stack.params) and back.dtype == dtype
    for k in stack.params:
        assert np.array_equal(back.params[k], stack.params[k]), k
    rng = np.random.default_rng(7)
    x, h0, dy, dhn = _data(rng, L, bidirectional, dtype)
    compare(rnn, stack, x, h0, LENGTHS, dy, dhn, TOL[dtype])


def test_to_torch_tensors_do_not_share_memory():
    layer = crnn.Layer(D, H, seed=0)
    sd, _ = interop.to_torch(layer)
    sd["weight_ih_l0"].zero_()
    assert layer.params["W_xh"].any()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_length_zero_rows(bidirectional):
    """torch refuses length 0; crnn gives h_last = h0, zero outputs, dx = 0 and
    dh0 = dstate on such rows, and the other rows agree with torch."""
    with pytest.raises(RuntimeError):
        pack_padded_sequence(torch.zeros(3, 2, 1), torch.tensor([3, 0]), enforce_sorted=False)
    L = 2
    torch.manual_seed(3)
    rnn = torch.nn.RNN(D, H, num_layers=L, bidirectional=bidirectional, dtype=torch.float64)
    stack = interop.from_torch(rnn)
    rng = np.random.default_rng(3)
    x, h0, dy, dhn = _data(rng, L, bidirectional, np.float64)
    lengths = np.array([4, 0, 7, 2])
    y, hn, dx, dh0, grads = run_crnn(stack, x, h0, lengths, dy, dhn, L, bidirectional)
    assert not y[:, 1].any() and not dx[:, 1].any()
    assert np.array_equal(hn[:, 1], h0[:, 1])
    assert np.array_equal(dh0[:, 1], dhn[:, 1])
    keep = [0, 2, 3]
    y_t, hn_t, dx_t, dh0_t, g_t = run_torch(rnn, x[:, keep], h0[:, keep], lengths[keep],
                                            dy[:, keep], dhn[:, keep])
    for a, ref in [(y[:, keep], y_t), (hn[:, keep], hn_t), (dx[:, keep], dx_t),
                   (dh0[:, keep], dh0_t)]:
        assert _err(a, ref) <= TOL[np.float64]
    for name, g in g_t.items():  # the length-0 row adds nothing to any weight gradient
        assert _err(grads[_crnn_key(name, bidirectional)], g) <= TOL[np.float64]


def test_batch_first_is_recorded():
    torch.manual_seed(4)
    rnn = torch.nn.RNN(D, H, batch_first=True, dtype=torch.float64)
    stack = interop.from_torch(rnn)
    assert stack.batch_first is True
    x = np.random.default_rng(4).standard_normal((B, T, D))  # batch-major
    y_t, h_t = rnn(torch.tensor(x))
    y, h = stack.forward(x.transpose(1, 0, 2))  # crnn is time-major: transpose yourself
    assert _err(y.transpose(1, 0, 2), y_t.detach().numpy()) <= 1e-10
    assert _err(h, h_t.detach().numpy()[0]) <= 1e-10


def test_dropout_warns_and_matches_eval_mode():
    torch.manual_seed(5)
    rnn = torch.nn.RNN(D, H, num_layers=2, dropout=0.3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="eval"):
        stack = interop.from_torch(rnn)
    rnn.eval()
    x = np.random.default_rng(5).standard_normal((T, B, D))
    y_t, _ = rnn(torch.tensor(x))
    assert _err(stack.forward(x)[0], y_t.detach().numpy()) <= 1e-10


def test_from_torch_state_dict_of_tensors():
    torch.manual_seed(6)
    rnn = torch.nn.RNN(D, H, num_layers=2, nonlinearity="relu", dtype=torch.float64)
    sd = dict(rnn.named_parameters())  # Parameters that require grad
    stack = interop.from_torch(sd, nonlinearity="relu")
    assert stack.batch_first is None and stack[0].activation == "relu"
    ref = interop.from_torch(rnn)
    for k in ref.params:
        assert np.array_equal(stack.params[k], ref.params[k])
    b = (rnn.bias_ih_l1.detach().double() + rnn.bias_hh_l1.detach().double()).numpy()
    assert np.array_equal(stack.params["1.b_h"], b)


def test_from_torch_float32_bias_rounded_once():
    torch.manual_seed(7)
    rnn = torch.nn.RNN(D, H)  # float32
    stack = interop.from_torch(rnn)
    assert stack.dtype == np.float32
    b64 = rnn.bias_ih_l0.detach().double() + rnn.bias_hh_l0.detach().double()
    assert np.array_equal(stack.params["0.b_h"], b64.numpy().astype(np.float32))
    assert interop.from_torch(rnn, dtype=np.float64).dtype == np.float64


def test_from_torch_refusals():
    with pytest.raises(ValueError, match="LSTM or GRU"):
        interop.from_torch(torch.nn.LSTM(D, H))
    with pytest.raises(ValueError, match="LSTM or GRU"):
        interop.from_torch(torch.nn.GRU(D, H))
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch(torch.nn.LSTM(D, H, proj_size=2).state_dict())
    with pytest.raises(ValueError, match="contradicts"):
        interop.from_torch(torch.nn.RNN(D, H), nonlinearity="relu")
    with pytest.raises(ValueError, match="prefix"):
        interop.from_torch(torch.nn.Sequential(torch.nn.RNN(D, H)).state_dict())
    with pytest.raises(TypeError, match="torch.nn.RNN or its state_dict"):
        interop.from_torch(torch.zeros(3))
