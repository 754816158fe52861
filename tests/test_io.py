"""Tests for crnn.io: exact save/load round trips of every module kind, dtype and
option and of optimizer state; refusal (ValueError naming the file) of every
kind of broken, edited or foreign file; atomic writes that leave the old file
and no temporary file behind when saving fails."""

import json
import os
import zipfile

import numpy as np
import pytest

import crnn
from crnn import io, losses, optim
from crnn.layers import BiLayer, Layer, Stack

JSON_ENTRY = io.JSON_ENTRY


# --------------------------------------------------------------------------
# helpers

MODULES = {
    "layer": lambda dt: Layer(3, 5, seed=1, dtype=dt),
    "layer-nobias": lambda dt: Layer(3, 5, bias=False, seed=2, dtype=dt),
    "layer-output": lambda dt: Layer(3, 5, 4, seed=3, dtype=dt),
    "layer-softmax-relu": lambda dt: Layer(3, 5, 4, activation="relu", output_activation="softmax",
                                           seed=4, dtype=dt),
    "layer-reverse-sigmoid": lambda dt: Layer(3, 5, 2, activation="sigmoid", output_activation="tanh",
                                              reverse=True, seed=5, dtype=dt),
    "layer-nobias-output": lambda dt: Layer(3, 4, 2, bias=False, output_activation="sigmoid",
                                            activation="identity", seed=6, dtype=dt),
    "bi-concat": lambda dt: BiLayer(3, 5, seed=7, dtype=dt),
    "bi-sum-output": lambda dt: BiLayer(3, 5, 2, merge="sum", seed=8, dtype=dt),
    "bi-mean-nobias": lambda dt: BiLayer(3, 5, merge="mean", bias=False, seed=9, dtype=dt),
    "bi-mul-softmax": lambda dt: BiLayer(3, 4, 3, merge="mul", output_activation="softmax",
                                         activation="relu", seed=10, dtype=dt),
    "stack": lambda dt: Stack([Layer(3, 5, seed=11, dtype=dt),
                               BiLayer(5, 4, 2, merge="concat", seed=12, dtype=dt),
                               Layer(4, 6, 3, bias=False, output_activation="softmax", seed=13, dtype=dt)]),
    "stack-single": lambda dt: Stack([Layer(3, 2, 2, reverse=True, seed=14, dtype=dt)]),
}
DTYPES = [np.float64, np.float32]


def make(name, dtype=np.float64):
    m = MODULES[name](dtype)
    # values whose bits a lossy round trip would change
    first = next(iter(m.params))
    flat = m.params[first].reshape(-1)
    flat[0] = -0.0
    flat[1] = np.finfo(m.dtype).smallest_subnormal
    flat[2] = np.nextafter(m.dtype.type(1), m.dtype.type(2))
    return m


def assert_bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def assert_same_params(m1, m2):
    assert list(m1.params) == list(m2.params)
    for k in m1.params:
        assert_bitwise(m1.params[k], m2.params[k])


def read_raw(path):
    """(document, {name: array}) straight from the .npz, bypassing crnn.io."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays.pop(JSON_ENTRY).tobytes().decode("utf-8"))
    return doc, arrays


def write_raw(path, doc, arrays, raw_json=None):
    """Write an .npz with the given document (or raw JSON bytes) and arrays, bypassing crnn.io."""
    data = raw_json if raw_json is not None else json.dumps(doc).encode("utf-8")
    entries = dict(arrays)
    entries[JSON_ENTRY] = np.frombuffer(data, dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def refused(path, *phrases):
    """Assert that load(path) raises ValueError naming the file and containing the phrases."""
    with pytest.raises(ValueError) as info:
        io.load(path)
    msg = str(info.value)
    assert os.fspath(path) in msg, msg
    for p in phrases:
        assert p in msg, msg
    return msg


@pytest.fixture
def saved(tmp_path):
    """A saved Stack (so that a config has nested layers) and its path."""
    m = make("stack")
    path = tmp_path / "model.npz"
    io.save(m, path)
    return m, path


# --------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_round_trip_is_exact(tmp_path, name, dtype):
    m = make(name, dtype)
    path = tmp_path / "m.npz"
    io.save(m, path)
    m2 = io.load(path)
    assert type(m2) is type(m)
    assert m2.config() == m.config()
    assert_same_params(m, m2)
    # the loaded module computes bitwise the same thing
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    y1, s1 = m.forward(x, lengths=[4, 2])
    y2, s2 = m2.forward(x, lengths=[4, 2])
    assert_bitwise(y1, y2)


def test_document_contents(saved):
    m, path = saved
    doc, arrays = read_raw(path)
    assert doc["format"] == "crnn-npz" and doc["format_version"] == 1
    assert doc["crnn_version"] == crnn.__version__
    assert doc["kind"] == "module"
    assert doc["model"] == m.config()
    assert doc["meta"] == {}
    assert doc["arrays"] == {f"params/{k}": {"shape": list(v.shape), "dtype": v.dtype.name}
                             for k, v in m.params.items()}
    assert set(arrays) == {f"params/{k}" for k in m.params}
    assert all(a.dtype != object for a in arrays.values())


def test_path_is_used_as_given(tmp_path):
    m = make("layer")
    for name in ("weights", "weights.ckpt", "weights.npz"):
        path = tmp_path / name
        assert io.save(m, str(path)) == str(path)
        assert path.exists()
        assert_same_params(m, io.load(str(path)))
    assert sorted(os.listdir(tmp_path)) == ["weights", "weights.ckpt", "weights.npz"]


def test_overwrite_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "m.npz"
    io.save(make("layer"), path)
    os.chmod(path, 0o640)
    m = make("bi-concat")
    io.save(m, path)
    assert (os.stat(path).st_mode & 0o777) == 0o640
    assert_same_params(m, io.load(path))
    assert os.listdir(tmp_path) == ["m.npz"]


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        io.save(make("layer"), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.npz").st_mode & 0o777) == 0o640


def test_load_into_existing_module(saved):
    m, path = saved
    target = make("stack")
    for p in target.params.values():
        p[...] = 7
    assert io.load(path, module=target) is target
    assert_same_params(m, target)
    other = Stack([Layer(3, 5), BiLayer(5, 4, 2), Layer(4, 6, 3, bias=False)])  # no softmax
    with pytest.raises(ValueError, match="differs"):
        io.load(path, module=other)


def train_steps(model, opt, n, seed):
    """n steps of opt on a fixed random regression problem (a function of seed only)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.normal(size=(5, 3, model.input_size))
        t = rng.normal(size=(5, 3, model.out_features))
        opt.zero_grad()
        y, _ = model.forward(x)
        _, dy = losses.mse(y, t)
        model.backward(dy)
        opt.step()


OPTIMIZERS = {
    "sgd": lambda m: optim.SGD(m, lr=0.05),
    "sgd-nesterov": lambda m: optim.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adagrad": lambda m: optim.Adagrad(m, lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
    "rmsprop": lambda m: optim.RMSprop(m, lr=0.01, momentum=0.5, centered=True),
    "adam": lambda m: optim.Adam(m, lr=0.01, betas=(0.8, 0.95)),
    "adam-amsgrad": lambda m: optim.Adam(m, lr=0.01, amsgrad=True, weight_decay=1e-2),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_checkpoint_continues_bitwise(tmp_path, opt_name, dtype):
    model = make("stack", dtype)
    opt = OPTIMIZERS[opt_name](model)
    train_steps(model, opt, 3, seed=1)
    path = tmp_path / "ck"
    io.save({"model": model, "optimizer": opt, "meta": {"epoch": 3, "note": "x", "loss": [0.5]}}, path)
    train_steps(model, opt, 4, seed=2)          # never saved: the reference

    ck = io.load(path)
    assert set(ck) == {"model", "optimizer", "meta"}
    assert ck["meta"] == {"epoch": 3, "note": "x", "loss": [0.5]}
    assert type(ck["optimizer"]) is type(opt) and ck["optimizer"].module is ck["model"]
    assert ck["optimizer"].step_count == 3
    train_steps(ck["model"], ck["optimizer"], 4, seed=2)
    assert_same_params(model, ck["model"])


def test_optimizer_alone_round_trip(tmp_path):
    model = make("bi-sum-output")
    opt = optim.Adam(model, lr=0.02, amsgrad=True)
    train_steps(model, opt, 2, seed=3)
    path = tmp_path / "opt.npz"
    io.save(opt, path)
    ref = opt.state_dict()

    sd = io.load(path)
    assert sd["config"] == ref["config"]
    assert sorted(sd["arrays"]) == sorted(ref["arrays"])
    for k in ref["arrays"]:
        assert_bitwise(sd["arrays"][k], ref["arrays"][k])

    # rebuilt for a module: continuing matches the original bitwise
    clone = io.load(io.save(model, tmp_path / "model.npz"))
    opt2 = io.load(path, module=clone)
    assert isinstance(opt2, optim.Adam) and opt2.module is clone
    train_steps(model, opt, 2, seed=4)
    train_steps(clone, opt2, 2, seed=4)
    assert_same_params(model, clone)

    with pytest.raises(ValueError):   # the optimizer state does not fit another module
        io.load(path, module=make("layer"))


def test_checkpoint_without_optimizer_and_stateless_sgd(tmp_path):
    model = make("layer-output")
    io.save({"model": model}, tmp_path / "a")
    ck = io.load(tmp_path / "a")
    assert ck["optimizer"] is None and ck["meta"] == {}
    assert_same_params(model, ck["model"])
    io.save({"model": model, "optimizer": optim.SGD(model, lr=0.1)}, tmp_path / "b")
    ck = io.load(tmp_path / "b")
    assert isinstance(ck["optimizer"], optim.SGD) and ck["optimizer"].lr == 0.1
    assert read_raw(tmp_path / "b")[1].keys() == {f"params/{k}" for k in model.params}


def test_save_rejects_bad_objects_without_writing(tmp_path):
    m = make("layer")
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError):
        io.save({"a": 1}, path)
    with pytest.raises(TypeError):
        io.save([m], path)
    with pytest.raises(TypeError, match="JSON"):
        io.save({"model": m, "meta": {"f": np.float64}}, path)
    with pytest.raises(TypeError, match="JSON"):
        io.save({"model": m, "meta": {"loss": float("nan")}}, path)
    with pytest.raises(ValueError, match="differ"):
        io.save({"model": m, "optimizer": optim.SGD(make("bi-concat"), lr=0.1)}, path)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# refusals: broken files

def test_truncated_files_are_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    n = len(data)
    cuts = sorted({0, 1, 4, 30, 100, n // 2, n - 200, n - 23, n - 22, n - 1}
                  | set(range(0, n, max(1, n // 60))))
    bad = tmp_path / "cut.npz"
    for cut in cuts:
        bad.write_bytes(data[:cut])
        refused(bad)


def test_bytes_cut_from_the_middle_or_flipped_are_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    n = len(data)
    bad = tmp_path / "bad.npz"
    for start in range(0, n - 64, max(1, n // 40)):
        bad.write_bytes(data[:start] + data[start + 16:])
        refused(bad)
    # a flipped bit in any stored entry (npy header or data, or the JSON) fails the CRC check;
    # (flips in zip metadata that zipfile does not read, e.g. a local header's
    # timestamp, change nothing that is loaded)
    with zipfile.ZipFile(path) as z:
        spans = []
        for info in z.infolist():
            with z.open(info):     # positions of the data: after the local header
                pass
            local = data[info.header_offset:info.header_offset + 30]
            start = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                     + int.from_bytes(local[28:30], "little"))
            spans.append((start, info.compress_size))
    for start, size in spans:
        for pos in sorted({start, start + 9, start + size // 2, start + size - 1}):
            flipped = bytearray(data)
            flipped[pos] ^= 0x10
            bad.write_bytes(bytes(flipped))
            refused(bad)


def test_not_npz_files_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not an archive\n")
    refused(text, "not a readable .npz")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(empty)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    refused(npy, "single .npy")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused(pickled)
    zf = tmp_path / "other.zip"
    with zipfile.ZipFile(zf, "w") as z:
        z.writestr("readme.txt", "text")
    refused(zf, JSON_ENTRY)


def test_foreign_npz_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, W_xh=np.zeros((5, 3)), W_hh=np.zeros((5, 5)))
    refused(path, "not a crnn file")
    # an object array among the entries is never unpickled
    with open(path, "wb") as f:
        np.savez(f, **{JSON_ENTRY: np.array([{"x": 1}], dtype=object)})
    refused(path)


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "nope.npz")


# --------------------------------------------------------------------------
# refusals: edited JSON and arrays

def edit(path, tmp_path, mutate_doc=None, mutate_arrays=None, raw_json=None):
    doc, arrays = read_raw(path)
    if mutate_doc:
        mutate_doc(doc)
    if mutate_arrays:
        mutate_arrays(arrays)
    out = tmp_path / "edited.npz"
    write_raw(out, doc, arrays, raw_json)
    return out


def _set(*keys_value):
    *keys, value = keys_value

    def mutate(doc):
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return mutate


def _delete(*keys):
    def mutate(doc):
        d = doc
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return mutate


EDITS = {
    "hidden-size": (_set("model", "layers", 2, "hidden_size", 7), "do not match"),
    "hidden-size-chain": (_set("model", "layers", 0, "hidden_size", 6), "out_features"),
    "input-size": (_set("model", "layers", 0, "input_size", 4), "do not match"),
    "unknown-activation": (_set("model", "layers", 0, "activation", "gelu"), "activation"),
    "unknown-output-activation": (_set("model", "layers", 2, "output_activation", "softmax2"),
                                  "output_activation"),
    "unknown-merge": (_set("model", "layers", 1, "merge", "max"), "merge"),
    "size-as-string": (_set("model", "layers", 0, "hidden_size", "5"), "hidden_size"),
    "size-as-float": (_set("model", "layers", 0, "hidden_size", 5.0), "hidden_size"),
    "size-as-bool": (_set("model", "layers", 1, "output_size", True), "output_size"),
    "size-zero": (_set("model", "layers", 0, "input_size", 0), "input_size"),
    "bias-as-int": (_set("model", "layers", 0, "bias", 1), "bias"),
    "dtype": (_set("model", "layers", 0, "dtype", "float16"), "dtype"),
    "dtype-mix": (_set("model", "layers", 2, "dtype", "float32"), "dtype"),
    "chain": (_set("model", "layers", 2, "input_size", 2), "out_features"),
    "softmax-without-output": (_set("model", "layers", 0, "output_activation", "softmax"),
                               "output_size"),
    "missing-key": (_delete("model", "layers", 0, "reverse"), "missing"),
    "extra-key": (_set("model", "layers", 0, "init", "orthogonal"), "unknown"),
    "unknown-type": (_set("model", "layers", 0, "type", "LSTM"), "type"),
    "stack-empty": (_set("model", "layers", []), "layers"),
    "model-type": (_set("model", "type", "Sequential"), "type"),
    "format": (_set("format", "keras"), "format"),
    "version": (_set("format_version", 2), "version 2"),
    "version-string": (_set("format_version", "1"), "format_version"),
    "kind": (_set("kind", "dataset"), "kind"),
    "kind-optimizer-without-one": (_set("kind", "optimizer"), "missing"),
    "extra-top-key": (_set("pickle", "yes"), "unknown"),
    "meta-not-object": (_set("meta", [1]), "meta"),
    "listing-shape": (_set("arrays", "params/0.W_hh", "shape", [5, 4]), "listing"),
    "listing-dtype": (_set("arrays", "params/0.W_hh", "dtype", "float32"), "listing"),
    "listing-missing": (_delete("arrays", "params/0.b_h"), "listing"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_edited_json_is_refused(saved, tmp_path, case):
    _, path = saved
    mutate, phrase = EDITS[case]
    refused(edit(path, tmp_path, mutate), phrase)


@pytest.mark.parametrize("raw, phrase", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe\x00", "not valid UTF-8 JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b"", "not valid UTF-8 JSON"),
    (b"[" * 100000 + b"]" * 100000, "JSON"),
], ids=["syntax", "utf8", "list", "empty", "deep"])
def test_unparsable_json_is_refused(saved, tmp_path, raw, phrase):
    _, path = saved
    refused(edit(path, tmp_path, raw_json=raw), phrase)


def test_consistently_edited_sizes_meet_the_real_arrays(saved, tmp_path):
    """Config and listing both edited: the arrays' own shapes still give it away."""
    _, path = saved

    def mutate(doc):
        doc["model"]["layers"][2]["hidden_size"] = 7
        doc["arrays"]["params/2.W_xh"]["shape"] = [7, 4]
        doc["arrays"]["params/2.W_hh"]["shape"] = [7, 7]
        doc["arrays"]["params/2.W_hy"]["shape"] = [3, 7]
    refused(edit(path, tmp_path, mutate), "'params/2.W_xh' has shape (6, 4)", "expected shape (7, 4)")


def test_json_entry_of_wrong_dtype_is_refused(saved, tmp_path):
    _, path = saved
    doc, arrays = read_raw(path)
    arrays[JSON_ENTRY] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8).astype(np.float64)
    out = tmp_path / "x.npz"
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    refused(out, "uint8")


ARRAY_EDITS = {
    "wrong-shape": (lambda a: a.__setitem__("params/0.W_xh", a["params/0.W_xh"].T.copy()), "shape"),
    "wrong-dtype": (lambda a: a.__setitem__("params/0.W_hh", a["params/0.W_hh"].astype(np.float32)),
                    "dtype"),
    "big-endian": (lambda a: a.__setitem__("params/0.W_hh", a["params/0.W_hh"].astype(">f8")), "dtype"),
    "int-dtype": (lambda a: a.__setitem__("params/0.b_h", np.zeros(5, dtype=np.int64)), "dtype"),
    "scalar": (lambda a: a.__setitem__("params/0.b_h", np.float64(1.0)), "shape"),
    "missing": (lambda a: a.pop("params/1.bwd.W_hy"), "missing ['params/1.bwd.W_hy']"),
    "extra": (lambda a: a.__setitem__("params/0.W_extra", np.zeros(3)), "unexpected ['params/0.W_extra']"),
    "extra-foreign": (lambda a: a.__setitem__("junk", np.zeros(3)), "unexpected ['junk']"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_EDITS))
def test_wrong_arrays_are_refused(saved, tmp_path, case):
    _, path = saved
    mutate, phrase = ARRAY_EDITS[case]
    refused(edit(path, tmp_path, mutate_arrays=mutate), phrase)


def test_edited_optimizer_state_is_refused(tmp_path):
    model = make("layer-output")
    opt = optim.Adam(model, lr=0.01)
    train_steps(model, opt, 1, seed=0)
    path = tmp_path / "ck.npz"
    io.save({"model": model, "optimizer": opt}, path)
    cases = [
        (_set("optimizer", "config", "lr", -1.0), "optimizer"),
        (_set("optimizer", "config", "type", "Lion"), "optimizer"),
        (_set("optimizer", "config", "amsgrad", True), "optimizer"),       # needs max_exp_avg_sq
        (_set("optimizer", "config", "step", -3), "optimizer"),
        (_delete("optimizer", "config", "eps"), "optimizer"),
        (_set("optimizer", "params", "W_hh", {"shape": [5, 4], "dtype": "float64"}), "layout"),
    ]
    for mutate, phrase in cases:
        refused(edit(path, tmp_path, mutate), phrase)

    def drop_buffer(a):
        del a["optimizer/exp_avg_sq.W_hh"]

    def drop_buffer_doc(doc):
        del doc["arrays"]["optimizer/exp_avg_sq.W_hh"]
    refused(edit(path, tmp_path, drop_buffer_doc, drop_buffer), "optimizer")

    def bad_buffer(a):
        a["optimizer/exp_avg.W_hh"] = a["optimizer/exp_avg.W_hh"][:2]
    refused(edit(path, tmp_path, mutate_arrays=bad_buffer), "shape")

    # an optimizer-only file is validated as thoroughly
    io.save(opt, path)
    refused(edit(path, tmp_path, _set("optimizer", "config", "betas", [0.9])), "optimizer")
    refused(edit(path, tmp_path, _set("optimizer", "params", "W_hh", {"shape": [5], "dtype": "f8"})),
            "dtype")


# --------------------------------------------------------------------------
# atomic writes

def _listing(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("where", ["savez", "savez-interrupt", "fsync", "replace"])
def test_failed_save_leaves_old_file_and_no_temp_file(tmp_path, monkeypatch, where):
    path = tmp_path / "model.npz"
    old = make("layer")
    io.save(old, path)
    old_bytes = path.read_bytes()
    before = _listing(tmp_path)

    if where.startswith("savez"):
        exc = KeyboardInterrupt if where == "savez-interrupt" else OSError

        def boom(file, *args, **kwargs):
            file.write(b"PK\x03\x04 partial garbage")   # something already written
            raise exc("disk full")
        monkeypatch.setattr(np, "savez", boom)
    elif where == "fsync":
        def boom(fd):
            raise OSError("I/O error")
        monkeypatch.setattr(os, "fsync", boom)
    else:
        def boom(src, dst):
            raise OSError("rename failed")
        monkeypatch.setattr(os, "replace", boom)

    with pytest.raises((OSError, KeyboardInterrupt)):
        io.save(make("stack"), path)
    monkeypatch.undo()
    assert _listing(tmp_path) == before
    assert path.read_bytes() == old_bytes
    assert_same_params(old, io.load(path))


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("rename failed")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.save(make("layer"), tmp_path / "new.npz")
    monkeypatch.undo()
    assert _listing(tmp_path) == []


def test_from_config_rebuilds_every_kind():
    for name in MODULES:
        m = make(name)
        m2 = io.from_config(m.config())
        assert type(m2) is type(m) and m2.config() == m.config()
        assert {k: v.shape for k, v in m2.params.items()} == {k: v.shape for k, v in m.params.items()}
    with pytest.raises(ValueError):
        io.from_config({"type": "Layer"})
    with pytest.raises(ValueError):
        io.from_config("Layer(3, 5)")
