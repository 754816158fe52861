# cython: language_level=3, boundscheck=False, wraparound=False
"""The binding: checks every buffer, then calls the C core without the GIL.

The Python layer (crnn.layers) converts user input and words its errors for
the user; this module is the last guard before a pointer reaches C. Every
array handed to C is checked here for type, dtype, shape and C-contiguity
(outputs also for writeability), so that no call from Python can make the C
core read or write out of bounds.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

from crnn._crnn cimport *

cnp.import_array()

ctypedef void (*_set_threads_fn)(int) noexcept nogil
ctypedef int (*_get_threads_fn)() noexcept nogil


def _locate_thread_control():
    """Addresses of (set, get)_num_threads of the OpenBLAS behind
    scipy.linalg.cython_blas, or (0, 0) when it cannot be found (another BLAS,
    or threadpoolctl missing): then the BLAS keeps its own thread policy."""
    import ctypes
    import os

    import scipy
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return 0, 0
    base = os.path.realpath(os.path.dirname(scipy.__file__))
    for lib in ThreadpoolController().lib_controllers:
        path = os.path.realpath(lib.filepath or "")
        if lib.internal_api != "openblas" or not (
                path.startswith(base + os.sep) or path.startswith(base + ".libs")):
            continue
        for prefix, suffix in (("scipy_", ""), ("", ""), ("scipy_", "64_"), ("", "64_")):
            fs = [getattr(lib.dynlib, f"{prefix}openblas_{v}_num_threads{suffix}", None)
                  for v in ("set", "get")]
            if None not in fs:
                return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in fs)
    return 0, 0


cdef crnn_blas _blas
cdef _get_threads_fn _get_threads = NULL
_blas.sgemm = sgemm
_blas.dgemm = dgemm
_blas.sgemv = sgemv
_blas.dgemv = dgemv
_blas.set_threads = NULL
_blas.threads = 1
_blas.mt_flops = CRNN_MT_FLOPS
_blas.mt_flops_step = CRNN_MT_FLOPS_STEP
_blas.par = crnn_par_run2
_blas.par_flops = CRNN_PAR_FLOPS
_blas.dx_chunk_bytes = CRNN_DX_CHUNK_BYTES
_set_addr, _get_addr = _locate_thread_control()
if _set_addr and _get_addr:
    _blas.set_threads = <_set_threads_fn><size_t>_set_addr
    _get_threads = <_get_threads_fn><size_t>_get_addr


def thread_control():
    """True when crnn steers the BLAS threads (see `mt_flops`)."""
    return _blas.set_threads != NULL


def mt_flops(whole=None, step=None, par=None):
    """The flop counts from which crnn uses more than one thread, when the
    BLAS has two or more at the call's start (set them with threadpoolctl):
    `whole`: a whole-sequence product runs on the BLAS's threads;
    `step`: a product inside the time loop does;
    `par`: with two threads (and the packed time loop: x86-64 with AVX2
    and FMA), crnn runs the call on two threads of its own and the BLAS on
    one. Whole-sequence products from `whole` flops on (with 48 rows or
    more and two columns or more; in a forward whose time loop is not
    split, from 8 * `whole`) are
    split in two halves of their rows, and so are token input's row copies
    where the one-hot product would be; a backward chunk's dW_hh runs
    beside its dx, with dW_xh's rows shared out between them, when that
    balances them within 20 % (with dx: D = H/2, D = H) and they reach
    `whole` together; with a batch of B >= 4 a time
    loop (the forward's, or one chunk of the backward's) with `par` flops or
    more runs as two halves of the batch at once; with B < 4 the backward
    computes each chunk's parameter gradients on the second thread while
    the next chunk's time loop runs, when a chunk's products have `par`
    flops or more. The results are those of one thread, bit for bit.
    float("inf") turns this off, and the BLAS's own threads do the large
    products (`whole`, `step`) instead.
    Sets the ones given; returns the previous (whole, step, par)."""
    old = (_blas.mt_flops, _blas.mt_flops_step, _blas.par_flops)
    for name, value in (("whole", whole), ("step", step), ("par", par)):
        if value is not None and not value >= 0:
            raise ValueError(f"mt_flops {name} must be >= 0, got {value!r}")
    if whole is not None:
        _blas.mt_flops = whole
    if step is not None:
        _blas.mt_flops_step = step
    if par is not None:
        _blas.par_flops = par
    return old


def dx_chunk_bytes(value=None):
    """From how many bytes of a chunk's da the backward (with dx, without an
    output projection) runs longer chunks held in dx's rows not written yet
    (crnn_elman_backward in crnn.h); 0 turns this off. Sets it when given;
    returns the previous value."""
    old = _blas.dx_chunk_bytes
    if value is not None:
        if not value >= 0:
            raise ValueError(f"dx_chunk_bytes must be >= 0, got {value!r}")
        _blas.dx_chunk_bytes = value
    return old


def blas_threads(n=None):
    """The thread count of the OpenBLAS crnn calls (1 when it cannot be
    steered); with `n`, set it first."""
    if _blas.set_threads == NULL:
        return 1
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        _blas.set_threads(n)
    return _get_threads()


cdef crnn_blas _call_blas(int threads) noexcept:
    """The BLAS table for one call: large products on `threads` threads, or
    on the count in force now when threads is 0."""
    cdef crnn_blas b = _blas
    if threads > 0:
        b.threads = threads
    elif _get_threads != NULL:
        b.threads = _get_threads()
    return b

# --------------------------------------------------------------------------
# Output arrays come from a small cache of freed blocks (NumPy's NEP 49
# allocator hook, set only around crnn's own np.empty calls). glibc returns a
# freed block of a few MB to the kernel when it lies at the top of the heap
# and reaches its trim threshold, or when it was mmap'ed; the next call then
# page-faults every 4 KiB of its new outputs again, which on this project's
# VM costs more than the call's arithmetic at some sizes (a (3200, 128)
# float64 forward: 1568 faults and 7 ms instead of 0.5). Blocks of crnn's
# arrays that NumPy frees go into the cache instead, and an array of the same
# byte size takes one back. An array is never handed out while alive; the
# cache holds at most _POOL_SLOTS blocks and _POOL_CAP bytes (oldest evicted),
# none under _POOL_MIN bytes (glibc keeps those on the heap anyway).

from cpython.pycapsule cimport PyCapsule_New
from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)
from libc.stdlib cimport calloc as c_calloc, free as c_free, malloc as c_malloc, realloc as c_realloc
from libc.string cimport strncpy

cdef enum:
    _POOL_SLOTS = 8
cdef size_t _POOL_MIN = 1 << 18          # 256 KiB
cdef size_t _POOL_CAP = 1 << 28          # 256 MiB
cdef void *_pool_ptr[_POOL_SLOTS]
cdef size_t _pool_size[_POOL_SLOTS]      # 0: slot empty
cdef unsigned long _pool_age[_POOL_SLOTS]
cdef unsigned long _pool_clock = 0
cdef size_t _pool_bytes = 0
cdef PyThread_type_lock _pool_lock = PyThread_allocate_lock()


cdef void *_pool_malloc(void *ctx, size_t size) noexcept nogil:
    cdef void *p = NULL
    cdef int i
    global _pool_bytes
    if size >= _POOL_MIN:
        PyThread_acquire_lock(_pool_lock, WAIT_LOCK)
        for i in range(_POOL_SLOTS):
            if _pool_size[i] == size:
                p = _pool_ptr[i]
                _pool_size[i] = 0
                _pool_bytes -= size
                break
        PyThread_release_lock(_pool_lock)
    return p if p != NULL else c_malloc(size)


cdef void *_pool_calloc(void *ctx, size_t nelem, size_t elsize) noexcept nogil:
    return c_calloc(nelem, elsize)


cdef void *_pool_realloc(void *ctx, void *ptr, size_t new_size) noexcept nogil:
    return c_realloc(ptr, new_size)


cdef void _pool_free(void *ctx, void *ptr, size_t size) noexcept nogil:
    """Keep the block, evicting the oldest kept ones until a slot is empty
    and the byte cap allows it; or free it when it is too small or too big."""
    cdef int i, empty, oldest
    global _pool_bytes, _pool_clock
    if ptr == NULL:
        return
    if size < _POOL_MIN or size > _POOL_CAP:
        c_free(ptr)
        return
    PyThread_acquire_lock(_pool_lock, WAIT_LOCK)
    while True:
        empty = -1
        oldest = -1
        for i in range(_POOL_SLOTS):
            if _pool_size[i] == 0:
                if empty < 0:
                    empty = i
            elif oldest < 0 or _pool_age[i] < _pool_age[oldest]:
                oldest = i
        if empty >= 0 and _pool_bytes + size <= _POOL_CAP:
            break
        c_free(_pool_ptr[oldest])         # no empty slot, or over the cap: bytes > 0
        _pool_bytes -= _pool_size[oldest]
        _pool_size[oldest] = 0
    _pool_clock += 1
    _pool_ptr[empty] = ptr
    _pool_size[empty] = size
    _pool_age[empty] = _pool_clock
    _pool_bytes += size
    PyThread_release_lock(_pool_lock)


cdef cnp.PyDataMem_Handler _pool_handler
strncpy(_pool_handler.name, b"crnn_pool", 127)
_pool_handler.version = 1
_pool_handler.allocator.ctx = NULL
_pool_handler.allocator.malloc = _pool_malloc
_pool_handler.allocator.calloc = _pool_calloc
_pool_handler.allocator.realloc = _pool_realloc
_pool_handler.allocator.free = _pool_free
_POOL = PyCapsule_New(&_pool_handler, b"mem_handler", NULL)


def empty(dtype, *shapes):
    """np.empty(shape, dtype) for each shape (None for None), each block from
    crnn's cache of freed output blocks when one of its size is there."""
    old = cnp.PyDataMem_SetHandler(_POOL)
    try:
        return [None if shape is None else np.empty(shape, dtype) for shape in shapes]
    finally:
        cnp.PyDataMem_SetHandler(old)


def pool_info():
    """(blocks, bytes) held in the cache of freed output blocks."""
    cdef int i, n = 0
    PyThread_acquire_lock(_pool_lock, WAIT_LOCK)
    for i in range(_POOL_SLOTS):
        n += _pool_size[i] != 0
    b = _pool_bytes
    PyThread_release_lock(_pool_lock)
    return n, b


def release_memory():
    """Give every block in crnn's cache of freed output blocks back to the C
    allocator (crnn keeps up to 8 blocks, 256 MiB, so that the next call's
    outputs need no fresh pages). Returns the number of bytes released."""
    cdef int i
    global _pool_bytes
    PyThread_acquire_lock(_pool_lock, WAIT_LOCK)
    for i in range(_POOL_SLOTS):
        if _pool_size[i] != 0:
            c_free(_pool_ptr[i])
            _pool_size[i] = 0
    released = _pool_bytes
    _pool_bytes = 0
    PyThread_release_lock(_pool_lock)
    return released

_INT64 = np.dtype(np.int64)  # token ids and lengths

ACTIVATIONS = {"identity": CRNN_IDENTITY, "tanh": CRNN_TANH, "relu": CRNN_RELU,
               "sigmoid": CRNN_SIGMOID, "softmax": CRNN_SOFTMAX}


class CoreError(RuntimeError):
    """The C core refused a call the binding had let through (a bug in crnn)."""


cdef int _raise(int rc) except -1:
    if rc == CRNN_OK:
        return 0
    msg = crnn_strerror(rc).decode("ascii")
    if rc in (CRNN_ETOKEN, CRNN_ELENGTH, CRNN_ESIZE, CRNN_EACT):
        raise ValueError(msg)
    raise CoreError(msg)


cdef void* _buf(object a, str name, tuple shape, object dtype, bint out=False) except? NULL:
    """The data pointer of `a` after checking it; NULL for None. The checks
    go through NumPy's C API (the dtype descriptor's identity, then its
    equality; the flags' bits): with the Python attributes they replace
    (a.dtype, a.shape, a.flags), a 1-token forward's binding (its ~10
    checks and the C call) took 10 us of the forward's 15-18, now 4.5."""
    if a is None:
        return NULL
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if <object>cnp.PyArray_DESCR(arr) is not dtype and a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    cdef int nd = cnp.PyArray_NDIM(arr), i
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    cdef bint same = nd == len(shape)
    i = 0
    while same and i < nd:
        same = dims[i] == shape[i]
        i += 1
    if not same:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous")
    if out and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    return cnp.PyArray_DATA(arr)


cdef crnn_shape _shape(int T, int B, int D, int H, int O, str activation,
                       str output_activation, bint reverse, bint bias) except *:
    cdef crnn_shape s
    if T < 1 or B < 1 or D < 1 or H < 1 or O < 0:
        raise ValueError(f"sizes must be positive, got T={T}, B={B}, D={D}, H={H}, O={O}")
    if activation not in ACTIVATIONS or activation == "softmax":
        raise ValueError(f"unknown hidden activation {activation!r}")
    if output_activation not in ACTIVATIONS:
        raise ValueError(f"unknown output activation {output_activation!r}")
    s.T, s.B, s.D, s.H, s.O = T, B, D, H, O
    s.activation = ACTIVATIONS[activation]
    s.output_activation = ACTIVATIONS[output_activation]
    s.reverse = reverse
    s.bias = bias
    return s


def worksize(B, D, H, bint tokens, dtype):
    """Length of the `work` array of elman_forward/backward (0: not used)."""
    if np.dtype(dtype) == np.float64:
        return crnn_elman_worksize_f64(B, D, H, tokens)
    return crnn_elman_worksize_f32(B, D, H, tokens)


def _workspace(work, bint packed, int B, int D, int H, bint tokens, dt):
    """The work array of one call: None for packed=False (the time loop's
    products on the BLAS, tokens read down W_xh's columns) or when the core
    has no use for it, else `work` (1-D, at least worksize(...) long) or a
    fresh array."""
    if not packed:
        return None
    n = worksize(B, D, H, tokens, dt)
    if n == 0:
        return None
    if work is None:
        return np.empty(n, dt)
    if not isinstance(work, np.ndarray) or work.ndim != 1 or work.shape[0] < n:
        raise ValueError(f"work must be a 1-D array of at least {n} values")
    return work


def elman_forward(x, tokens, h0, lengths, params, *, work=None, bint packed=True, int threads=0,
                  dtype, int T, int B, int D, int H, int O,
                  str activation, str output_activation, bint reverse, bint bias):
    """Run crnn_elman_forward_*; returns (hs, y or None, h_last) as new arrays.

    x: (T,B,D) dense input or None; tokens: (T,B) int64 or None; h0: (B,H) or
    None; lengths: (B,) int64 or None; params: dict of the layer's arrays;
    dtype: float32 or float64, that of every float array; threads: BLAS
    threads for large products (0: the count in force); work: 1-D workspace
    of worksize(B, D, H, tokens is not None, dtype) values (None: allocated);
    packed=False: no workspace, the time loop's products go to the BLAS (see
    crnn.h).
    """
    cdef crnn_shape s = _shape(T, B, D, H, O, activation, output_activation, reverse, bias)
    dt = np.dtype(dtype)
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if (x is None) == (tokens is None):
        raise ValueError("exactly one of x and tokens must be given")
    hs, y, h_last = empty(dt, (T, B, H), (T, B, O) if O > 0 else None, (B, H))
    cdef void *p_hs = _buf(hs, "hs", (T, B, H), dt, True)
    cdef void *p_y = _buf(y, "y", (T, B, O), dt, True)
    cdef void *p_hl = _buf(h_last, "h_last", (B, H), dt, True)
    cdef void *p_x = _buf(x, "x", (T, B, D), dt)
    cdef void *p_tok = _buf(tokens, "tokens", (T, B), _INT64)
    cdef void *p_h0 = _buf(h0, "h0", (B, H), dt)
    cdef void *p_len = _buf(lengths, "lengths", (B,), _INT64)
    cdef void *p_wxh = _buf(params["W_xh"], "W_xh", (H, D), dt)
    cdef void *p_whh = _buf(params["W_hh"], "W_hh", (H, H), dt)
    cdef void *p_bh = _buf(params["b_h"], "b_h", (H,), dt) if bias else NULL
    cdef void *p_why = _buf(params["W_hy"], "W_hy", (O, H), dt) if O > 0 else NULL
    cdef void *p_by = _buf(params["b_y"], "b_y", (O,), dt) if (O > 0 and bias) else NULL
    work = _workspace(work, packed, B, D, H, tokens is not None, dt)
    cdef void *p_work = _buf(work, "work", None if work is None else work.shape, dt, True)
    cdef int rc
    cdef bint f64 = dt == np.float64
    cdef crnn_blas blas = _call_blas(threads)
    with nogil:
        if f64:
            rc = crnn_elman_forward_f64(<double*>p_hs, <double*>p_y, <double*>p_hl,
                                        <const double*>p_x, <const int64_t*>p_tok,
                                        <const double*>p_h0, <const int64_t*>p_len,
                                        <const double*>p_wxh, <const double*>p_whh,
                                        <const double*>p_bh, <const double*>p_why,
                                        <const double*>p_by, <double*>p_work, &s, &blas)
        else:
            rc = crnn_elman_forward_f32(<float*>p_hs, <float*>p_y, <float*>p_hl,
                                        <const float*>p_x, <const int64_t*>p_tok,
                                        <const float*>p_h0, <const int64_t*>p_len,
                                        <const float*>p_wxh, <const float*>p_whh,
                                        <const float*>p_bh, <const float*>p_why,
                                        <const float*>p_by, <float*>p_work, &s, &blas)
    _raise(rc)
    return hs, y, h_last


def chunk(int T, int B):
    """The backward's suggested steps per chunk (crnn_elman_chunk): about
    CRNN_CHUNK_ROWS rows of B, at most T."""
    return crnn_elman_chunk(T, B)


def elman_backward(dy, dstate, hs, y, x, tokens, h0, lengths, params, grads, bint want_dx,
                   *, da=None, dz=None, work=None, bint packed=True, chunk=None, int threads=0,
                   dtype, int T, int B, int D, int H,
                   int O, str activation, str output_activation, bint reverse, bint bias):
    """Run crnn_elman_backward_*: accumulates into `grads`, returns (dx or None, dh0).

    chunk: steps per chunk of the time loop (None: crnn_elman_chunk's; see
    crnn.h). da (C+1,B,H), dz (C,B,O) with C = min(chunk, T), and work (as for
    elman_forward) are workspaces; None allocates them."""
    cdef crnn_shape s = _shape(T, B, D, H, O, activation, output_activation, reverse, bias)
    dt = np.dtype(dtype)
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if (x is None) == (tokens is None):
        raise ValueError("exactly one of x and tokens must be given")
    cdef int F = O if O > 0 else H
    if chunk is None:
        chunk = crnn_elman_chunk(T, B)
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    cdef int C = min(chunk, T)
    dx, dh0 = empty(dt, (T, B, D) if (want_dx and tokens is None) else None, (B, H))
    if da is None:
        da = np.empty((C + 1, B, H), dt)
    if dz is None and O > 0:
        dz = np.empty((C, B, O), dt)
    cdef void *p_dx = _buf(dx, "dx", (T, B, D), dt, True)
    cdef void *p_dh0 = _buf(dh0, "dh0", (B, H), dt, True)
    cdef void *p_dwxh = _buf(grads["W_xh"], "grads['W_xh']", (H, D), dt, True)
    cdef void *p_dwhh = _buf(grads["W_hh"], "grads['W_hh']", (H, H), dt, True)
    cdef void *p_dbh = _buf(grads["b_h"], "grads['b_h']", (H,), dt, True) if bias else NULL
    cdef void *p_dwhy = _buf(grads["W_hy"], "grads['W_hy']", (O, H), dt, True) if O > 0 else NULL
    cdef void *p_dby = _buf(grads["b_y"], "grads['b_y']", (O,), dt, True) if (O > 0 and bias) else NULL
    cdef void *p_dy = _buf(dy, "dy", (T, B, F), dt)
    cdef void *p_ds = _buf(dstate, "dstate", (B, H), dt)
    cdef void *p_hs = _buf(hs, "hs", (T, B, H), dt)
    cdef void *p_y = _buf(y, "y", (T, B, O), dt) if O > 0 else NULL
    cdef void *p_x = _buf(x, "x", (T, B, D), dt)
    cdef void *p_tok = _buf(tokens, "tokens", (T, B), _INT64)
    cdef void *p_h0 = _buf(h0, "h0", (B, H), dt)
    cdef void *p_len = _buf(lengths, "lengths", (B,), _INT64)
    cdef void *p_wxh = _buf(params["W_xh"], "W_xh", (H, D), dt)
    cdef void *p_whh = _buf(params["W_hh"], "W_hh", (H, H), dt)
    cdef void *p_why = _buf(params["W_hy"], "W_hy", (O, H), dt) if O > 0 else NULL
    cdef void *p_da = _buf(da, "da", (C + 1, B, H), dt, True)
    cdef void *p_dz = _buf(dz, "dz", (C, B, O), dt, True)
    if O > 0 and y is None:
        raise ValueError("y is required when O > 0")
    work = _workspace(work, packed, B, D, H, tokens is not None, dt)
    cdef void *p_work = _buf(work, "work", None if work is None else work.shape, dt, True)
    cdef int rc
    cdef bint f64 = dt == np.float64
    cdef crnn_blas blas = _call_blas(threads)
    with nogil:
        if f64:
            rc = crnn_elman_backward_f64(<double*>p_dx, <double*>p_dh0, <double*>p_dwxh,
                                         <double*>p_dwhh, <double*>p_dbh, <double*>p_dwhy,
                                         <double*>p_dby, <const double*>p_dy,
                                         <const double*>p_ds, <const double*>p_hs,
                                         <const double*>p_y, <const double*>p_x,
                                         <const int64_t*>p_tok, <const double*>p_h0,
                                         <const int64_t*>p_len, <const double*>p_wxh,
                                         <const double*>p_whh, <const double*>p_why,
                                         <double*>p_da, <double*>p_dz, <double*>p_work, C, &s,
                                         &blas)
        else:
            rc = crnn_elman_backward_f32(<float*>p_dx, <float*>p_dh0, <float*>p_dwxh,
                                         <float*>p_dwhh, <float*>p_dbh, <float*>p_dwhy,
                                         <float*>p_dby, <const float*>p_dy,
                                         <const float*>p_ds, <const float*>p_hs,
                                         <const float*>p_y, <const float*>p_x,
                                         <const int64_t*>p_tok, <const float*>p_h0,
                                         <const int64_t*>p_len, <const float*>p_wxh,
                                         <const float*>p_whh, <const float*>p_why,
                                         <float*>p_da, <float*>p_dz, <float*>p_work, C, &s,
                                         &blas)
    _raise(rc)
    return dx, dh0


def all_finite(a, lengths=None):
    """True when the float32/float64 C-contiguous array `a` holds no NaN or
    inf; with `lengths` (B,) int64, `a` is (T, B, ...) and only the valid
    steps t < lengths[b] are read. Reads in place, no temporaries."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.dtype not in (np.float32, np.float64):
        raise TypeError("a must be a C-contiguous float32 or float64 array")
    cdef const int64_t[::1] lens = np.empty(0, np.int64) if lengths is None else lengths
    cdef int64_t n = a.size
    cdef int64_t T = a.shape[0] if a.ndim >= 1 else 1
    cdef int B = a.shape[1] if (lens.shape[0] and a.ndim >= 2) else 1
    cdef int64_t rows = T * B
    cdef int64_t F = n // rows if rows else 0
    if n and 0 < lens.shape[0] < B:
        raise ValueError(f"lengths must have at least B = {B} entries, got {lens.shape[0]}")
    cdef const int64_t *p_len = &lens[0] if lens.shape[0] else NULL
    cdef const void *p = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef bint f64 = a.dtype == np.float64
    cdef int ok
    with nogil:
        if f64:
            ok = crnn_all_finite_f64(<const double*>p, rows, F, p_len, B)
        else:
            ok = crnn_all_finite_f32(<const float*>p, rows, F, p_len, B)
    return ok != 0


def in_range(a, int64_t D):
    """True when every value of the non-empty C-contiguous int64 array `a`
    lies in [0, D), read in one pass (crnn_ids_in_range; token ids and
    lengths are checked with it on every call)."""
    if (not isinstance(a, np.ndarray) or a.dtype != np.int64 or not a.flags.c_contiguous
            or a.size == 0):
        raise TypeError("a must be a non-empty C-contiguous int64 array")
    cdef const int64_t *p = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef int64_t n = a.size
    cdef int ok
    with nogil:
        ok = crnn_ids_in_range(p, n, D)
    return ok != 0


def activate(x, str activation):
    """The core's elementwise activation applied to a float32/float64 array (a copy)."""
    if activation not in ACTIVATIONS or activation == "softmax":
        raise ValueError(f"unknown elementwise activation {activation!r}")
    arr = np.array(x, copy=True, order="C")
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        raise TypeError(f"x must be float32 or float64, got {arr.dtype}")
    cdef void *p = _buf(arr, "x", arr.shape, arr.dtype, True)
    cdef int64_t n = arr.size
    cdef int act = ACTIVATIONS[activation]
    cdef int rc
    cdef bint f64 = arr.dtype == np.float64
    with nogil:
        if f64:
            rc = crnn_activate_f64(<double*>p, <const double*>p, n, act)
        else:
            rc = crnn_activate_f32(<float*>p, <const float*>p, n, act)
    _raise(rc)
    return arr
