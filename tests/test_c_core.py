"""Compile and run the C core's own test program (src_c/tests/test_core.c).

The program checks the C core against a naive forward, finite differences,
float32 vs float64, libm, and every error path; it exits non-zero on any
failure and prints one line per failing check to stderr. It needs only a C
compiler (the core gets the naive gemm of src_c/blas_ref.c), no SciPy.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SRC_C = Path(__file__).resolve().parents[1] / "src_c"
SOURCES = [SRC_C / "tests" / "test_core.c", SRC_C / "elman.c", SRC_C / "par.c",
           SRC_C / "blas_ref.c"]
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all"]
TSAN = ["-fsanitize=thread"]


@pytest.fixture(scope="module")
def cc():
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler found")
    return compiler


def _compile(cc, out, flags):
    cmd = [cc, *flags, f"-I{SRC_C}", *map(str, SOURCES), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"compiling the C tests failed:\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def _run(exe, env=None, args=()):
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, (
        f"{exe.name} exited with {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    assert "checks passed" in proc.stdout, proc.stdout
    return proc


def _accepts(cc, tmp_path, flags):
    """Whether cc compiles, links and runs a trivial program with these flags."""
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "probe"
    proc = subprocess.run([cc, *flags, str(probe), "-o", str(exe)], capture_output=True)
    if proc.returncode != 0:
        return False
    return subprocess.run([str(exe)], capture_output=True).returncode == 0


def test_c_core(cc, tmp_path):
    exe = tmp_path / "test_core"
    _compile(cc, exe, CFLAGS)
    _run(exe)


def test_c_core_portable(cc, tmp_path):
    """The core built without its AVX2 code (-DCRNN_NO_PGEMM), as on CPUs
    and compilers that lack it: every time-loop product on the BLAS, the
    transposes of W_xh one value at a time."""
    exe = tmp_path / "test_core_portable"
    _compile(cc, exe, CFLAGS + ["-DCRNN_NO_PGEMM"])
    _run(exe)


def test_c_core_sanitized(cc, tmp_path):
    if not _accepts(cc, tmp_path, SANITIZE):
        pytest.skip("compiler lacks ASan/UBSan")
    exe = tmp_path / "test_core_asan"
    _compile(cc, exe, CFLAGS + SANITIZE)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1")
    _run(exe, env)


def test_c_core_threads_race_free(cc, tmp_path):
    """The tests that run the core on its own two threads (`test_core
    threads`), under ThreadSanitizer: a data race makes it exit non-zero."""
    if not _accepts(cc, tmp_path, TSAN):
        pytest.skip("compiler lacks ThreadSanitizer")
    exe = tmp_path / "test_core_tsan"
    _compile(cc, exe, CFLAGS + TSAN)
    proc = _run(exe, dict(os.environ, TSAN_OPTIONS="halt_on_error=1"), ["threads"])
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr
