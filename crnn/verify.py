"""`crnn verify`: check the C core against its independent oracles.

For each configuration: forward values and every gradient against
`crnn.reference` (the notes' equations, literally), every gradient against
central finite differences (`crnn.gradcheck`), float32 against float64, and
`torch.nn.RNN` with the same weights when torch is importable and the
configuration is one nn.RNN can express. One table row per configuration;
the exit status is 1 if any check exceeds its tolerance (DESIGN.md §5).
"""
import argparse
import sys
import time

import numpy as np

from crnn import reference
from crnn.gradcheck import flatten_state, gradcheck, random_state_like
from crnn.gradcheck import scaled_error as _scaled
from crnn.layers import BiLayer, Layer, Stack

TOL = {"reference": 1e-12, "fd": 1e-7, "f32": 1e-4, "torch": 1e-10}


def _configs(level):
    """(name, module factory(dtype), T, B, tokens, lengths kind, h0, dstate)."""
    L, Bi = Layer, BiLayer
    base = [
        ("tanh", lambda dt: L(4, 6, dtype=dt, seed=1), 6, 3, False, None, False, False),
        ("relu, h0, dstate", lambda dt: L(4, 6, activation="relu", dtype=dt, seed=2), 6, 3, False, None, True, True),
        ("sigmoid, reverse, lengths", lambda dt: L(4, 5, activation="sigmoid", reverse=True, dtype=dt, seed=3), 7, 4, False, "mixed", True, True),
        ("identity, no bias", lambda dt: L(3, 4, activation="identity", bias=False, dtype=dt, seed=4), 5, 2, False, None, True, False),
        ("softmax output, tokens", lambda dt: L(7, 6, 5, output_activation="softmax", dtype=dt, seed=5), 6, 3, True, "mixed", False, True),
        ("BiLayer concat", lambda dt: Bi(4, 5, merge="concat", dtype=dt, seed=6), 6, 3, False, "mixed", True, True),
        ("Stack 2 relu Layers, tokens, lengths", lambda dt: Stack([L(6, 5, activation="relu", dtype=dt, seed=14), L(5, 5, activation="relu", dtype=dt, seed=15)]), 6, 3, True, "mixed", True, True),
        ("Stack 2 BiLayers (torch bidirectional)", lambda dt: Stack([Bi(3, 4, dtype=dt, seed=16), Bi(8, 4, dtype=dt, seed=17)]), 6, 3, False, "mixed", True, True),
        ("Stack Bi(mul) + Layer(sigmoid out)", lambda dt: Stack([Bi(5, 4, merge="mul", dtype=dt, seed=7), L(4, 3, 2, output_activation="sigmoid", dtype=dt, seed=8)]), 5, 3, True, "mixed", True, True),
    ]
    if level == "quick":
        return base[:4] + base[5:6]
    if level == "full":
        extra = []
        for f in ("tanh", "relu", "sigmoid", "identity"):
            for g in ("identity", "tanh", "relu", "sigmoid", "softmax"):
                for rev in (False, True):
                    extra.append((f"{f}/{g}{' reverse' if rev else ''}",
                                  lambda dt, f=f, g=g, rev=rev: L(3, 5, 4, activation=f, output_activation=g, reverse=rev, dtype=dt, seed=9),
                                  6, 3, False, "mixed", True, True))
        for merge in ("sum", "mean", "mul"):
            extra.append((f"BiLayer {merge}", lambda dt, m=merge: Bi(4, 5, merge=m, dtype=dt, seed=10), 6, 3, False, "mixed", True, True))
        extra.append(("Stack of 3", lambda dt: Stack([L(6, 5, dtype=dt, seed=11), Bi(5, 4, merge="sum", dtype=dt, seed=12), L(4, 4, 3, output_activation="softmax", dtype=dt, seed=13)]), 8, 4, True, "mixed", True, True))
        return base + extra
    return base


def _inputs(module, T, B, tokens, lengths_kind, with_h0, with_dstate, seed=0):
    rng = np.random.default_rng(seed)
    D = module.input_size
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    lengths = None
    if lengths_kind == "mixed":
        lengths = rng.integers(1, T + 1, B)
        lengths[0], lengths[-1] = 0, T
    y, state = module.forward(x, None, lengths)
    h0 = dstate = None
    if with_h0:
        h0 = random_state_like(state, rng)
    if with_dstate:
        dstate = random_state_like(state, rng)
    dy = rng.standard_normal(y.shape)
    return x, lengths, h0, dy, dstate


def _reference_error(module, x, lengths, h0, dy, dstate):
    y, state = module.forward(x, h0, lengths)
    module.zero_grad()
    dx, dh0 = module.backward(dy, dstate)
    cfg = module.config()
    y_ref, s_ref = reference.forward(cfg, dict(module.params), x, h0, lengths)
    g_ref, dx_ref, dh0_ref = reference.gradients(cfg, dict(module.params), x, dy, h0, lengths, dstate)
    errs = [_scaled(y, y_ref)]
    errs += [_scaled(a, b) for a, b in zip(flatten_state(state), flatten_state(s_ref))]
    errs += [_scaled(module.grads[k], g_ref[k]) for k in g_ref]
    errs += [_scaled(a, b) for a, b in zip(flatten_state(dh0), flatten_state(dh0_ref))]
    if dx_ref is not None:
        errs.append(_scaled(dx, dx_ref))
    return max(errs)


def _f32_error(factory, x, lengths, h0, dy, dstate):
    m64, m32 = factory(np.float64), factory(np.float32)
    for k in m64.params:
        m64.params[k][...] = m32.params[k]
    out = []
    for m in (m64, m32):
        y, s = m.forward(x, h0, lengths)
        m.zero_grad()
        dx, dh0 = m.backward(dy, dstate)
        out.append([y, *flatten_state(s), *flatten_state(dh0), *m.grads.values()]
                   + ([] if dx is None else [dx]))
    return max(_scaled(a, b) for a, b in zip(out[1], out[0]))


def _torch_state(module, state):
    """A crnn state (Layer array, BiLayer pair, Stack list) as nn.RNN's (L*dirs, B, H)."""
    flat = flatten_state(state)
    return np.stack(flat)


def _torch_error(module, x, lengths, h0, dy, dstate):
    """Max scaled error against torch.nn.RNN with the same weights (forward,
    final state and every gradient), or None when torch is missing or nn.RNN
    cannot express the module. Sequences of length 0, which packed sequences
    refuse, are left out of the torch run: they add nothing to any parameter
    gradient."""
    try:
        import torch
    except ImportError:
        return None
    from crnn import interop

    try:
        sd, kwargs = interop.to_torch(module)
    except ValueError:
        return None
    torch.manual_seed(0)
    rnn = torch.nn.RNN(**kwargs)
    rnn.load_state_dict(sd)
    T, B = np.shape(x)[:2]
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    keep = np.flatnonzero(lens > 0)
    y, state = module.forward(x, h0, lengths)
    module.zero_grad()
    dx, dh0 = module.backward(dy, dstate)
    x_dense = np.eye(module.input_size)[x] if dx is None else x  # tokens: one-hot for torch
    xt = torch.tensor(x_dense[:, keep], dtype=kwargs["dtype"], requires_grad=True)
    h0_full = np.zeros_like(_torch_state(module, state)) if h0 is None else _torch_state(module, h0)
    h0t = torch.tensor(h0_full[:, keep], requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lens[keep]),
                                                     enforce_sorted=False)
    yp, hn = rnn(packed, h0t)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    ds = np.zeros_like(h0_full) if dstate is None else _torch_state(module, dstate)
    mask = (np.arange(T)[:, None] < lens[None, keep])[..., None]
    dyk = np.where(mask, dy[:, keep], 0.0)
    loss = (yt * torch.from_numpy(dyk)).sum() + (hn * torch.from_numpy(ds[:, keep])).sum()
    loss.backward()
    errs = [_scaled(y[:, keep], yt.detach().numpy()),
            _scaled(_torch_state(module, state)[:, keep], hn.detach().numpy()),
            0.0 if dx is None else _scaled(dx[:, keep], xt.grad.numpy()),
            _scaled(_torch_state(module, dh0)[:, keep], h0t.grad.numpy())]
    names = {n: p for n, p in rnn.named_parameters()}
    for k, n in enumerate(module if isinstance(module, Stack) else [module]):
        parts = [("", n.fwd), ("_reverse", n.bwd)] if isinstance(n, BiLayer) else [("", n)]
        for suffix, layer in parts:
            g = layer.grads
            errs.append(_scaled(g["W_xh"], names[f"weight_ih_l{k}{suffix}"].grad.numpy()))
            errs.append(_scaled(g["W_hh"], names[f"weight_hh_l{k}{suffix}"].grad.numpy()))
            if layer.bias:
                errs.append(_scaled(g["b_h"], names[f"bias_ih_l{k}{suffix}"].grad.numpy()))
                errs.append(_scaled(g["b_h"], names[f"bias_hh_l{k}{suffix}"].grad.numpy()))
    return max(errs)


def run(level="default", out=None, use_torch=True):
    """Run every check; print the table; return True when all pass."""
    out = sys.stdout if out is None else out
    header = (f"{'configuration':38s} {'vs reference':>13s} {'vs finite diff':>15s} "
              f"{'f32 vs f64':>11s} {'vs torch':>10s}  result")
    print(f"crnn verify ({level}): max errors; tolerances: reference {TOL['reference']:.0e} "
          f"(scaled by max(1,|ref|)), finite differences {TOL['fd']:.0e} (relative), "
          f"float32 {TOL['f32']:.0e}, torch float64 {TOL['torch']:.0e}", file=out)
    print(header, file=out)
    print("-" * len(header), file=out)
    ok_all = True
    t0 = time.perf_counter()
    for name, factory, T, B, tokens, lk, with_h0, with_ds in _configs(level):
        module = factory(np.float64)
        x, lengths, h0, dy, dstate = _inputs(module, T, B, tokens, lk, with_h0, with_ds)
        e_ref = _reference_error(module, x, lengths, h0, dy, dstate)
        e_fd = max(gradcheck(module, x, h0, lengths, dy=dy, dstate=dstate).values())
        e_32 = _f32_error(factory, x, lengths, h0, dy, dstate)
        e_t = _torch_error(module, x, lengths, h0, dy, dstate) if use_torch else None
        ok = e_ref <= TOL["reference"] and e_fd <= TOL["fd"] and e_32 <= TOL["f32"]
        ok = ok and (e_t is None or e_t <= TOL["torch"])
        ok_all &= ok
        t_col = "n/a" if e_t is None else f"{e_t:.1e}"
        print(f"{name:38s} {e_ref:13.1e} {e_fd:15.1e} {e_32:11.1e} {t_col:>10s}  "
              f"{'ok' if ok else 'FAIL'}", file=out)
    print(f"{'all checks passed' if ok_all else 'SOME CHECKS FAILED'} "
          f"({time.perf_counter() - t0:.1f} s)", file=out)
    return ok_all


def add_parser(sub):
    p = sub.add_parser("verify", help="check the C core against the reference, finite "
                       "differences, float32 and (if installed) PyTorch",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", const="quick", dest="level",
                   help="a few configurations (seconds)")
    g.add_argument("--full", action="store_const", const="full", dest="level",
                   help="every activation pair, merge and a 3-layer stack")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.set_defaults(level="default", func=lambda a: 0 if run(a.level, use_torch=not a.no_torch) else 1)
