"""`crnn verify`: the table, the exit status, and that a wrong result fails it."""

import crnn
from crnn import reference
from crnn.cli import main


def test_verify_quick_passes(capsys):
    assert main(["verify", "--quick", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    rows = [line for line in out.splitlines() if line.rstrip().endswith(" ok")]
    assert len(rows) >= 5


def test_verify_default_includes_stacks_and_torch_column(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "Stack 2 BiLayers" in out and "vs torch" in out


def test_verify_fails_when_the_oracle_disagrees(monkeypatch, capsys):
    original = reference.forward

    def off_by_a_little(*args, **kwargs):
        y, state = original(*args, **kwargs)
        return y + 1e-9, state

    monkeypatch.setattr(reference, "forward", off_by_a_little)
    assert main(["verify", "--quick", "--no-torch"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "SOME CHECKS FAILED" in out


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "verify" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert f"crnn {crnn.__version__}" in capsys.readouterr().out


def test_version_is_the_packages():
    """crnn.__version__ is the version pyproject.toml declares (the golden
    files name it; it changes when the core's arithmetic does)."""
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with open(pyproject, "rb") as f:
        assert tomllib.load(f)["project"]["version"] == crnn.__version__
