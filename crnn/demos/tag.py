"""Sequence labelling that needs both sides: a BiLayer against a forward Layer.

A generated task in the manner of named-entity tagging. Sentences of 6-24
words are drawn from a small vocabulary:

    fillers     "the", "walked", "garden", ...            always tag O
    ambiguous   "rose", "may", "bill", "mark", "grant", ... a NAME or a plain word
    titles      "mr", "dr", "aunt", ...                    (cue on the left)
    verbs       "said", "asked", "laughed", ...            (cue on the right)

An ambiguous word is tagged NAME iff a title stands one or two words before
it, or a speech verb one to three words after it; otherwise O ("the rose"
vs "dr rose" vs "rose , he said" ...). Cues also appear where they tag
nothing. About a third of the ambiguous words have a left cue, a third a right
cue, a third none. A forward (left-to-right) Layer has not read the right cue
when it must tag the word, so it can only guess there; a BiLayer reads both
sides.

Sentences have different lengths: they are padded and every forward, loss and
gradient gets `lengths`, so padding never reaches a state, the loss or a
gradient, and the BiLayer's backward half starts at each sentence's own last
word.

    BiLayer(V, H, 2, merge="sum")   each direction projects to 2 logits; summed
    Layer(V, H, 2)                  the same, left to right only

Both are trained the same way (crnn.train.fit, cross-entropy from logits with
lengths, Adam); per-token test accuracy is printed for both, for the ambiguous
words alone, and for the majority tag (always O).
"""
import numpy as np

from crnn import optim
from crnn.demos._common import Timer, add_common, pad_batch, result
from crnn.layers import BiLayer, Layer

PAD = "<pad>"
FILLERS = ("the a an of to and in on at with for from by then later walked went saw met found "
           "lost left took gave found city park house river road book letter morning night garden "
           "old new big small green quiet yesterday today very it he she they we was is were "
           "there near under over after before".split())
AMBIGUOUS = "rose may bill mark grant hope june will rob pat sue art dawn faith ivy jack joy penny sandy drew".split()
TITLES = "mr mrs ms dr aunt uncle".split()
VERBS = "said asked replied laughed nodded smiled".split()
TAGS = ("O", "NAME")


def vocabulary():
    words = [PAD] + sorted(set(FILLERS)) + AMBIGUOUS + TITLES + VERBS + [","]
    return words, {w: i for i, w in enumerate(words)}


def tags_of(words):
    """The rule: an ambiguous word is NAME iff a title is 1-2 words before it or a verb 1-3 after it."""
    tags = []
    for i, w in enumerate(words):
        name = w in AMBIGUOUS and (any(v in TITLES for v in words[max(0, i - 2):i])
                                   or any(v in VERBS for v in words[i + 1:i + 4]))
        tags.append(1 if name else 0)
    return tags


def sentence(rng):
    n = int(rng.integers(6, 25))
    words = [FILLERS[int(rng.integers(len(FILLERS)))] for _ in range(n)]
    for _ in range(int(rng.integers(1, 4))):         # 1-3 ambiguous words
        i = int(rng.integers(2, n - 3))
        words[i] = AMBIGUOUS[int(rng.integers(len(AMBIGUOUS)))]
        kind = rng.integers(3)
        if kind == 0:                                # title 1-2 words to the left
            words[i - int(rng.integers(1, 3))] = TITLES[int(rng.integers(len(TITLES)))]
        elif kind == 1:                              # verb 1-3 words to the right
            words[i + int(rng.integers(1, 4))] = VERBS[int(rng.integers(len(VERBS)))]
    if rng.random() < 0.5:                           # a cue that may tag nothing
        cues = TITLES if rng.random() < 0.5 else VERBS
        words[int(rng.integers(n))] = cues[int(rng.integers(len(cues)))]
    return words


def make_data(n, rng, index):
    sents = [sentence(rng) for _ in range(n)]
    ids = [[index[w] for w in s] for s in sents]
    tags = [tags_of(s) for s in sents]
    x, lengths = pad_batch(ids)
    t, _ = pad_batch(tags)
    amb = np.isin(x, [index[w] for w in AMBIGUOUS])
    return x, t, lengths, amb, sents


def evaluate(model, x, t, lengths, amb):
    y, _ = model.forward(x, lengths=lengths)
    pred = np.argmax(y, axis=2)
    valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
    ok = (pred == t) & valid
    return float(ok.sum() / valid.sum()), float(ok[amb & valid].sum() / (amb & valid).sum()), pred


def add_arguments(p):
    add_common(p, quick_help="fewer sentences and epochs (seconds)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units per direction (default 32)")
    p.add_argument("--train", type=int, default=None, help="training sentences (default 3000; quick 800)")
    p.add_argument("--test", type=int, default=1000, help="test sentences (default 1000)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set "
                   "(default 8; quick 5)")
    p.add_argument("--batch", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default 5e-3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    from crnn import train

    clock = Timer()
    words, index = vocabulary()
    V, H = len(words), args.hidden
    n_train = args.train or (800 if args.quick else 3000)
    epochs = args.epochs or (5 if args.quick else 8)
    rng = np.random.default_rng(args.seed)
    x, t, lengths, _, _ = make_data(n_train, rng, index)
    xt, tt, lt, amb, sents = make_data(args.test, rng, index)
    valid = np.arange(xt.shape[0])[:, None] < lt[None, :]
    base = float((tt[valid] == 0).mean())
    print(f"tagging: {n_train} training and {args.test} test sentences of 6-24 words "
          f"(vocabulary {V}); {int(valid.sum())} test tokens, {int((amb & valid).sum())} of them "
          f"ambiguous")
    print(f"majority tag (always O): per-token test accuracy {base:.3f}")
    print("example:", " ".join(f"{w}/{TAGS[g]}" if w in AMBIGUOUS else w
                               for w, g in zip(sents[0], tags_of(sents[0]))))
    models = {"bilayer": BiLayer(V, H, 2, merge="sum", seed=args.seed),
              "layer": Layer(V, H, 2, seed=args.seed)}
    out = {}
    for name, model in models.items():
        print(f"\n{model!r}: {model.num_params:,} parameters")

        def after_epoch(epoch, logs, hist, model=model):
            acc, acc_amb, _ = evaluate(model, xt, tt, lt, amb)
            print(f"  epoch {epoch + 1:2d}/{epochs}: training loss {logs['loss']:.4f}, test accuracy "
                  f"{acc:.4f} (ambiguous words {acc_amb:.3f})  [{clock.seconds:.1f} s]", flush=True)

        train.fit(model, x, t, loss="cross_entropy_logits", optimizer=optim.Adam(model, lr=args.lr),
                  epochs=epochs, batch_size=args.batch, lengths=lengths, clip_norm=5.0,
                  seed=args.seed, progress=not args.no_progress, callback=after_epoch)
        acc, acc_amb, pred = evaluate(model, xt, tt, lt, amb)
        out[name] = {"acc": acc, "amb": acc_amb, "pred": pred}

    print(f"\nper-token test accuracy: BiLayer {out['bilayer']['acc']:.4f}, Layer "
          f"{out['layer']['acc']:.4f}, majority {base:.4f}")
    print(f"on the ambiguous words: BiLayer {out['bilayer']['amb']:.3f}, Layer {out['layer']['amb']:.3f}")
    differ = [b for b in range(len(sents)) if (out["bilayer"]["pred"][:lt[b], b]
                                                != out["layer"]["pred"][:lt[b], b]).any()]
    right_cue = [b for b in differ if any(v in VERBS for v in sents[b])]
    b = (right_cue or differ or [0])[0]
    s = sents[b]
    print(f"test sentence {b} (tags shown on the ambiguous words):")
    rows = [("rule", tags_of(s))] + [(n, out[n]["pred"][:len(s), b]) for n in ("bilayer", "layer")]
    for name, tags in rows:
        print(f"  {name:8s}: " + " ".join(f"{w}/{TAGS[g]}" if w in AMBIGUOUS else w
                                         for w, g in zip(s, tags)))
    print(f"{clock.seconds:.1f} s")
    result({"demo": "tag", "bilayer_accuracy": out["bilayer"]["acc"], "layer_accuracy": out["layer"]["acc"],
            "majority_accuracy": base, "bilayer_ambiguous_accuracy": out["bilayer"]["amb"],
            "layer_ambiguous_accuracy": out["layer"]["amb"], "hidden": H, "epochs": epochs,
            "train": n_train, "test": args.test, "seconds": clock.seconds, "seed": args.seed})
    return 0
