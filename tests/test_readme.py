"""The README's examples run, and print what the README says they print.

A ```python block whose first line is `# readme-test` (optionally followed by
the names of optional packages it needs) is executed in a temporary
directory; when the README follows it with an indented block introduced by a
line starting with "prints", the output must match it line for line.
"""
import contextlib
import importlib.util
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(# readme-test[^\n]*)\n(.*?)```\n(.*?)(?=\n```|\n## |\Z)", re.S)


def _examples():
    text = README.read_text(encoding="utf-8")
    for i, m in enumerate(BLOCK.finditer(text)):
        needs = m.group(1).split()[2:]
        expected = None
        after = m.group(3)
        p = re.search(r"^prints[^\n]*\n\n((?:    [^\n]*\n?)+)", after.lstrip("\n"), re.M)
        if p and after.lstrip("\n").startswith("prints"):
            expected = [line[4:] for line in p.group(1).rstrip("\n").split("\n")]
        yield pytest.param(m.group(2), needs, expected, id=f"example{i}")


@pytest.mark.parametrize("code,needs,expected", list(_examples()))
def test_readme_example(code, needs, expected, tmp_path, monkeypatch):
    for name in needs:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} not installed")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    if expected is not None:
        assert out.getvalue().rstrip("\n").split("\n") == expected


def test_readme_has_examples():
    assert len(list(_examples())) >= 3
