"""crnn: a reference implementation of Elman recurrent neural networks.

A C99 core (BLAS through SciPy) computes whole-sequence forward passes and
backpropagation through time; this package wraps it into Layer, BiLayer and
Stack modules, with losses, optimizers, a training loop, save/load, a
literal NumPy oracle (crnn.reference) and finite-difference checks.
"""
from crnn.layers import BiLayer, Layer, Stack

__version__ = "0.1.0"
__all__ = ["Layer", "BiLayer", "Stack", "__version__"]
