"""Vanishing and exploding gradients: the norm of dh_T/dh_k against k.

Backpropagation through time multiplies Jacobians (the notes' formula):

    dh_T/dh_k = J_T J_{T-1} ... J_{k+1},     J_j = dh_j/dh_{j-1} = diag(f'(a_j)) W_hh

so a gradient that reaches step k from step T has been multiplied T - k times
by W_hh (and by f' <= 1 for tanh). Its size is governed by W_hh's spectral
radius: below 1 it shrinks geometrically (vanishing: step k gets no learning
signal from step T), above 1 it can grow geometrically (exploding: one step
can blow the parameters away, hence gradient clipping).

For each spectral radius r (default 0.5, 1.0, 1.5) a tanh Layer (H = 64,
input D = 8, PyTorch-default W_xh and b_h) gets W_hh = r Q with Q a random
orthogonal matrix (every singular value of W_hh is then r) and reads one
sequence of T = 50 standard-normal inputs. dh_T/dh_k is computed for every k
by the C core's BPTT: the layer is run from h_k over steps k+1..T on a batch
of H copies, with dstate = the identity (copy i asks for dh_T[i]), and dh0 is
then the whole Jacobian. Its spectral norm is tabulated against T - k. The same
Jacobians are also formed as the explicit products above in NumPy, and the
largest relative difference between the two is printed.

With f = identity the norm would be exactly r^(T-k); tanh's f' < 1 makes
r = 1 decay too. --plot out.png draws the curves (log scale; needs matplotlib).
"""
import numpy as np

from crnn.demos._common import Timer, add_common, pyplot, result, save_plot
from crnn.layers import Layer


def derivative(activation, h):
    """f'(a) from h = f(a), as the C core computes it."""
    if activation == "tanh":
        return 1.0 - h * h
    if activation == "sigmoid":
        return h * (1.0 - h)
    if activation == "relu":
        return (h > 0).astype(h.dtype)
    return np.ones_like(h)


def jacobian_norms(layer, x):
    """(core, product): for k = 0..T-1, the Jacobians dh_T/dh_k (T, H, H) from the C
    core's BPTT and from the explicit product of per-step Jacobians."""
    T, H = x.shape[0], layer.hidden_size
    hs, _ = layer.forward(x)                       # hs[t] = h_{t+1}
    hs = np.array(hs[:, 0])
    states = np.vstack([np.zeros((1, H)), hs])     # states[k] = h_k
    eye = np.eye(H)
    core = np.empty((T, H, H))
    for k in range(T):
        xs = np.repeat(x[k:], H, axis=1)           # steps k+1..T, H copies
        y, _ = layer.forward(xs, h0=np.repeat(states[k][None], H, axis=0))
        layer.zero_grad()
        _, dh0 = layer.backward(np.zeros_like(y), dstate=eye)
        core[k] = dh0                              # row i: d h_T[i] / d h_k
    W = layer.params["W_hh"]
    prod = np.empty((T, H, H))
    P = np.eye(H)
    for j in range(T, 0, -1):                      # P = J_T ... J_j
        P = P @ (derivative(layer.activation, states[j])[:, None] * W)
        prod[j - 1] = P
    return core, prod


def add_arguments(p):
    add_common(p, quick_help="T=20, H=32 (under a second)")
    p.add_argument("--T", type=int, default=None, help="sequence length (default 50; quick 20)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 64; quick 32)")
    p.add_argument("--radii", type=float, nargs="+", default=[0.5, 1.0, 1.5],
                   help="spectral radii of W_hh (default 0.5 1.0 1.5)")
    p.add_argument("--activation", choices=("tanh", "relu", "sigmoid", "identity"), default="tanh")
    p.add_argument("--matrix", choices=("orthogonal", "gaussian"), default="orthogonal",
                   help="W_hh = r Q with Q orthogonal, or a Gaussian matrix scaled to spectral "
                   "radius r (default orthogonal)")
    p.add_argument("--plot", metavar="PNG", help="save the curves as a PNG (needs matplotlib)")


def run(args):
    if args.plot:
        plt = pyplot()
    clock = Timer()
    T = args.T or (20 if args.quick else 50)
    H = args.hidden or (32 if args.quick else 64)
    D = 8
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((T, 1, D))
    Z = rng.standard_normal((H, H))
    if args.matrix == "orthogonal":
        q, r_ = np.linalg.qr(Z)
        Q = q * np.sign(np.diag(r_))
    else:
        Q = Z / np.max(np.abs(np.linalg.eigvals(Z)))
    norms, worst = {}, 0.0
    for r in args.radii:
        layer = Layer(D, H, activation=args.activation, seed=args.seed)
        layer.params["W_hh"][...] = r * Q
        core, prod = jacobian_norms(layer, x)
        scale = np.maximum(np.abs(prod).max(axis=(1, 2)), 1e-300)
        worst = max(worst, float(np.max(np.abs(core - prod).max(axis=(1, 2)) / scale)))
        norms[r] = np.linalg.norm(core, ord=2, axis=(1, 2))     # spectral norm per k
    print(f"||dh_T/dh_k||_2 (spectral norm) for a {args.activation} Layer(D={D}, H={H}), "
          f"T={T}, W_hh = r x ({args.matrix} matrix), one standard-normal input sequence")
    head = f"{'T-k':>5s} " + "".join(f"{'r=' + format(r, 'g'):>12s}" for r in args.radii)
    print(head)
    print("-" * len(head))
    steps = sorted(set([1, 2, 3, 5] + list(range(10, T + 1, 10)) + [T]))
    for d in steps:
        k = T - d
        print(f"{d:5d} " + "".join(f"{norms[r][k]:12.3e}" for r in args.radii))
    rates = {r: float(norms[r][0] ** (1.0 / T)) if norms[r][0] > 0 else 0.0 for r in args.radii}
    print("\nper-step factor (||dh_T/dh_0||^(1/T)): " +
          ", ".join(f"r={r:g}: {v:.3f}" for r, v in rates.items()))
    for r in args.radii:
        n0, n1 = norms[r][0], norms[r][T - 1]
        trend = "vanishes" if n0 < n1 * 1e-2 else ("explodes" if n0 > n1 * 1e2 else "stays within 100x")
        print(f"  r={r:g}: from {n1:.3g} one step back to {n0:.3g} at {T} steps back: {trend}")
    print(f"C core's BPTT vs the explicit Jacobian product: max relative difference {worst:.1e}")
    plot = None
    if args.plot:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        d = np.arange(1, T + 1)
        for r in args.radii:
            ax.semilogy(d, norms[r][::-1], label=f"spectral radius {r:g}")
            ax.semilogy(d, r ** d, ls=":", color=ax.lines[-1].get_color(), lw=0.8)
        ax.set_xlabel("T - k (steps back)")
        ax.set_ylabel(r"$\|\partial h_T / \partial h_k\|_2$")
        ax.set_title(f"{args.activation} RNN, H={H}: gradient norm vs distance "
                     "(dotted: r^(T-k), the linear case)", fontsize=9)
        ax.legend()
        plot = save_plot(plt, fig, args.plot)
    print(f"{clock.seconds:.1f} s")
    result({"demo": "gradients", "T": T, "hidden": H, "activation": args.activation,
            "matrix": args.matrix, "radii": list(args.radii),
            "norms": {f"{r:g}": norms[r][::-1].tolist() for r in args.radii},   # index d-1: T-k = d
            "per_step_factor": {f"{r:g}": v for r, v in rates.items()},
            "core_vs_product_max_rel_diff": worst, "plot": plot, "seconds": clock.seconds,
            "seed": args.seed})
    return 0
