"""The application demos (`crnn demo NAME --quick`), run in-process: each must beat
its named baseline and end with a parseable RESULT line."""
import importlib.util
import json
import sys

import pytest

from crnn.cli import main

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None


def run_demo(capsys, *argv):
    """Run `crnn demo ...` in-process; return (exit code, RESULT dict, stdout)."""
    capsys.readouterr()
    code = main(["demo", *argv])
    out = capsys.readouterr().out
    lines = out.rstrip("\n").splitlines()
    assert lines and lines[-1].startswith("RESULT "), f"no closing RESULT line in:\n{out[-2000:]}"
    return code, json.loads(lines[-1][len("RESULT "):]), out


def _stable(res):
    return {k: v for k, v in res.items() if "seconds" not in k and k != "saved"}


def test_charlm_beats_unigram_and_sample_reloads(capsys, tmp_path):
    path = tmp_path / "lm.npz"
    code, res, _out = run_demo(capsys, "charlm", "--quick", "--no-progress", "--save", str(path))
    assert code == 0
    assert res["heldout_bpc"] < res["unigram_bpc"]
    assert 3.5 < res["unigram_bpc"] < 6          # Python source: about 4.5 bits/char
    assert path.exists() and res["saved"] == str(path)

    capsys.readouterr()
    assert main(["sample", str(path), "--prefix", "def ", "-n", "60", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("def ") and len(first.rstrip("\n")) == len("def ") + 60
    assert main(["sample", str(path), "--prefix", "def ", "-n", "60", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first      # seeded sampling repeats


def test_sample_rejects_a_file_without_vocabulary(capsys, tmp_path):
    from crnn import io as crnn_io
    from crnn.layers import Layer

    path = tmp_path / "plain.npz"
    crnn_io.save(Layer(3, 4, 3, seed=0), path)
    with pytest.raises(SystemExit, match="not a model saved by `crnn demo charlm`"):
        main(["sample", str(path)])


def test_adding_irnn_beats_predicting_one(capsys):
    code, res, _ = run_demo(capsys, "adding", "--quick", "--no-progress")
    assert code == 0
    assert res["irnn_mse"] < 0.167
    assert res["irnn_mse"] < res["tanh_mse"]


def test_forecast_beats_persistence(capsys):
    code, res, _out = run_demo(capsys, "forecast", "--quick")
    assert code == 0
    assert res["series"] == "sunspots" and res["test_points"] == 62
    assert res["rmse"] < res["persistence_rmse"]
    assert res["rmse"] < res["seasonal_naive_rmse"]


def test_forecast_own_csv(capsys, tmp_path):
    import math

    path = tmp_path / "series.csv"
    rows = ["t,load"] + [f"{i},{10 + 5 * math.sin(2 * math.pi * i / 12) + 0.1 * (i % 5)}"
                         for i in range(150)]
    path.write_text("\n".join(rows) + "\n")
    code, res, _ = run_demo(capsys, "forecast", "--quick", "--csv", str(path), "--column", "load",
                            "--season", "12", "--window", "12")
    assert code == 0
    assert res["rmse"] < res["persistence_rmse"]
    with pytest.raises(SystemExit, match="no column"):
        main(["demo", "forecast", "--quick", "--csv", str(path), "--column", "nope"])


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (pip install matplotlib)")
def test_forecast_and_gradients_plots(capsys, tmp_path):
    for demo in ("forecast", "gradients"):
        png = tmp_path / f"{demo}.png"
        code, res, _ = run_demo(capsys, demo, "--quick", "--plot", str(png))
        assert code == 0 and res["plot"] == str(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_exits_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    capsys.readouterr()
    assert main(["demo", "gradients", "--quick", "--plot", str(tmp_path / "g.png")]) == 2
    assert "install matplotlib" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_SKLEARN, reason="needs scikit-learn (pip install scikit-learn)")
def test_classify_beats_majority(capsys):
    code, res, _ = run_demo(capsys, "classify", "--quick", "--no-progress")
    assert code == 0
    assert res["accuracy"] > res["majority_accuracy"] + 0.5


def test_classify_without_sklearn_exits_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    capsys.readouterr()
    assert main(["demo", "classify", "--quick"]) == 2
    assert "pip install scikit-learn" in capsys.readouterr().err


def test_tag_bilayer_beats_layer(capsys):
    code, res, _ = run_demo(capsys, "tag", "--quick", "--no-progress")
    assert code == 0
    assert res["bilayer_accuracy"] > res["layer_accuracy"]
    assert res["bilayer_accuracy"] > res["majority_accuracy"]
    assert res["bilayer_ambiguous_accuracy"] > res["layer_ambiguous_accuracy"]


def test_translate_beats_trivial_baseline(capsys):
    code, res, _ = run_demo(capsys, "translate", "--quick", "--no-progress", "--test", "300")
    assert code == 0
    assert res["char_accuracy"] > res["baseline_char_accuracy"] + 0.1
    assert res["valid_dates"] > 0.5


def test_gradients_vanish_and_explode(capsys):
    code, res, _ = run_demo(capsys, "gradients", "--quick")
    assert code == 0
    T = res["T"]
    small, big = res["norms"]["0.5"], res["norms"]["1.5"]
    assert len(small) == T
    assert small[-1] < 1e-3 * small[0]           # radius 0.5: vanishes
    assert big[-1] > 10 * big[0]                 # radius 1.5: explodes
    assert res["per_step_factor"]["0.5"] < 1 < res["per_step_factor"]["1.5"]
    assert res["core_vs_product_max_rel_diff"] < 1e-10


def test_demos_are_deterministic_for_a_seed(capsys):
    runs = [_stable(run_demo(capsys, "tag", "--quick", "--no-progress", "--seed", "3")[1])
            for _ in range(2)]
    assert runs[0] == runs[1]
    other = _stable(run_demo(capsys, "tag", "--quick", "--no-progress", "--seed", "4")[1])
    assert other != runs[0]


def test_demo_needs_a_name(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo"])
    assert e.value.code == 2
