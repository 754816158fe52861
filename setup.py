"""Build crnn's extension: the Cython binding with the C core compiled in.

No BLAS library is linked: the core receives sgemm/dgemm from
scipy.linalg.cython_blas at import time. CRNN_DEBUG=1 builds with Cython
bounds checking and -O0 -g for debugging. The C core's headers (src_c/*.h)
are listed as dependencies so that editing them rebuilds the extension.
"""
import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("CRNN_DEBUG", "") not in ("", "0")
cflags = ["-std=c99", "-O0", "-g"] if debug else ["-std=c99", "-O3"]
# -fno-trapping-math lets GCC if-convert the selects in the vectorised
# activations (src_c/vmath.h); it changes no value. Never -ffast-math.
cflags += ["-fno-fast-math", "-fno-trapping-math", "-Wall", "-pthread"]

ext = Extension(
    "crnn._core",
    sources=["crnn/_core.pyx", "src_c/elman.c", "src_c/par.c"],
    include_dirs=["src_c", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=cflags,
    libraries=["m"],
    extra_link_args=["-pthread"],
    depends=[str(p) for p in Path("src_c").glob("*.h")],
)

directives = {"language_level": 3}
if debug:
    directives.update(boundscheck=True, wraparound=True)

setup(ext_modules=cythonize([ext], compiler_directives=directives))
