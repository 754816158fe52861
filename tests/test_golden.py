"""crnn golden / check-against: deterministic files, values against crnn and
crnn.reference, the comparison's verdicts, and the README's examples."""
import hashlib
import itertools
import json
import pathlib
import re
import shutil
import zipfile

import numpy as np
import pytest

import crnn
from crnn import golden, reference
from crnn.cli import main
from crnn.layers import BiLayer, Layer, Stack

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    """The full golden set (both dtypes), written once through the CLI."""
    d = tmp_path_factory.mktemp("g") / "golden"
    assert main(["golden", "--out", str(d)]) == 0
    return d


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _run(capsys, *argv):
    code = main(["check-against", *map(str, argv)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _rows(text, tensor):
    """Table rows whose tensor column is exactly `tensor`."""
    return [ln for ln in text.splitlines() if len(ln.split()) > 1 and ln.split()[1] == tensor]


def _rewrite(path, **changes):
    """Rewrite a case file with entries replaced (value) or removed (None)."""
    z = dict(np.load(path))
    for k, v in changes.items():
        if v is None:
            z.pop(k, None)
        else:
            z[k] = v
    np.savez(path, **z)


# --------------------------------------------------------------------------
# the set

def test_set_is_complete_documented_and_small(gold):
    m = _manifest(gold)
    assert (m["format"], m["format_version"], m["crnn_version"]) == ("crnn-golden", 1, crnn.__version__)
    assert m["tolerances"]["check_against"]["rtol"] == {"float64": 1e-10, "float32": 1e-4}
    for key in ("layout", "layer", "activations", "loss", "lengths", "reverse", "bilayer",
                "state_names"):
        assert m["conventions"][key]
    assert "finfo(dtype).tiny" in m["conventions"]["activations"]
    cases = m["cases"]
    assert len(cases) == 2 * len(golden.CASES) >= 60
    files = sorted(p.name for p in gold.iterdir())
    assert files == sorted([c["file"] for c in cases.values()] + ["manifest.json"])  # no temp files
    assert sum(p.stat().st_size for p in gold.iterdir()) < 1_000_000
    for name, c in cases.items():
        data = (gold / c["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == c["sha256"] and len(data) == c["bytes"]
        assert name.endswith("." + c["dtype"])

    pairs, merges, feats, stacks = set(), set(), set(), set()
    for c in cases.values():
        cfg = c["config"]
        mods = cfg["layers"] if cfg["type"] == "Stack" else [cfg]
        if cfg["type"] == "Stack":
            stacks.add(len(mods))
        for mc in mods:
            if mc["output_size"] is not None:
                pairs.add((mc["activation"], mc["output_activation"]))
            if mc["type"] == "BiLayer":
                merges.add(mc["merge"])
            assert mc["hidden_size"] <= 8
        T, B = c["tensors"]["x"]["shape"][:2]
        assert T <= 12 and B <= 4
        feats |= set(c["features"])
    assert pairs >= set(itertools.product(("tanh", "relu", "sigmoid", "identity"),
                                          ("identity", "tanh", "relu", "sigmoid", "softmax")))
    assert merges == {"concat", "sum", "mean", "mul"} and stacks == {2, 3}
    assert feats >= {"layer", "bilayer", "stack", "projection", "no-bias", "reverse", "tokens",
                     "lengths", "zero-length", "h0", "dstate"}
    assert any("projection" not in c["features"] and c["config"]["type"] == "Layer"
               for c in cases.values())


def test_regenerating_gives_bit_identical_files(gold, tmp_path):
    again = tmp_path / "again"
    golden.generate(again)
    names = sorted(p.name for p in gold.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for n in names:
        assert (gold / n).read_bytes() == (again / n).read_bytes(), n
    m = _manifest(again)
    for c in m["cases"].values():
        assert hashlib.sha256((again / c["file"]).read_bytes()).hexdigest() == c["sha256"]
    with zipfile.ZipFile(gold / "layer_tanh.float64.npz") as zf:
        infos = zf.infolist()
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    # the seed matters; the dtype-only option writes only that dtype
    spec = golden.CASES[0]
    _, a0, _ = golden.make_case(spec, "float64", seed=0)
    _, a1, _ = golden.make_case(spec, "float64", seed=1)
    assert not np.array_equal(a0["x"], a1["x"])
    _, a32, _ = golden.make_case(spec, "float32", seed=0)
    assert a32["x"].dtype == np.float32 and np.array_equal(a32["x"], a0["x"].astype(np.float32))


def test_cli_dtype_and_seed(tmp_path, capsys):
    assert main(["golden", "--out", str(tmp_path / "f32"), "--dtype", "float32", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "wrote 32 cases" in out
    m = _manifest(tmp_path / "f32")
    assert m["seed"] == 3 and m["dtypes"] == ["float32"]
    assert all(n.endswith(".float32") for n in m["cases"])


def _expected_names(module, spec):
    paths = golden.state_paths(module)
    names = {"config", "meta", "x", "dy", "y", "dx"} | {f"{p}/{k}" for k in module.params
                                                       for p in ("param", "grad")}
    names |= {golden.state_name(kind, p) for kind in ("state", "dh0") for p in paths}
    if spec["tokens"]:
        names.discard("dx")
    if spec["lengths"] is not None:
        names.add("lengths")
    for kind in ("h0", "dstate"):
        if spec[kind]:
            names |= {golden.state_name(kind, p) for p in paths}
    return names


def test_stored_tensors_match_crnn_and_reference(gold):
    specs = {s["name"]: s for s in golden.CASES}
    for case, c in _manifest(gold)["cases"].items():
        z = dict(np.load(gold / c["file"], allow_pickle=False))
        cfg = json.loads(bytes(z["config"]))
        assert cfg == c["config"]
        meta = json.loads(bytes(z["meta"]))
        assert meta["case"] == case and meta["format"] == "crnn-golden"
        module = golden.module_from_config(cfg)
        assert set(z) == _expected_names(module, specs[case.rsplit(".", 1)[0]]), case
        for k in module.params:
            module.params[k][...] = z[f"param/{k}"]
        dt = np.dtype(c["dtype"])
        for k, v in z.items():
            if k not in ("config", "meta", "x", "lengths"):
                assert v.dtype == dt, (case, k)
        paths = golden.state_paths(module)

        def st(kind):
            names = [golden.state_name(kind, p) for p in paths]
            return golden._unflatten(module, [z[n] for n in names]) if names[0] in z else None

        h0, dstate, lengths = st("h0"), st("dstate"), z.get("lengths")
        fresh = golden.compute(module, z["x"], h0, lengths, z["dy"], dstate)
        params = {k: np.array(v) for k, v in module.params.items()}
        y_r, s_r = reference.forward(cfg, params, z["x"], h0, lengths)
        g_r, dx_r, dh0_r = reference.gradients(cfg, params, z["x"], z["dy"], h0, lengths, dstate)
        ref = {"y": y_r, **{f"grad/{k}": v for k, v in g_r.items()}}
        ref.update(golden._state_arrays(module, "state", s_r))
        ref.update(golden._state_arrays(module, "dh0", dh0_r))
        if dx_r is not None:
            ref["dx"] = dx_r
        assert set(fresh) == set(ref)
        tol = 1e-12 if dt == np.float64 else 1e-4
        for k in fresh:
            np.testing.assert_array_equal(fresh[k], z[k], err_msg=f"{case} {k}")
            e = np.abs(z[k] - ref[k]) / np.maximum(1.0, np.abs(ref[k]))
            assert e.max(initial=0) <= tol, (case, k, e.max())


def test_state_naming_scheme():
    s = Stack([Layer(3, 4, seed=0), BiLayer(4, 2, seed=1), Layer(4, 2, seed=2)])
    assert golden.state_paths(s) == ["0", "1.fwd", "1.bwd", "2"]
    assert golden.state_paths(BiLayer(3, 2)) == ["fwd", "bwd"]
    assert [golden.state_name("h0", p) for p in golden.state_paths(Layer(3, 2))] == ["h0"]
    assert golden.state_name("dh0", "1.fwd") == "dh0/1.fwd"


def test_refuses_a_case_that_disagrees_with_the_reference(tmp_path, monkeypatch):
    real = golden._reference

    def off(*args):
        out = real(*args)
        out["y"] = out["y"] + 1e-9
        return out

    monkeypatch.setattr(golden, "_reference", off)
    with pytest.raises(golden.GoldenError, match="refusing to write"):
        golden.generate(tmp_path / "bad", dtypes=["float64"])
    assert list((tmp_path / "bad").iterdir()) == []


# --------------------------------------------------------------------------
# check-against

def test_check_against_the_golden_set_passes(gold, capsys):
    code, out, _ = _run(capsys, gold)
    assert code == 0, out
    rows = [ln for ln in out.splitlines() if ln.endswith(("ok", "FAIL", "missing", "extra"))]
    assert len(rows) == 626 and all(ln.endswith(" ok") for ln in rows)
    assert out.strip().endswith("0 FAILED, 0 case error(s), 0 missing, 0 extra -> passed")
    for case in _manifest(gold)["cases"]:
        assert case in out
    row = _rows(out, "grad/1.bwd.W_hh")[0]
    assert row.split()[2:] == ["0.00e+00", "0.00e+00", "1e-10", "ok"] or "float32" in row


def test_perturbed_tensor_fails_and_is_named(gold, tmp_path, capsys):
    d = tmp_path / "copy"
    shutil.copytree(gold, d)
    f = d / "stack2_layers.float64.npz"
    g = np.load(f)["grad/1.W_hh"].copy()
    g[1, 2] += 1e-6
    _rewrite(f, **{"grad/1.W_hh": g})
    code, out, _ = _run(capsys, d, "-q")
    assert code == 1
    fails = [ln for ln in out.splitlines() if "FAIL" in ln and not ln.startswith("64 case")]
    assert len(fails) == 1, out
    assert fails[0].split()[:2] == ["stack2_layers.float64", "grad/1.W_hh"]
    assert float(fails[0].split()[2]) == pytest.approx(1e-6, rel=1e-6)
    assert out.strip().endswith("625 tensors ok, 1 FAILED, 0 case error(s), 0 missing, 0 extra -> FAILED")
    # a looser tolerance accepts it; 1e-12 is within the float64 default
    assert _run(capsys, f, "-q", "--rtol", "float64=1e-5")[0] == 0
    assert _run(capsys, f, "-q", "--rtol", "1e-5")[0] == 0
    g[1, 2] -= 1e-6 - 1e-12
    _rewrite(f, **{"grad/1.W_hh": g})
    assert _run(capsys, f, "-q")[0] == 0


def test_missing_and_extra_tensors_are_reported_by_name(gold, tmp_path, capsys):
    f = tmp_path / "bilayer_sum.float64.npz"
    shutil.copy(gold / f.name, f)
    _rewrite(f, **{"grad/fwd.W_hh": None, "dh0/bwd": None, "hidden_seq": np.zeros(3),
                   "param/fwd.W_qq": np.zeros(2), "h0/2": np.zeros(2)})
    code, out, _ = _run(capsys, f)
    assert code == 0, out
    for name in ("grad/fwd.W_hh", "dh0/bwd"):
        assert "missing" in _rows(out, name)[0]
    for name in ("hidden_seq", "param/fwd.W_qq", "h0/2"):
        assert "extra" in _rows(out, name)[0]
    assert "2 missing, 3 extra -> passed" in out
    code, out, _ = _run(capsys, f, "--strict")
    assert code == 1 and "FAIL: --strict" in _rows(out, "hidden_seq")[0]
    # token input has no dx
    t = tmp_path / "tok" / "layer_tanh_softmax.float64.npz"
    t.parent.mkdir()
    shutil.copy(gold / t.name, t)
    _rewrite(t, dx=np.zeros((6, 3, 7)))
    code, out, _ = _run(capsys, t)
    assert code == 0 and "token input has no dx" in _rows(out, "dx")[0]


def test_forward_only_subsets_pass(gold, tmp_path, capsys):
    src = dict(np.load(gold / "stack3_tokens.float64.npz"))
    fwd = {k: v for k, v in src.items() if k in ("config", "x", "lengths", "y")
           or k.split("/")[0] in ("param", "h0", "state")}
    d = tmp_path / "fwd"
    d.mkdir()
    np.savez(d / "stack3_tokens.float64.npz", **fwd)
    code, out, _ = _run(capsys, d)
    assert code == 0, out
    assert "ok" in _rows(out, "state/0.bwd")[0] and "not checked: no dy" in _rows(out, "(gradients)")[0]
    assert not _rows(out, "grad/2.W_hy")
    # with dy taken from --golden, the gradients are expected, so listed as missing
    code, out, _ = _run(capsys, d, "--golden", gold)
    assert code == 0 and "missing" in _rows(out, "grad/2.W_hy")[0]
    assert not _rows(out, "dx")  # token input: dx is not even expected
    # outputs only, inputs from --golden; the other golden cases are listed once
    only = tmp_path / "only"
    only.mkdir()
    np.savez(only / "stack3_tokens.float64.npz", y=src["y"], **{"state/2": src["state/2"]})
    code, out, _ = _run(capsys, only, "--golden", gold)
    assert code == 0, out
    assert "63 golden case(s) not in" in out and "ok" in _rows(out, "state/2")[0]
    assert "missing" in _rows(out, "state/1")[0]
    assert _run(capsys, only, "--golden", gold, "--strict")[0] == 1
    # without --golden that file has nothing to run
    code, out, _ = _run(capsys, only)
    assert code == 1 and "no 'config' entry" in out
    # gradients but no dy anywhere: cannot be checked, which fails
    g = tmp_path / "nody"
    g.mkdir()
    np.savez(g / "layer_tanh.float64.npz", **{k: v for k, v in
                                              np.load(gold / "layer_tanh.float64.npz").items()
                                              if k != "dy"})
    code, out, _ = _run(capsys, g)
    assert code == 1 and "no dy" in _rows(out, "grad/W_hh")[0]


def test_wrong_values_shapes_and_nan_fail(gold, tmp_path, capsys):
    f = tmp_path / "layer_relu_relu.float32.npz"
    shutil.copy(gold / f.name, f)
    z = np.load(f)
    y = z["y"].copy()
    y[0, 0, 0] = np.nan
    _rewrite(f, y=y, state=z["state"][:, :2], dx=z["dx"] * (1 + 1e-3))
    code, out, _ = _run(capsys, f)
    assert code == 1
    assert "FAIL" in _rows(out, "y")[0] and "nan" in _rows(out, "y")[0]
    assert "FAIL: shape (4, 2), expected (4, 6)" in _rows(out, "state")[0]
    assert "FAIL" in _rows(out, "dx")[0]


def test_corrupted_and_foreign_files_give_clear_errors(gold, tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "garbage.npz").write_bytes(b"this is not a zip file")
    data = (gold / "layer_tanh.float64.npz").read_bytes()
    (d / "truncated.npz").write_bytes(data[: len(data) // 2])
    np.savez(d / "foreign.npz", a=np.zeros(3), b=np.ones(2))
    np.savez(d / "pickled.npz", config=np.array([{"type": "Layer"}], dtype=object))
    np.savez(d / "badjson.npz", config=np.frombuffer(b"{not json", np.uint8))
    z = dict(np.load(gold / "layer_tanh.float64.npz"))
    z["param/W_xh"] = z["param/W_xh"][:, :2]
    np.savez(d / "badparam.npz", **z)
    z = dict(np.load(gold / "layer_tanh.float64.npz"))
    z["meta"] = np.frombuffer(json.dumps({"format": "something-else"}).encode(), np.uint8)
    np.savez(d / "badmeta.npz", **z)
    code, out, _ = _run(capsys, d)
    assert code == 1
    err = {ln.split()[0]: ln for ln in out.splitlines() if "ERROR" in ln}
    assert set(err) == {"garbage", "truncated", "foreign", "pickled", "badjson", "badparam", "badmeta"}
    assert "not a readable .npz" in err["garbage"] and "garbage.npz" in err["garbage"]
    assert "truncated.npz" in err["truncated"]
    assert "no 'config' entry" in err["foreign"] and "'a'" in err["foreign"]
    assert "object (pickled) array" in err["pickled"]
    assert "'config' is not valid JSON" in err["badjson"]
    assert "param/W_xh has float64 (5, 2), expected float64 (5, 3)" in err["badparam"]
    assert "not crnn-golden metadata" in err["badmeta"]
    # a golden file that no longer matches its manifest
    g = tmp_path / "gold"
    shutil.copytree(gold, g)
    _rewrite(g / "layer_tanh.float64.npz")  # same arrays, different bytes
    only = tmp_path / "only"
    only.mkdir()
    np.savez(only / "layer_tanh.float64.npz", y=z["y"])
    code, out, _ = _run(capsys, only, "--golden", g)
    assert code == 1 and "does not match the SHA-256" in out
    # nothing to check, or bad options: exit 2 with a message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(capsys, empty)[0] == 2
    code, _, err_text = _run(capsys, tmp_path / "nope")
    assert code == 2 and "no such file" in err_text
    code, _, err_text = _run(capsys, gold, "--rtol", "float16=1")
    assert code == 2 and "--rtol" in err_text


# --------------------------------------------------------------------------
# the README's examples

def _readme_blocks():
    text = README.read_text()
    section = text.split("## Golden files and check-against", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_ten_line_numpy_example_runs(gold, monkeypatch):
    block = _readme_blocks()[0]
    assert 'np.load("golden/layer_tanh.float64.npz")' in block
    assert len(block.strip().splitlines()) <= 12
    monkeypatch.chdir(gold.parent)
    exec(compile(block, "README.md", "exec"), {})


def test_readme_torch_example_passes_check_against(gold, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch", reason="torch not installed")
    block = _readme_blocks()[1]
    shutil.copytree(gold, tmp_path / "golden")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    code, out, _ = _run(capsys, "results", "--golden", "golden")
    assert code == 0, out
    assert len([ln for ln in out.splitlines() if ln.endswith(" ok")]) == 7
