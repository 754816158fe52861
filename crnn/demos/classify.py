"""Many-to-one classification with a BiLayer: handwritten digits read row by row.

scikit-learn's bundled `load_digits` (1,797 8x8 images of the digits 0-9,
pixel values 0-16; bundled with scikit-learn, nothing is downloaded) is read
as sequences of 8 steps, one image row of 8 pixels (scaled to [0, 1]) per
step. A seeded, stratified 75/25 split gives the training and test sets.

The model is Stack([BiLayer(8, H), Layer(2H, H, 10)]): the BiLayer reads the
rows top to bottom and bottom to top and concatenates the two hidden states
at every step; a forward Layer reads that sequence and its output at the last
step is the 10 class logits (cross-entropy from logits, many-to-one:
crnn.train.fit(..., many_to_one=True)). The second layer is what lets the
backward half count: at the last step the BiLayer's own backward output has
only seen the last row, while the top layer's last step has seen every step
of both halves.

Test accuracy is printed next to the majority-class baseline (always predict
the most frequent training class). Needs scikit-learn (only for the data):
pip install scikit-learn.
"""
import numpy as np

from crnn import optim
from crnn.demos._common import Timer, add_common, child_seeds, require, result
from crnn.layers import BiLayer, Layer, Stack


def load(seed, test_frac=0.25):
    """(x_train (8, n, 8), y_train (n,), x_test, y_test): a stratified split."""
    datasets = require("sklearn.datasets", "scikit-learn")
    d = datasets.load_digits()
    images = d.images.astype(np.float64) / 16.0            # (N, 8, 8)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test[idx[:round(len(idx) * test_frac)]] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    tr = tr[rng.permutation(len(tr))]
    seq = np.ascontiguousarray(images.transpose(1, 0, 2))   # (8 rows = steps, N, 8 pixels)
    return seq[:, tr], labels[tr], seq[:, te], labels[te]


def accuracy(model, x, y):
    out, _ = model.forward(x)
    return float(np.mean(np.argmax(out[-1], axis=1) == y))


def add_arguments(p):
    add_common(p, quick_help="a few epochs (seconds)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units per direction (default 64; quick 32)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set "
                   "(default 30; quick 4)")
    p.add_argument("--batch", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    from crnn import train

    xtr, ytr, xte, yte = load(args.seed)
    clock = Timer()
    H = args.hidden or (32 if args.quick else 64)
    epochs = args.epochs or (4 if args.quick else 30)
    counts = np.bincount(ytr, minlength=10)
    majority = int(np.argmax(counts))
    base = float(np.mean(yte == majority))
    print(f"digits (scikit-learn load_digits): {xtr.shape[1]} training and {xte.shape[1]} test "
          f"images, each read as {xtr.shape[0]} steps of {xtr.shape[2]} pixels")
    print(f"majority-class baseline (always '{majority}'): test accuracy {base:.3f}")
    seeds = child_seeds(args.seed, 2)
    model = Stack([BiLayer(8, H, merge="concat", seed=seeds[0]), Layer(2 * H, H, 10, seed=seeds[1])])
    print(f"model: Stack([BiLayer(8, {H}, concat), Layer({2 * H}, {H}, 10)]), "
          f"{model.num_params:,} parameters; {epochs} epochs, Adam lr {args.lr:g}")

    curve = []

    def after_epoch(epoch, logs, hist):
        acc = accuracy(model, xte, yte)
        curve.append(acc)
        print(f"  epoch {epoch + 1:2d}/{epochs}: training loss {logs['loss']:.4f}, "
              f"test accuracy {acc:.3f}  [{clock.seconds:.1f} s]", flush=True)

    train.fit(model, xtr, ytr, loss="cross_entropy_logits", optimizer=optim.Adam(model, lr=args.lr),
              epochs=epochs, batch_size=args.batch, clip_norm=args.clip, many_to_one=True,
              seed=args.seed, progress=not args.no_progress, callback=after_epoch)
    acc = curve[-1]
    train_acc = accuracy(model, xtr, ytr)
    print(f"\ntest accuracy {acc:.3f} (training {train_acc:.3f}) vs majority class {base:.3f}; "
          f"{clock.seconds:.1f} s")
    result({"demo": "classify", "accuracy": acc, "majority_accuracy": base, "train_accuracy": train_acc,
            "accuracy_per_epoch": curve, "train": int(xtr.shape[1]), "test": int(xte.shape[1]),
            "hidden": H, "epochs": epochs, "seconds": clock.seconds, "seed": args.seed})
    return 0
