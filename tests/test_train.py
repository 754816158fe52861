"""Tests for crnn.train: fit learns, equals hand-written full and truncated BPTT
bit for bit, masks padding, reports history, checkpoints, is deterministic;
generate samples deterministically, matches full forwards, refuses
bidirectional models."""

import os

import numpy as np
import pytest

from crnn import io, losses, optim, train
from crnn.layers import BiLayer, Layer, Stack


def assert_same_params(m1, m2):
    for k in m1.params:
        assert m1.params[k].tobytes() == m2.params[k].tobytes(), k


def clone(m):
    c = io.from_config(m.config())
    for k, v in m.params.items():
        c.params[k][...] = v
    return c


def delay_data(rng, T=20, N=256, delay=3):
    x = rng.uniform(-1, 1, size=(T, N, 1))
    target = np.zeros_like(x)
    target[delay:] = x[:-delay]
    return x, target


def regression_data(seed, T=12, N=10, D=3, F=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, N, D)), rng.normal(size=(T, N, F))


# --------------------------------------------------------------------------
# fit: learning

def test_fit_learns_a_delay_line():
    """y_t = x_{t-3}: memory the RNN must learn. The best constant predictor
    (the target mean) has MSE = Var(target) ~ 0.28 here; after 30 epochs the
    training MSE is ~7e-4 and the validation MSE on fresh data about the same,
    both well below 1/50 of it."""
    rng = np.random.default_rng(0)
    x, target = delay_data(rng)
    vx, vt = delay_data(rng, N=64)
    baseline = float(np.mean((target - target.mean()) ** 2))
    assert 0.25 < baseline < 0.31
    model = Layer(1, 16, 1, seed=0)
    hist = train.fit(model, x, target, optimizer=optim.Adam(model, lr=1e-2), epochs=30,
                     batch_size=32, validation=(vx, vt), seed=0, progress=False)
    loss, val = hist.history["loss"], hist.history["val_loss"]
    assert len(loss) == len(val) == 30 and hist.epoch == list(range(30))
    assert hist.steps == 30 * 8 and len(hist.step_loss) == 240
    assert loss[0] > 0.1 * baseline
    assert loss[-1] < baseline / 50 and val[-1] < baseline / 50
    # val_loss is the mean squared error of the trained model on the validation set
    y = train.predict(model, vx)
    assert val[-1] == pytest.approx(np.mean((y - vt) ** 2), rel=1e-12)


def test_fit_learns_next_token_and_generate_continues_the_pattern():
    """Sequences k, k+1, ... (mod 5) with truncated BPTT; greedy generation continues them."""
    V, T, N = 5, 24, 32
    starts = np.random.default_rng(1).integers(0, V, size=N)
    ids = (starts[None, :] + np.arange(T + 1)[:, None]) % V
    model = Stack([Layer(V, 12, seed=0), Layer(12, 12, V, seed=1)])
    hist = train.fit(model, ids[:-1], ids[1:], loss="cross_entropy_logits",
                     optimizer=optim.Adam(model, lr=3e-2), epochs=15, batch_size=8, bptt=8,
                     seed=0, progress=False)
    assert hist.history["loss"][0] > 0.5 and hist.history["loss"][-1] < 0.01
    assert hist.steps == 15 * 4 * 3
    np.testing.assert_array_equal(train.generate(model, [2, 3, 4], 10, greedy=True),
                                  [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])


# --------------------------------------------------------------------------
# fit: exactness against hand-written loops

def manual_epoch(model, opt, x, target, batch_size, order, k=None, lengths=None, carry=True,
                 h0=None, loss_fn=losses.mse):
    """One epoch of (truncated) BPTT written out by hand."""
    T, N = x.shape[:2]
    k = T if k is None else k
    for b in range(0, N, batch_size):
        idx = order[b:b + batch_size]
        state = None if h0 is None else h0[idx]
        for s in range(0, T, k):
            cl = None if lengths is None else np.clip(lengths[idx] - s, 0, k)
            if cl is not None and cl.sum() == 0:
                continue
            opt.zero_grad()
            y, new_state = model.forward(x[s:s + k, idx], state if carry else None, cl)
            _, dy = loss_fn(y, target[s:s + k, idx], cl, reduction="mean")
            model.backward(dy)
            opt.step()
            state = new_state


@pytest.mark.parametrize("bptt", [None, 12, 40])
def test_untruncated_step_is_exactly_full_bptt(bptt):
    x, target = regression_data(0)
    model = Stack([Layer(3, 6, seed=0), Layer(6, 5, 2, seed=1)])
    ref = clone(model)
    train.fit(model, x, target, optimizer=optim.SGD(model, lr=0.1), bptt=bptt, batch_size=10,
              shuffle=False, progress=False)
    # by hand: one forward over all T = 12 steps, mean MSE, BPTT, one SGD step
    y, _ = ref.forward(x)
    _, dy = losses.mse(y, target, reduction="mean")
    ref.backward(dy)
    for k in ref.params:
        ref.params[k] -= 0.1 * ref.grads[k]
    assert_same_params(model, ref)


def test_minibatches_lengths_h0_and_adam_match_a_hand_written_loop():
    x, target = regression_data(1, N=11)
    lengths = np.array([12, 0, 5, 12, 1, 7, 12, 3, 9, 12, 2])
    h0 = np.random.default_rng(5).normal(size=(11, 6))
    model = Layer(3, 6, 2, seed=2)
    ref = clone(model)
    opt_ref = optim.Adam(ref, lr=0.01)
    train.fit(model, x, target, optimizer=optim.Adam(model, lr=0.01), epochs=2, batch_size=4,
              lengths=lengths, h0=h0, seed=7, progress=False)
    rng = np.random.default_rng(7)
    for _ in range(2):
        manual_epoch(ref, opt_ref, x, target, 4, rng.permutation(11), lengths=lengths, h0=h0)
    assert_same_params(model, ref)


def test_truncated_bptt_carries_the_state():
    x, target = regression_data(2, T=20, N=6)
    lengths = np.array([20, 13, 4, 20, 0, 9])
    model = Stack([Layer(3, 5, seed=3), Layer(5, 4, 2, seed=4)])
    start = clone(model)
    hist = train.fit(model, x, target, optimizer=optim.SGD(model, lr=0.05, momentum=0.9), bptt=5,
                     batch_size=3, lengths=lengths, shuffle=False, progress=False)
    # minibatch 1 has 4 chunks with data, minibatch 2 (lengths 20, 0, 9) 4
    assert hist.steps == 8

    carry = clone(start)
    manual_epoch(carry, optim.SGD(carry, lr=0.05, momentum=0.9), x, target, 3, np.arange(6),
                 k=5, lengths=lengths, carry=True)
    assert_same_params(model, carry)

    no_carry = clone(start)
    manual_epoch(no_carry, optim.SGD(no_carry, lr=0.05, momentum=0.9), x, target, 3, np.arange(6),
                 k=5, lengths=lengths, carry=False)
    diff = max(np.abs(model.params[k] - no_carry.params[k]).max() for k in model.params)
    assert diff > 1e-4

    full = clone(start)
    train.fit(full, x, target, optimizer=optim.SGD(full, lr=0.05, momentum=0.9), batch_size=3,
              lengths=lengths, shuffle=False, progress=False)
    assert max(np.abs(model.params[k] - full.params[k]).max() for k in model.params) > 1e-4


def test_truncated_bptt_refuses_reverse_layers():
    x, target = regression_data(3)
    for model in (BiLayer(3, 4, 2, merge="sum"), Stack([Layer(3, 4), Layer(4, 2, reverse=True)])):
        with pytest.raises(ValueError, match="right to left"):
            train.fit(model, x, target, bptt=4, progress=False)
        train.fit(model, x, target, bptt=12, progress=False)   # k >= T: full BPTT is fine


def test_padding_never_reaches_the_parameters():
    x, target = regression_data(4)
    lengths = np.array([12, 3, 0, 7, 12, 1, 5, 9, 2, 12])
    model = BiLayer(3, 4, 2, merge="concat", seed=5)
    model2 = clone(model)
    dirty_x, dirty_t = x.copy(), np.concatenate([target, target], axis=2)
    for b, n in enumerate(lengths):
        dirty_x[n:, b] = np.nan
        dirty_t[n:, b] = 1e300
    clean_x, clean_t = np.where(np.isnan(dirty_x), 0, dirty_x), np.where(dirty_t == 1e300, 0, dirty_t)
    h1 = train.fit(model, dirty_x, dirty_t, lengths=lengths, epochs=2, batch_size=4, seed=1,
                   progress=False)
    h2 = train.fit(model2, clean_x, clean_t, lengths=lengths, epochs=2, batch_size=4, seed=1,
                   progress=False)
    assert_same_params(model, model2)
    assert h1.history == h2.history


def test_epoch_loss_is_the_mean_over_valid_terms():
    """With lr = 0 the parameters stay put, so each epoch's loss must equal the
    loss of the whole data set (mean over valid elements), whatever the
    minibatches and chunks; val_loss likewise."""
    x, target = regression_data(5, T=10, N=9)
    lengths = np.array([10, 2, 0, 7, 10, 5, 1, 10, 4])
    model = Stack([Layer(3, 4, seed=6), Layer(4, 3, 2, seed=7)])
    y, _ = model.forward(x, lengths=lengths)
    expected = losses.mse(y, target, lengths, reduction="mean")[0]
    hist = train.fit(model, x, target, optimizer=optim.SGD(model, lr=0.0), lengths=lengths,
                     bptt=3, batch_size=4, epochs=2, validation=(x, target, lengths), seed=0,
                     progress=False)
    assert hist.history["loss"] == pytest.approx([expected] * 2, rel=1e-12)
    assert hist.history["val_loss"] == pytest.approx([expected] * 2, rel=1e-12)


def test_many_to_one_matches_hand_written_steps():
    rng = np.random.default_rng(6)
    V, T, N = 4, 9, 6
    ids = rng.integers(0, V, size=(T, N))
    labels = rng.integers(0, 3, size=N)
    lengths = np.array([9, 4, 1, 6, 9, 2])
    model = Stack([Layer(V, 5, seed=8), Layer(5, 4, 3, output_activation="softmax", seed=9)])
    ref = clone(model)
    hist = train.fit(model, ids, labels, loss="cross_entropy", optimizer=optim.SGD(model, lr=0.2),
                     lengths=lengths, many_to_one=True, batch_size=6, bptt=3, shuffle=False,
                     progress=False)
    # chunks [0,3) [3,6) [6,9): sequences end in chunk 0 (lengths 1, 2), 1 (4, 6), 2 (9, 9)
    assert hist.steps == 3
    opt = optim.SGD(ref, lr=0.2)
    state = None
    for s in range(0, T, 3):
        cl = np.clip(lengths - s, 0, 3)
        ends = (lengths > s) & (lengths <= s + 3)
        opt.zero_grad()
        y, state_new = ref.forward(ids[s:s + 3], state, cl)
        _, dy = losses.many_to_one(losses.cross_entropy, y, labels, np.where(ends, cl, 0),
                                   reduction="mean")
        ref.backward(dy)
        opt.step()
        state = state_new
    assert_same_params(model, ref)


def test_named_losses_and_callables_agree():
    x, target = regression_data(7)
    m1 = Layer(3, 4, 2, seed=10)
    m2, m3 = clone(m1), clone(m1)
    h1 = train.fit(m1, x, target, loss="mse", epochs=2, batch_size=4, seed=3, progress=False)
    h2 = train.fit(m2, x, target, loss=lambda y, t, l: losses.mse(y, t, l, reduction="mean"),
                   epochs=2, batch_size=4, seed=3, progress=False)
    assert_same_params(m1, m2)
    assert h1.history == h2.history
    # reduction "sum" (the notes' L = sum_t L_t) through a callable: a different trajectory
    train.fit(m3, x, target, loss=losses.mse, epochs=2, batch_size=4, seed=3, progress=False)
    assert any(not np.array_equal(m1.params[k], m3.params[k]) for k in m1.params)

    probs = Layer(3, 4, 2, output_activation="sigmoid", seed=11)
    t01 = (target > 0).astype(float)
    h = train.fit(probs, x, t01, loss="bce", epochs=3, batch_size=5, seed=0, progress=False,
                  optimizer=optim.Adam(probs, lr=0.05))
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_clipping_bounds_the_update():
    x, target = regression_data(8)
    model = Layer(3, 4, 2, seed=12)
    before = {k: v.copy() for k, v in model.params.items()}
    train.fit(model, 100 * x, 100 * target, optimizer=optim.SGD(model, lr=1.0), clip_norm=1e-3,
              batch_size=10, progress=False)
    step = np.sqrt(sum(np.sum((model.params[k] - before[k]) ** 2) for k in before))
    assert step == pytest.approx(1e-3, rel=1e-5)

    model = Layer(3, 4, 2, seed=12)
    train.fit(model, x, target, optimizer=optim.SGD(model, lr=1.0), clip_value=1e-4,
              batch_size=10, progress=False)
    assert max(np.abs(model.params[k] - before[k]).max() for k in before) <= 1e-4 * (1 + 1e-12)


# --------------------------------------------------------------------------
# fit: errors, determinism, checkpoints, progress, callback

def test_non_finite_loss_names_epoch_and_step():
    x, target = regression_data(9)
    model = Layer(3, 4, 2, activation="relu", init="identity", seed=13)
    with pytest.raises(FloatingPointError, match=r"epoch \d+, step \d+ of the epoch \(global step \d+"):
        train.fit(model, 1e3 * x, target, optimizer=optim.SGD(model, lr=1e200), epochs=3,
                  batch_size=2, progress=False)
    # the parameters of the last good step are kept
    assert all(np.isfinite(p).all() for p in model.params.values())
    model = Layer(3, 4, 2, seed=13)
    with np.errstate(over="ignore"), pytest.raises(FloatingPointError,
                                                   match=r"non-finite loss inf at epoch 1, step 1 "):
        train.fit(model, x, 1e300 * target, epochs=3, progress=False)


def test_fit_is_deterministic_for_a_seed():
    x, target = regression_data(10)
    runs = []
    for seed in (3, 3, 4):
        m = Layer(3, 4, 2, seed=14)
        h = train.fit(m, x, target, epochs=2, batch_size=3, seed=seed, progress=False)
        runs.append((m, h))
    assert_same_params(runs[0][0], runs[1][0])
    assert runs[0][1].step_loss == runs[1][1].step_loss
    assert runs[0][1].step_loss != runs[2][1].step_loss
    m = Layer(3, 4, 2, seed=14)
    h = train.fit(m, x, target, epochs=2, batch_size=3, shuffle=False, progress=False)
    assert h.step_loss != runs[0][1].step_loss


def test_checkpoints_are_written_and_load(tmp_path, monkeypatch):
    x, target = regression_data(11)
    path = tmp_path / "ck.npz"
    calls = []
    real_save = io.save

    def spy(obj, p):
        calls.append(obj["meta"]["step"])
        return real_save(obj, p)
    monkeypatch.setattr(io, "save", spy)

    model = Stack([Layer(3, 4, seed=15), Layer(4, 4, 2, seed=16)])
    opt = optim.Adam(model, lr=0.01)
    hist = train.fit(model, x, target, optimizer=opt, epochs=2, batch_size=4, bptt=6,
                     checkpoint=path, checkpoint_every=5, seed=0, progress=False)
    assert hist.steps == 2 * 3 * 2
    assert calls == [5, 10, 12]                 # every 5 steps, and the end of training
    assert os.listdir(tmp_path) == ["ck.npz"]
    ck = io.load(path)
    assert_same_params(model, ck["model"])
    assert ck["optimizer"].step_count == 12 and ck["meta"]["step"] == 12
    assert ck["meta"]["history"] == hist.history

    # resuming from a checkpoint continues exactly like the uninterrupted run
    calls.clear()
    m1 = Layer(3, 4, 2, seed=17)
    train.fit(m1, x, target, optimizer=optim.Adam(m1, lr=0.01), epochs=2, batch_size=5,
              checkpoint=path, seed=1, progress=False)
    assert calls == [2, 4]                      # checkpoint_every=None: every epoch
    m2 = Layer(3, 4, 2, seed=17)
    opt2 = optim.Adam(m2, lr=0.01)
    train.fit(m2, x, target, optimizer=opt2, epochs=1, batch_size=5, checkpoint=path, seed=1,
              progress=False)
    ck = io.load(path)
    rng = np.random.default_rng(1)
    rng.permutation(10)                         # the first epoch's order, already used
    manual_epoch(ck["model"], ck["optimizer"], x, target, 5, rng.permutation(10))
    assert_same_params(m1, ck["model"])


def test_progress_bar_goes_to_stderr(capsys):
    pytest.importorskip("tqdm")
    x, target = regression_data(12)
    train.fit(Layer(3, 4, 2), x, target, epochs=2, batch_size=5, validation=(x, target))
    out, err = capsys.readouterr()
    assert out == ""
    assert "epoch 2/2" in err and "val_loss" in err
    train.fit(Layer(3, 4, 2), x, target, epochs=2, batch_size=5, progress=False)
    assert capsys.readouterr() == ("", "")


def test_callback_can_stop_training():
    x, target = regression_data(13)
    seen = []

    def cb(epoch, logs, history):
        seen.append((epoch, sorted(logs)))
        return epoch == 1
    hist = train.fit(Layer(3, 4, 2), x, target, epochs=10, validation=(x, target), callback=cb,
                     progress=False)
    assert seen == [(0, ["loss", "val_loss"]), (1, ["loss", "val_loss"])]
    assert hist.stopped and len(hist.history["loss"]) == 2


def test_fit_argument_errors():
    x, target = regression_data(14)
    model = Layer(3, 4, 2)
    with pytest.raises(ValueError, match="loss must be one of"):
        train.fit(model, x, target, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="target"):
        train.fit(model, x, target[:, :5], progress=False)
    with pytest.raises(ValueError, match="many_to_one"):
        train.fit(model, x, target[0], progress=False)
    with pytest.raises(ValueError, match="different module"):
        train.fit(model, x, target, optimizer=optim.SGD(Layer(3, 4, 2), lr=0.1), progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        train.fit(model, x, target, checkpoint_every=3, progress=False)
    with pytest.raises(ValueError, match="lengths"):
        train.fit(model, x, target, lengths=np.full(10, 13), progress=False)
    with pytest.raises(ValueError, match="bptt"):
        train.fit(model, x, target, bptt=0, progress=False)


# --------------------------------------------------------------------------
# generate

def lm(V=6, output_activation="identity"):
    return Stack([Layer(V, 8, seed=20), Layer(8, 7, V, output_activation=output_activation, seed=21)])


def test_generate_is_deterministic_for_a_seed():
    model = lm()
    a = train.generate(model, [1, 2, 3], 40, seed=5)
    b = train.generate(model, [1, 2, 3], 40, seed=5)
    c = train.generate(model, [1, 2, 3], 40, seed=6)
    assert a.dtype == np.int64 and a.shape == (40,)
    assert a.min() >= 0 and a.max() < 6
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert train.generate(model, [1], 0, seed=5).shape == (0,)


def test_greedy_is_the_argmax_chain():
    model = lm()
    ids = train.generate(model, [4, 0], 15, greedy=True)
    seq = [4, 0]
    for tok in ids:
        y, _ = model.forward(np.array(seq)[:, None])
        assert tok == np.argmax(y[-1, 0])
        seq.append(tok)
    # a tiny temperature samples the same chain
    np.testing.assert_array_equal(train.generate(model, [4, 0], 15, temperature=1e-4, seed=0), ids)


def test_stepwise_state_equals_a_full_forward():
    for model in (Layer(5, 9, 5, output_activation="softmax", seed=22), lm(V=5)):
        prefix = [0, 3, 1, 4]
        h0 = None if isinstance(model, Layer) else [np.full((1, 8), 0.1), None]
        ids, state = train.generate(model, prefix, 25, seed=1, h0=h0, return_state=True)
        _, full = model.forward(np.concatenate([prefix, ids[:-1]])[:, None], h0)
        if isinstance(model, Layer):
            assert state.tobytes() == full.tobytes()     # one layer: bitwise the same
        else:
            for s, f in zip(state, full):               # the next layer's GEMMs group rows differently
                np.testing.assert_allclose(s, f, rtol=1e-13, atol=1e-15)
        # n = 0: every prefix id but the last fed (none for a 1-id prefix: h0)
        ids, state = train.generate(model, prefix, 0, h0=h0, return_state=True)
        _, full = model.forward(np.array(prefix[:-1])[:, None], h0)
        assert ids.shape == (0,)
        for s, f in [(state, full)] if isinstance(model, Layer) else zip(state, full):
            assert s.tobytes() == f.tobytes()                # the same forward call
        assert train.generate(model, prefix[:1], 0, h0=h0, return_state=True)[1] is h0


def test_sampling_follows_softmax_of_log_p_over_temperature():
    """No recurrence and fixed logits z: every step samples from softmax(z / temperature)."""
    V = 4
    model = Layer(V, 2, V, seed=0)
    model.params["W_xh"][...] = 0
    model.params["W_hh"][...] = 0
    model.params["b_h"][...] = 0
    model.params["W_hy"][...] = 0
    z = np.array([1.0, 0.0, -1.0, 0.5])
    model.params["b_y"][...] = z
    n = 3000
    for temperature in (1.0, 0.5):
        ids = train.generate(model, [0], n, temperature=temperature, seed=3)
        p = np.exp(z / temperature) / np.exp(z / temperature).sum()
        freq = np.bincount(ids, minlength=V) / n
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3)
    # a softmax output gives the same samples as identity logits
    soft = Layer(V, 2, V, output_activation="softmax", seed=0)
    for k in model.params:
        soft.params[k][...] = model.params[k]
    np.testing.assert_array_equal(train.generate(soft, [0], 200, seed=9),
                                  train.generate(model, [0], 200, seed=9))


def test_generate_refuses_non_causal_and_mismatched_models():
    with pytest.raises(ValueError, match="BiLayer"):
        train.generate(BiLayer(5, 4, 5), [1], 3)
    with pytest.raises(ValueError, match="BiLayer"):
        train.generate(Stack([BiLayer(5, 4), Layer(8, 4, 5)]), [1], 3)
    with pytest.raises(ValueError, match="reverse"):
        train.generate(Layer(5, 4, 5, reverse=True), [1], 3)
    with pytest.raises(ValueError, match="out_features"):
        train.generate(Layer(5, 4, 3), [1], 3)
    with pytest.raises(ValueError, match="softmax probabilities or identity logits"):
        train.generate(Layer(5, 4, 5, output_activation="sigmoid"), [1], 3)
    with pytest.raises(ValueError, match="prefix"):
        train.generate(lm(), [], 3)
    with pytest.raises(ValueError, match="temperature"):
        train.generate(lm(), [1], 3, temperature=0.0)
    with pytest.raises(ValueError, match="token ids"):
        train.generate(lm(), [9], 3)


def test_predict_returns_a_writable_copy():
    model = Layer(3, 4, 2, seed=23)
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    y = train.predict(model, x, lengths=[5, 3])
    y[...] = 0                                  # writable, and not the model's buffer
    assert np.array_equal(train.predict(model, x, lengths=[5, 3]), model.forward(x, lengths=[5, 3])[0])
