/* elman.c -- instantiates elman_impl.h for float and double. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "crnn.h"

#define REAL float
#define SFX f32
#define GEMM_PTR sgemm
#define REAL_TINY FLT_MIN
#define TANH_ tanhf
#define EXP_ expf
#include "elman_impl.h"
#undef REAL
#undef SFX
#undef GEMM_PTR
#undef REAL_TINY
#undef TANH_
#undef EXP_

#define REAL double
#define SFX f64
#define GEMM_PTR dgemm
#define REAL_TINY DBL_MIN
#define TANH_ tanh
#define EXP_ exp
#include "elman_impl.h"
#undef REAL
#undef SFX
#undef GEMM_PTR
#undef REAL_TINY
#undef TANH_
#undef EXP_

const char *crnn_strerror(int code)
{
    switch (code) {
    case CRNN_OK: return "success";
    case CRNN_ESIZE: return "a size is out of range (T, B, D, H must be >= 1, O >= 0, "
                            "and T*B*max(D, H, O) must fit in a C int)";
    case CRNN_EACT: return "unknown activation (softmax is allowed as output activation only)";
    case CRNN_ETOKEN: return "a token id lies outside [0, D)";
    case CRNN_ELENGTH: return "a length lies outside [0, T]";
    case CRNN_ENULL: return "a required buffer is NULL";
    case CRNN_EBLAS: return "the BLAS gemm function pointer is not set";
    default: return "unknown crnn status code";
    }
}
