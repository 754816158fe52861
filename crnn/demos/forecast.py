"""Forecasting a real series: yearly sunspot numbers, one step and many steps ahead.

The series is the yearly mean sunspot number 1700-2008 (309 values; public
domain data of NOAA's National Geophysical Data Center / SILSO, shipped in
crnn/data/sunspots_yearly.csv; see crnn/data/README.md), or a column of your
own CSV file (--csv FILE --column NAME). The first 80% is the training span,
the rest the test span.

The model is one Elman layer, Layer(1, H, 1): it reads a window of the last
--window values (standardised with the training span's mean and standard
deviation) and its output at each step predicts the next value. It is trained
on every window of the training span, with the loss at every step
(crnn.train.fit, full BPTT over the window, Adam, gradient clipping).

One step ahead: for every test year t, the window ending at t (true values)
predicts t + 1. Multi-step: from every test origin, the model's own
predictions are fed back as inputs for --horizon steps (the window slides over
them). Both are scored by RMSE in the series' units, next to two baselines:

    persistence       the next value equals the last one seen (every step of a
                      multi-step forecast: the value at the origin)
    seasonal naive    the value one season earlier (--season; 11 years for the
                      sunspot cycle)

--plot out.png draws the test span with both forecasts (needs matplotlib).
"""
import csv
import os

import numpy as np

from crnn import optim
from crnn.demos._common import Timer, add_common, pyplot, result, save_plot
from crnn.layers import Layer

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "sunspots_yearly.csv")
TRAIN_FRAC = 0.8


def read_series(path, column, time_column=None):
    """(values (n,) float64, time labels (n,) or None) from a CSV file with a header row."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise SystemExit(f"crnn demo forecast: {path} has no column {column!r} "
                             f"(its columns: {reader.fieldnames})")
        if time_column is None and reader.fieldnames and reader.fieldnames[0] != column:
            time_column = reader.fieldnames[0]
        values, labels = [], []
        for row in reader:
            v = (row.get(column) or "").strip()
            if not v:
                continue
            try:
                values.append(float(v))
            except ValueError:
                raise SystemExit(f"crnn demo forecast: {path}: {column}={v!r} is not a number") from None
            labels.append(row.get(time_column) if time_column else None)
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 30 or not np.isfinite(values).all():
        raise SystemExit(f"crnn demo forecast: {path}:{column} needs at least 30 finite values, "
                         f"got {len(values)}")
    return values, labels


def windows(z, W, start, stop):
    """Input/target windows of length W whose targets lie in [start + 1, stop):
    x (W, n, 1), target (W, n, 1)."""
    idx = np.arange(start, stop - W)
    x = np.stack([z[i:i + W] for i in idx], axis=1)[:, :, None]
    t = np.stack([z[i + 1:i + W + 1] for i in idx], axis=1)[:, :, None]
    return x, t


def predict_next(model, ctx):
    """The model's prediction of the next value after each context window ctx (n, W)."""
    y, _ = model.forward(ctx.T[:, :, None])
    return np.array(y[-1, :, 0])


def multi_step(model, z, origins, W, h):
    """(len(origins), h): forecasts of z[o+1 .. o+h] from the true values up to o, feeding back."""
    ctx = np.stack([z[o - W + 1:o + 1] for o in origins])
    out = np.empty((len(origins), h))
    for j in range(h):
        nxt = predict_next(model, ctx)
        out[:, j] = nxt
        ctx = np.concatenate([ctx[:, 1:], nxt[:, None]], axis=1)
    return out


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def add_arguments(p):
    add_common(p, quick_help="fewer epochs (seconds)")
    p.add_argument("--csv", metavar="FILE", help="your own series: a CSV file with a header row")
    p.add_argument("--column", metavar="NAME", help="the column of --csv to forecast")
    p.add_argument("--season", type=int, default=None, help="season length of the seasonal-naive "
                   "baseline (default 11 for the sunspots; none for --csv unless given)")
    p.add_argument("--window", type=int, default=24, help="context window in steps (default 24)")
    p.add_argument("--horizon", type=int, default=None, help="multi-step horizon (default the "
                   "season, else 10)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training windows "
                   "(default 100; quick 40)")
    p.add_argument("--batch", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (default 1)")
    p.add_argument("--plot", metavar="PNG", help="save a plot of the test span (needs matplotlib)")


def run(args):
    from crnn import train

    if args.plot:
        plt = pyplot()  # fail early, before training, when matplotlib is missing
    if (args.csv is None) != (args.column is None):
        raise SystemExit("crnn demo forecast: --csv and --column go together")
    clock = Timer()
    if args.csv:
        series, labels = read_series(args.csv, args.column)
        name = f"{args.csv}:{args.column}"
        season = args.season
    else:
        series, labels = read_series(DATA, "SUNACTIVITY", "YEAR")
        labels = [int(float(v)) for v in labels]
        name = "yearly sunspot numbers 1700-2008 (NOAA NGDC / SILSO, public domain)"
        season = args.season or 11
    horizon = args.horizon or season or 10
    W = args.window
    n = len(series)
    split = round(n * TRAIN_FRAC)          # series[:split] is the training span
    if split - W < 8 or n - split < max(horizon, 2) or split < W + 1:
        raise SystemExit(f"crnn demo forecast: {n} values are too few for --window {W}")
    mu, sd = series[:split].mean(), series[:split].std() or 1.0
    z = (series - mu) / sd
    epochs = args.epochs or (40 if args.quick else 100)

    print(f"series: {name}: {n} values; training span {labels[0]}-{labels[split - 1]} ({split}), "
          f"test span {labels[split]}-{labels[-1]} ({n - split})")
    x, t = windows(z, W, 0, split)
    print(f"model: Layer(1, {args.hidden}, 1) tanh over windows of {W} steps; {x.shape[1]} training "
          f"windows, {epochs} epochs, Adam lr {args.lr:g}, clip {args.clip:g}")
    model = Layer(1, args.hidden, 1, seed=args.seed)
    hist = train.fit(model, x, t, loss="mse", optimizer=optim.Adam(model, lr=args.lr), epochs=epochs,
                     batch_size=args.batch, clip_norm=args.clip, seed=args.seed, progress=False)
    print(f"training MSE (standardised units): first epoch {hist.history['loss'][0]:.4f}, "
          f"last {hist.history['loss'][-1]:.4f}  [{clock.seconds:.1f} s]")

    # one step ahead: predict series[t + 1] for t = split - 1 .. n - 2
    origins = np.arange(split - 1, n - 1)
    ctx = np.stack([z[o - W + 1:o + 1] for o in origins])
    one = predict_next(model, ctx) * sd + mu
    actual = series[origins + 1]
    res = {"rnn": rmse(one, actual), "persistence": rmse(series[origins], actual)}
    if season:
        res["seasonal_naive"] = rmse(series[origins + 1 - season], actual)

    # multi-step: from every origin with `horizon` test values after it
    m_orig = np.arange(split - 1, n - horizon)
    paths = multi_step(model, z, m_orig, W, horizon) * sd + mu
    truth = np.stack([series[o + 1:o + 1 + horizon] for o in m_orig])
    mres = {"rnn": rmse(paths, truth),
            "persistence": rmse(np.repeat(series[m_orig][:, None], horizon, axis=1), truth)}
    if season:
        steps = np.arange(1, horizon + 1)
        back = season * np.ceil(steps / season).astype(int)   # within known values
        mres["seasonal_naive"] = rmse(series[m_orig[:, None] + steps[None] - back[None]], truth)
    per_h = [rmse(paths[:, j], truth[:, j]) for j in range(horizon)]

    print(f"\none step ahead, test RMSE over {len(origins)} steps (series units):")
    for k, v in res.items():
        print(f"  {k:15s} {v:8.2f}")
    print(f"multi-step (predictions fed back), {horizon} steps from each of {len(m_orig)} origins, "
          f"RMSE over all:")
    for k, v in mres.items():
        print(f"  {k:15s} {v:8.2f}")
    print("  rnn by horizon: " + " ".join(f"{v:.1f}" for v in per_h))
    beat = res["rnn"] < res["persistence"]
    print(f"one-step RNN {'beats' if beat else 'does NOT beat'} persistence "
          f"({res['rnn']:.2f} vs {res['persistence']:.2f})")

    plot = None
    if args.plot:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        lo = max(0, split - 3 * W)
        xs = np.array(labels[lo:], dtype=float) if not args.csv else np.arange(lo, n)
        tx = xs[origins + 1 - lo]
        ax.plot(xs, series[lo:], color="black", lw=1.2, label="actual")
        ax.plot(tx, one, color="tab:blue", lw=1.2, label=f"RNN one step ahead (RMSE {res['rnn']:.1f})")
        if season:
            ax.plot(tx, series[origins + 1 - season], color="tab:gray", lw=0.8, ls=":",
                    label=f"seasonal naive (RMSE {res['seasonal_naive']:.1f})")
        for i, o in enumerate(m_orig[::max(1, horizon)]):
            j = list(m_orig).index(o)
            ax.plot(xs[o - lo:o - lo + horizon + 1], np.r_[series[o], paths[j]], color="tab:red",
                    lw=1.0, alpha=0.8, label=(f"RNN {horizon} steps fed back (RMSE {mres['rnn']:.1f})"
                                              if i == 0 else None))
        ax.axvline(xs[split - lo], color="gray", lw=0.8)
        ax.set_title(f"{name if args.csv else 'yearly sunspot numbers'}: test span forecasts")
        ax.legend(loc="upper left", fontsize=8)
        plot = save_plot(plt, fig, args.plot)
    print(f"{clock.seconds:.1f} s")
    result({"demo": "forecast", "series": "sunspots" if not args.csv else name,
            "one_step_rmse": res, "multi_step_rmse": mres, "horizon": horizon,
            "multi_step_rmse_by_horizon": per_h, "rmse": res["rnn"],
            "persistence_rmse": res["persistence"], "seasonal_naive_rmse": res.get("seasonal_naive"),
            "season": season, "test_points": len(origins), "epochs": epochs,
            "plot": plot, "seconds": clock.seconds, "seed": args.seed})
    return 0
