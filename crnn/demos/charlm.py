"""Character-level language model, trained on the standard library's own source.

Text every Python installation carries: a fixed list of 40 modules of the
standard library (argparse.py, textwrap.py, ..., trace.py; see STDLIB_FILES;
about 1.36 million characters on Python 3.11), read from
sysconfig.get_paths()["stdlib"] (a module that a Python version lacks is
skipped; the list used is printed), or your own UTF-8 file with --text. The
last 10% of every file (cut at a line start) is held out; the rest is training
text. The vocabulary is every character seen at least 5 times in the training
text, plus one id for any other character.

The model is Stack([Layer(V, 192), Layer(192, 192, V)]) (tanh): layer 0 takes
character ids (one-hot input, computed as a gather of W_xh's columns), the
last projects to one logit per character. The output is logits (identity
output activation) and the loss is cross-entropy from logits (log-sum-exp
inside the loss) rather than a softmax output layer with probability
cross-entropy: the same model, but the loss gradient is softmax(z) - onehot
in one stable step, with no division by a probability that may underflow,
and sampling at a temperature divides the logits directly.

Training is truncated BPTT with state carry (crnn.train.fit with bptt=32):
the training text is cut into 64 parallel streams; each chunk of 32 steps
starts from the previous chunk's final state (no gradient flows across
chunks); Adam (lr 3e-3, times 0.75 after every epoch), gradient norm clipped
to 5; 5 passes over the text. After every epoch the held-out bits per
character (cross-entropy / ln 2, averaged over every held-out character) are
printed next to the unigram baseline: the training text's character
frequencies (add-one smoothed) scored on the same held-out characters. On
Python 3.11 the default run reaches about 1.9 bits/char against the unigram's
4.44, in about 2 minutes on 2 cores.

The trained model is saved with crnn.io.save, by default to ./charlm.npz in
the current directory, with the vocabulary in the file's meta, so that

    crnn sample charlm.npz --prefix "def " -n 400 --temperature 0.7

continues a prefix from it. Runs in float32 by default (about twice the speed
of float64, the library's reference default; --dtype float64 to change it).
"""
import math
import os
import sys
import sysconfig

import numpy as np

from crnn import losses, optim
from crnn.demos._common import LN2, Timer, add_common, child_seeds, result
from crnn.layers import Layer, Stack

#: The standard-library modules read by default, in this order.
STDLIB_FILES = (
    "argparse", "textwrap", "shlex", "fractions", "heapq", "bisect", "functools", "dataclasses",
    "enum", "difflib", "pprint", "statistics", "calendar", "configparser", "csv", "gettext",
    "glob", "fnmatch", "tempfile", "shutil", "random", "subprocess", "contextlib", "copy",
    "queue", "sched", "tokenize", "ast", "string", "numbers", "operator", "weakref",
    "posixpath", "base64", "ipaddress", "threading", "uuid", "socket", "smtplib", "trace",
)
QUICK_FILES = ("textwrap", "shlex", "fnmatch", "glob", "bisect", "copy")
UNK = "\ufffd"          # vocabulary entry 0: any character not in the training text
HELD_OUT = 0.10
MIN_COUNT = 5           # rarer training characters are read as UNK
FORMAT_TAG = "crnn.demos.charlm/1"


# --------------------------------------------------------------------------
# text

def stdlib_files(names=STDLIB_FILES):
    """[(module name, path)] of the listed modules that this Python has (NAME.py or NAME/__init__.py)."""
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for name in names:
        for rel in (f"{name}.py", os.path.join(name, "__init__.py")):
            path = os.path.join(root, rel)
            if os.path.isfile(path):
                found.append((name, path))
                break
    return found


def _split(text, frac=HELD_OUT):
    """(head, tail): tail is the last `frac` of text, starting at a line start."""
    cut = int(len(text) * (1 - frac))
    nl = text.find("\n", cut)
    cut = len(text) if nl < 0 else nl + 1
    return text[:cut], text[cut:]


def load_corpus(text_file=None, names=STDLIB_FILES, max_chars=None):
    """(train text, held-out text, description)."""
    if text_file is not None:
        with open(text_file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if max_chars:
            text = text[:max_chars]
        if len(text) < 1000:
            raise SystemExit(f"crnn demo charlm: {text_file} holds {len(text)} characters; "
                             "it needs at least 1000")
        train, held = _split(text)
        return train, held, f"{text_file} ({len(text):,} characters)"
    files = stdlib_files(names)
    if not files:
        raise SystemExit("crnn demo charlm: none of the standard-library files was found under "
                         f"{sysconfig.get_paths()['stdlib']}; pass --text FILE")
    train, held = [], []
    for _, path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            a, b = _split(f.read())
        train.append(a)
        held.append(b)
    train, held = "".join(train), "".join(held)
    if max_chars and len(train) + len(held) > max_chars:
        k = max_chars / (len(train) + len(held))
        train, held = train[:int(len(train) * k)], held[:int(len(held) * k)]
    desc = (f"{len(files)} standard-library modules of Python {sys.version.split()[0]} "
            f"({', '.join(n for n, _ in files)}) from {sysconfig.get_paths()['stdlib']}")
    return train, held, desc


class Vocab:
    """Characters <-> ids; id 0 is UNK (any character not seen in training)."""

    def __init__(self, chars):
        self.chars = list(chars)
        if not self.chars or self.chars[0] != UNK:
            raise ValueError("a charlm vocabulary starts with the UNK entry")
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text, min_count=MIN_COUNT):
        """UNK, then every character seen at least min_count times in `text`, sorted."""
        from collections import Counter

        counts = Counter(text)
        return cls([UNK] + sorted(c for c, k in counts.items() if k >= min_count and c != UNK))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        get = self.index.get
        return np.fromiter((get(c, 0) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


def unigram_bpc(train_ids, held_ids, V):
    """Bits per character of add-one-smoothed training frequencies on the held-out ids."""
    counts = np.bincount(train_ids, minlength=V).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[held_ids].mean() / LN2)


def streams(ids, n):
    """Input and next-character target, cut into n parallel streams: two (L, n) arrays."""
    L = (len(ids) - 1) // n
    if L < 2:
        raise SystemExit(f"crnn demo charlm: {len(ids)} characters are too few for {n} streams")
    x = ids[:n * L].reshape(n, L).T
    t = ids[1:n * L + 1].reshape(n, L).T
    return np.ascontiguousarray(x), np.ascontiguousarray(t)


def heldout_bpc(model, ids, n_streams=16):
    """Bits per character of the model on `ids` (every character after the first of
    each of n_streams streams, each run from a zero state)."""
    n_streams = max(1, min(n_streams, (len(ids) - 1) // 2))
    x, t = streams(ids, n_streams)
    y, _ = model.forward(x)
    loss, _ = losses.cross_entropy(y, t, reduction="mean", from_logits=True)
    return loss / LN2


# --------------------------------------------------------------------------
# model

def build_model(V, hidden, layers, dtype, seed):
    seeds = child_seeds(seed, layers)
    mods = []
    for i in range(layers):
        last = i == layers - 1
        mods.append(Layer(V if i == 0 else hidden, hidden, V if last else None,
                          dtype=dtype, seed=seeds[i]))
    return Stack(mods)


def load_model(path):
    """(model, Vocab, meta) from a file written by this demo."""
    from crnn import io as crnn_io

    ck = crnn_io.load(path)
    if isinstance(ck, dict):
        model, meta = ck["model"], ck.get("meta") or {}
    else:
        model, meta = ck, {}
    vocab = meta.get("vocab")
    if meta.get("format") != FORMAT_TAG or not isinstance(vocab, list):
        raise SystemExit(f"crnn sample: {path} is not a model saved by `crnn demo charlm` "
                         "(its meta has no vocabulary)")
    return model, Vocab(vocab), meta


def sample_text(model, vocab, prefix, n, temperature, seed):
    from crnn import train

    ids = vocab.encode(prefix) if prefix else np.array([vocab.index.get("\n", 0)])
    out = train.generate(model, ids, n, temperature=temperature, seed=seed)
    return vocab.decode(out)


# --------------------------------------------------------------------------
# the demo

def add_arguments(p):
    add_common(p, quick_help="6 small modules, a small model, a few seconds")
    p.add_argument("--text", metavar="FILE", help="train on this UTF-8 text file instead of the "
                   "standard library's source")
    p.add_argument("--max-chars", type=int, default=None, help="use at most this many characters")
    p.add_argument("--hidden", type=int, default=None, help="hidden units per layer (default 192; "
                   "quick 64)")
    p.add_argument("--layers", type=int, default=None, help="number of Elman layers (default 2; quick 1)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the text (default 5; quick 2)")
    p.add_argument("--batch", type=int, default=None, help="parallel streams (default 64; quick 32)")
    p.add_argument("--bptt", type=int, default=None, help="truncated-BPTT chunk length (default 32)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3; quick 1e-2)")
    p.add_argument("--lr-decay", type=float, default=None, help="the learning rate is multiplied by "
                   "this after every epoch (default 0.75; quick 1)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (default 5)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--prefix", default="def ", help="text the sample continues (default 'def ')")
    p.add_argument("-n", "--sample-chars", type=int, default=None, help="characters to sample "
                   "(default 600; quick 100)")
    p.add_argument("--save", metavar="PATH", default="charlm.npz", help="where to save the model "
                   "(default ./charlm.npz in the current directory; '' to not save)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _defaults(args):
    q = args.quick
    d = dict(hidden=64 if q else 192, layers=1 if q else 2, epochs=2 if q else 5,
             batch=32 if q else 64, bptt=32, lr=1e-2 if q else 3e-3,
             sample_chars=100 if q else 600, lr_decay=1.0 if q else 0.75)
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.max_chars is None and q:
        args.max_chars = 60_000


def run(args):
    from crnn import io as crnn_io
    from crnn import train

    _defaults(args)
    clock = Timer()
    names = QUICK_FILES if args.quick else STDLIB_FILES
    train_text, held_text, desc = load_corpus(args.text, names, args.max_chars)
    vocab = Vocab.from_text(train_text)
    V = len(vocab)
    tr_ids, ho_ids = vocab.encode(train_text), vocab.encode(held_text)
    print(f"text: {desc}")
    print(f"      {len(train_text):,} training characters, {len(held_text):,} held out "
          f"(the last {HELD_OUT:.0%} of each file); vocabulary {V} characters (id 0: any character "
          f"seen fewer than {MIN_COUNT} times in training)")
    base = unigram_bpc(tr_ids, ho_ids, V)
    print(f"unigram baseline (training-text character frequencies): {base:.3f} bits/char held out")

    dtype = np.dtype(args.dtype)
    model = build_model(V, args.hidden, args.layers, dtype, args.seed)
    opt = optim.Adam(model, lr=args.lr)
    x, t = streams(tr_ids, args.batch)
    steps = args.epochs * math.ceil(x.shape[0] / args.bptt)
    print(f"model: {args.layers} x Layer(tanh, H={args.hidden}), logits over {V} characters, "
          f"{model.num_params:,} parameters, {args.dtype}")
    print(f"training: {args.epochs} epochs x {args.batch} streams x {x.shape[0]:,} steps, "
          f"truncated BPTT every {args.bptt} steps ({steps:,} Adam steps, lr {args.lr:g} x "
          f"{args.lr_decay:g} per epoch, "
          f"gradient norm clipped to {args.clip:g}); the progress bars show the loss in nats/char")

    curve = []

    def after_epoch(epoch, logs, hist):
        bpc = heldout_bpc(model, ho_ids)
        curve.append(bpc)
        print(f"epoch {epoch + 1}/{args.epochs}: training {logs['loss'] / LN2:.3f} bits/char, "
              f"held out {bpc:.3f} bits/char (unigram {base:.3f})  [{clock.seconds:.0f} s]",
              flush=True)
        opt.lr = opt.lr * args.lr_decay
        return False

    hist = train.fit(model, x, t, loss="cross_entropy_logits", optimizer=opt, epochs=args.epochs,
                     batch_size=args.batch, bptt=args.bptt, clip_norm=args.clip, shuffle=False,
                     seed=args.seed, progress=not args.no_progress, callback=after_epoch)
    bpc = curve[-1]
    train_seconds = clock.seconds

    sample = sample_text(model, vocab, args.prefix, args.sample_chars, args.temperature, args.seed)
    print(f"\nsample at temperature {args.temperature:g}, continuing {args.prefix!r}:")
    print("-" * 60)
    print(args.prefix + sample)
    print("-" * 60)

    saved = None
    if args.save:
        meta = {"format": FORMAT_TAG, "vocab": vocab.chars, "heldout_bpc": bpc,
                "unigram_bpc": base, "text": desc[:500], "epochs": args.epochs, "seed": args.seed}
        saved = os.path.abspath(args.save)
        crnn_io.save({"model": model, "meta": meta}, saved)
        print(f"saved the model and its vocabulary to {saved}\n"
              f"  sample again: crnn sample {args.save} --prefix 'class ' -n 400")

    print(f"held-out bits/char {bpc:.3f} vs unigram {base:.3f} "
          f"({'below' if bpc < base else 'NOT below'} the baseline); {clock.seconds:.1f} s")
    result({"demo": "charlm", "heldout_bpc": bpc, "unigram_bpc": base,
            "train_bpc": hist.history["loss"][-1] / LN2, "bpc_per_epoch": curve,
            "train_chars": len(train_text), "heldout_chars": len(held_text), "vocab": V,
            "params": model.num_params, "steps": hist.steps, "train_seconds": train_seconds,
            "seconds": clock.seconds, "saved": saved, "seed": args.seed})
    return 0


# --------------------------------------------------------------------------
# crnn sample

def add_sample_arguments(p):
    p.add_argument("model", metavar="MODEL", help="a .npz written by `crnn demo charlm --save`")
    p.add_argument("--prefix", default="", help="text to continue (default: a newline)")
    p.add_argument("-n", type=int, default=400, help="characters to generate (default 400)")
    p.add_argument("--temperature", type=float, default=0.7, help="> 0; lower is more conservative "
                   "(default 0.7)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")


def sample_main(args):
    """Continue a text prefix with a character model saved by `crnn demo charlm`.

    The vocabulary is read from the model file's meta; characters of the prefix
    that the model never saw are read as its unknown-character token.
    """
    if args.temperature <= 0:
        print("crnn sample: --temperature must be > 0", file=sys.stderr)
        return 2
    model, vocab, _ = load_model(args.model)
    text = sample_text(model, vocab, args.prefix, args.n, args.temperature, args.seed)
    sys.stdout.write(args.prefix + text + "\n")
    return 0
