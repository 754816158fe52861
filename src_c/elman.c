/* elman.c -- instantiates elman_impl.h and finite_impl.h for float and double. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crnn.h"
#include "vmath.h"

/* The elementwise loops are compiled for AVX2 and AVX-512 too, picked at load
 * time (GCC function multiversioning, x86-64 with glibc ifunc); without FMA
 * contraction (-std=c99 keeps -ffp-contract=off) every version computes the
 * same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)  /* ThreadSanitizer is not up yet when ifuncs resolve */
#define CRNN_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define CRNN_CLONES
#endif

/* memcpy for the kernels' row copies. glibc's memcpy (2.36, x86-64) copies
 * 2112 bytes or more with rep movsb on CPUs with FSRM, and on this
 * project's AMD EPYC (Zen 3) that runs many times slower when dst lies a
 * few bytes past src modulo 4 KiB (bench/row_copy.py: NumPy copying 64 KiB
 * in L2 at 1.5-2.7 GB/s at distances 4 to 28 against 12-22 at 0, 32 to 64
 * and 256; crnn's backward of M float64 and L float32, which copies dy
 * into da row by row, up to 15 % slower with dy 16 bytes before da).
 * NumPy's large arrays start at page offsets a few hundred bytes apart in
 * steps of 16, so a distance of 16 is not rare. Such a copy (at distances
 * 1 to 63, a margin over the 4 to 28 found slow) goes in pieces of 1 KiB,
 * below glibc's threshold for rep movsb, which it copies with vector loads
 * and stores. */
static void copy_row(void *dst, const void *src, size_t bytes)
{
    const size_t ahead = ((uintptr_t)dst - (uintptr_t)src) & 4095;
    if (bytes < 2048 || ahead == 0 || ahead >= 64) {
        memcpy(dst, src, bytes);
        return;
    }
    for (size_t i = 0; i < bytes; i += 1024)
        memcpy((char *)dst + i, (const char *)src + i, bytes - i < 1024 ? bytes - i : 1024);
}

/* The thread policy of one kernel call (see crnn_blas). */
typedef struct {
    const crnn_blas *blas;
    int now;     /* the BLAS thread count last set, 0 = unknown */
    int own;     /* the call runs on crnn's own two threads (own_pair), the BLAS on one,
                  * and its large products are split in two halves */
    int halves;  /* own, B >= 4: its time loops too; own, B < 4: the backward's
                  * chunks are pipelined instead (pipe_chunks) */
    int cold;    /* own, but the second thread likely asleep (split_product) */
} gemm_ctx;

/* Whether a call runs on crnn's own two threads: crnn_blas.par, threads = 2,
 * a finite par_flops, and the time loop on the packed W_hh (packed), whose
 * results do not depend on how the batch is split. The BLAS then always
 * gets one thread, and large products (and, with B >= 4, time loops) are
 * split in two halves run at once (call_ctx). */
static int own_pair(const crnn_blas *b, int packed)
{
    return packed && b->par && b->threads == 2 && b->par_flops <= DBL_MAX;
}

/* The BLAS thread count the policy gives a product of `flops` flops. */
static int policy_threads(const gemm_ctx *g, double flops, int in_loop)
{
    const crnn_blas *b = g->blas;
    if (g->own) return 1;
    double from = in_loop ? b->mt_flops_step : b->mt_flops;
    return flops >= from && b->threads > 1 ? b->threads : 1;
}

/* Whether crnn's own threads split a product (or the row copies standing
 * for one) of `flops` flops in two halves: from mt_flops flops, or from
 * COLD_SPLIT times as many when cold -- a forward whose time loop is not
 * split (B < 4), whose second thread has nothing to do for most of the call
 * and so sleeps when a product comes: waking it and its core cost more
 * than the half of a small product saves (LAT, T*B = 1000 rows, D = 32,
 * H = 128, forward at two threads: float32 1.53 ms with the input
 * projection, 8.2 Mflop, split, 1.36 without, 1.36 on one thread; float64
 * 3.02, 2.91 and 2.79). */
#define COLD_SPLIT 8
static int split_product(const gemm_ctx *g, double flops)
{
    return g->own && flops >= g->blas->mt_flops * (g->cold ? COLD_SPLIT : 1);
}

static void use_threads(gemm_ctx *g, double flops, int in_loop)
{
    int want = policy_threads(g, flops, in_loop);
    if (g->blas->set_threads && want != g->now) {
        g->blas->set_threads(want);
        g->now = want;
    }
}

/* The policy of each half of a split (crnn's own two threads): the call's
 * BLAS table, copied into *one, on one thread. The BLAS is set to one
 * thread here, before the halves run (two halves each running OpenBLAS on
 * two threads would split its products its own way: other bits). The
 * halves share the table read only: its count is 1 already, so use_threads
 * never writes it. */
static gemm_ctx half_ctx(gemm_ctx *g, crnn_blas *one)
{
    use_threads(g, 0, 0);
    *one = *g->blas;
    one->threads = 1;
    gemm_ctx h = {one, 1, 0, 0, 0};
    return h;
}

static void restore_threads(gemm_ctx *g)
{
    if (g->blas->set_threads && g->now != 0 && g->now != g->blas->threads)
        g->blas->set_threads(g->blas->threads > 0 ? g->blas->threads : 1);
}

/* The time loop's products on a packed W_hh (pgemm_impl.h): x86-64 with AVX2
 * and FMA, checked at run time; elsewhere every product goes to the BLAS.
 * -DCRNN_NO_PGEMM builds the portable code alone (the C tests run it so). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(CRNN_NO_PGEMM)
#include <immintrin.h>
#define CRNN_PGEMM 1
static int cpu_has_pgemm(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define CRNN_PGEMM 0
static int cpu_has_pgemm(void) { return 0; }
#endif

int crnn_elman_chunk(int T, int B)
{
    if (T < 1 || B < 1) return 0;
    int c = B >= CRNN_CHUNK_ROWS ? 1 : (CRNN_CHUNK_ROWS + B - 1) / B;
    return c < T ? c : T;
}

/* (v - 0) | (D - 1 - v) has its top bit clear exactly when 0 <= v < D (in
 * unsigned arithmetic, whose differences wrap instead of overflowing); OR-ed
 * over all values, a reduction GCC vectorises where a compare-and-exit loop
 * would not. */
CRNN_CLONES int crnn_ids_in_range(const int64_t *a, int64_t n, int64_t D)
{
    if (n < 1) return 1;
    if (!a || D < 1) return 0;
    const uint64_t last = (uint64_t)D - 1;
    uint64_t acc = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t v = (uint64_t)a[i];
        acc |= v | (last - v);
    }
    return !(acc >> 63);
}

#define REAL float
#define SFX f32
#define VEC256_DOUBLE 0
#include "vec256.h"
#define GEMM_PTR sgemm
#define GEMV_PTR sgemv
#define REAL_TINY FLT_MIN
#define TANH_ crnn_tanh_f32
#define SIGMOID_ crnn_sigmoid_f32
#define EXP_ expf
#define UREAL uint32_t
#define ABS_MASK UINT32_C(0x7fffffff)
#define EXP_ONE UINT32_C(0x00800000)
#include "elman_impl.h"
#include "finite_impl.h"
#undef REAL
#undef SFX
#undef GEMM_PTR
#undef GEMV_PTR
#undef REAL_TINY
#undef TANH_
#undef SIGMOID_
#undef EXP_
#undef VEC256_DOUBLE

#define REAL double
#define SFX f64
#define VEC256_DOUBLE 1
#include "vec256.h"
#define GEMM_PTR dgemm
#define GEMV_PTR dgemv
#define REAL_TINY DBL_MIN
#define TANH_ crnn_tanh_f64
#define SIGMOID_ crnn_sigmoid_f64
#define EXP_ exp
#define UREAL uint64_t
#define ABS_MASK UINT64_C(0x7fffffffffffffff)
#define EXP_ONE UINT64_C(0x0010000000000000)
#include "elman_impl.h"
#include "finite_impl.h"
#undef REAL
#undef SFX
#undef GEMM_PTR
#undef GEMV_PTR
#undef REAL_TINY
#undef TANH_
#undef SIGMOID_
#undef EXP_
#undef VEC256_DOUBLE

const char *crnn_strerror(int code)
{
    switch (code) {
    case CRNN_OK: return "success";
    case CRNN_ESIZE: return "a size is out of range (T, B, D, H must be >= 1, O >= 0, "
                            "T*B*max(D, H, O) must fit in a C int, and the backward's "
                            "chunk must be >= 1)";
    case CRNN_EACT: return "unknown activation (softmax is allowed as output activation only)";
    case CRNN_ETOKEN: return "a token id lies outside [0, D)";
    case CRNN_ELENGTH: return "a length lies outside [0, T]";
    case CRNN_ENULL: return "a required buffer is NULL";
    case CRNN_EBLAS: return "the BLAS gemm function pointer is not set";
    default: return "unknown crnn status code";
    }
}
