"""The adding problem: a tanh RNN against an IRNN (ReLU, identity init).

Hochreiter & Schmidhuber (1997); Le, Jaitly & Hinton (2015), "A simple way to
initialize recurrent networks of rectified linear units". Every sequence is T
pairs (value, marker): values uniform in [0, 1]; the marker is 1 at exactly
two steps, one in the first half and one in the second, 0 elsewhere. The
target is the sum of the two marked values, read from the network's output at
the last step (many-to-one: crnn.train.fit with many_to_one=True, which scores
crnn.losses.many_to_one(mse, ...)). The first marked value must be carried
across at least T/2 steps.

Predicting 1 for every sequence (the mean of the target) gives a mean squared
error of Var(U1 + U2) = 1/6 = 0.167: the baseline to beat. Two models of the
same size, trained the same way (Adam, gradient-norm clipping):

    tanh   Layer(2, H, 1), activation tanh, default init (U(-1/sqrt(H), 1/sqrt(H)))
    IRNN   Layer(2, H, 1), activation relu, init="identity" (W_hh = I, b_h = 0)

The tanh network's gradient through W_hh shrinks with every step (see `crnn
demo gradients`), so at large T it tends to stay at the baseline for long; the
IRNN starts as a perfect memory (h_t = h_{t-1} + W_xh x_t) and learns.
"""
import numpy as np

from crnn import optim
from crnn.demos._common import Timer, add_common, result
from crnn.layers import Layer

BASELINE = 1.0 / 6.0


def make_data(T, n, rng):
    """x (T, n, 2) and target (n, 1)."""
    values = rng.uniform(0.0, 1.0, (T, n))
    markers = np.zeros((T, n))
    half = max(1, T // 2)
    first = rng.integers(0, half, n)
    second = rng.integers(half, T, n) if T > half else np.full(n, T - 1)
    second = np.where(second == first, (first + 1) % T, second)
    cols = np.arange(n)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    x = np.stack([values, markers], axis=2)
    target = (values[first, cols] + values[second, cols])[:, None]
    return x, target


def test_mse(model, x, target):
    y, _ = model.forward(x)
    return float(np.mean((y[-1] - target) ** 2))


def add_arguments(p):
    add_common(p, quick_help="T=20, small training set (seconds)")
    p.add_argument("--T", type=int, default=None, help="sequence length (default 100; quick 20)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 64; quick 32)")
    p.add_argument("--train", type=int, default=None, help="training sequences (default 10000)")
    p.add_argument("--test", type=int, default=1000, help="test sequences (default 1000)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set "
                   "(default 10; quick 4)")
    p.add_argument("--batch", type=int, default=50, help="minibatch size (default 50)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3; quick 3e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    from crnn import train

    q = args.quick
    T = args.T or (20 if q else 100)
    H = args.hidden or (32 if q else 64)
    n_train = args.train or (2000 if q else 10000)
    epochs = args.epochs or (4 if q else 10)
    lr = args.lr or (3e-3 if q else 1e-3)
    clock = Timer()
    rng = np.random.default_rng(args.seed)
    x, t = make_data(T, n_train, rng)
    xt, tt = make_data(T, args.test, rng)
    print(f"adding problem: T={T}, {n_train} training and {args.test} test sequences; "
          f"baseline (always predict 1): test MSE {BASELINE:.3f} "
          f"(measured on the test set: {float(np.mean((tt - 1.0) ** 2)):.3f})")
    print(f"training each model: {epochs} epochs, minibatches of {args.batch}, Adam lr {lr:g}, "
          f"gradient norm clipped to {args.clip:g}, full BPTT over {T} steps")
    models = {
        "tanh": Layer(2, H, 1, activation="tanh", seed=args.seed),
        "irnn": Layer(2, H, 1, activation="relu", init="identity", seed=args.seed),
    }
    out = {}
    for name, model in models.items():
        label = {"tanh": "tanh RNN, default init", "irnn": "IRNN: ReLU, identity init"}[name]
        print(f"\n{label} (H={H}, {model.num_params} parameters)")
        curve = []

        def after_epoch(epoch, logs, hist, model=model, curve=curve):
            mse = test_mse(model, xt, tt)
            curve.append(mse)
            print(f"  epoch {epoch + 1:2d}/{epochs}: training MSE {logs['loss']:.4f}, "
                  f"test MSE {mse:.4f}  [{clock.seconds:.0f} s]", flush=True)

        try:
            train.fit(model, x, t, loss="mse", optimizer=optim.Adam(model, lr=lr), epochs=epochs,
                      batch_size=args.batch, clip_norm=args.clip, many_to_one=True,
                      seed=args.seed, progress=not args.no_progress, callback=after_epoch)
            diverged = False
        except FloatingPointError as e:
            print(f"  diverged: {e}")
            diverged = True
        out[name] = {"mse": curve[-1] if curve else float("nan"), "curve": curve,
                     "diverged": diverged}

    print(f"\ntest MSE at T={T}: tanh {out['tanh']['mse']:.4f}, IRNN {out['irnn']['mse']:.4f}, "
          f"baseline {BASELINE:.4f}")
    for name in ("tanh", "irnn"):
        m = out[name]["mse"]
        verdict = "solves it" if m < 0.1 * BASELINE else ("beats the baseline" if m < BASELINE
                                                           else "does not beat the baseline")
        print(f"  {name}: {verdict}")
    print(f"{clock.seconds:.1f} s")
    result({"demo": "adding", "T": T, "hidden": H, "baseline_mse": BASELINE,
            "tanh_mse": out["tanh"]["mse"], "irnn_mse": out["irnn"]["mse"],
            "tanh_curve": out["tanh"]["curve"], "irnn_curve": out["irnn"]["curve"],
            "epochs": epochs, "train": n_train, "seconds": clock.seconds, "seed": args.seed})
    return 0
