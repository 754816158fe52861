"""crnn: a reference implementation of Elman recurrent neural networks.

A C99 core (BLAS through SciPy) computes whole-sequence forward passes and
backpropagation through time; this package wraps it into Layer, BiLayer and
Stack modules, with losses, optimizers, a training loop, save/load, a
literal NumPy oracle (crnn.reference) and finite-difference checks.
"""
__version__ = "0.4.12"

from crnn import losses, optim, reference  # noqa: E402
from crnn._core import blas_threads, mt_flops, release_memory, thread_control  # noqa: E402
from crnn.gradcheck import gradcheck  # noqa: E402
from crnn.io import load, save  # noqa: E402
from crnn.layers import BiLayer, Layer, Stack  # noqa: E402
from crnn.train import fit, generate, predict  # noqa: E402

__all__ = ["Layer", "BiLayer", "Stack", "losses", "optim", "reference", "gradcheck",
           "save", "load", "fit", "generate", "predict", "blas_threads", "mt_flops",
           "thread_control", "release_memory", "__version__"]
