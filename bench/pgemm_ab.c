/* pgemm_ab.c -- A/B of two versions of src_c/pgemm_impl.h (the time loop's
 * product on a packed W_hh) in one process: C (M,H) += A (M,H) W^T, W (H,H)
 * packed once, the two versions' calls in alternating rounds, the fastest
 * round of each kept (the one least disturbed by other load). Also checks
 * that the two give the same bits, or says that they do not.
 *
 *   git show eaa2bc3:src_c/pgemm_impl.h > /tmp/pg_a.h
 *   cp src_c/pgemm_impl.h /tmp/pg_b.h
 *   gcc -O3 -I/tmp -Isrc_c bench/pgemm_ab.c -o /tmp/pgemm_ab
 *   /tmp/pgemm_ab 64 512            # M H [calls per round] [rounds]
 *
 * Both versions are built against the checkout's transpose_impl.h: one from
 * before 0.4.8 (whose pg_transpose calls transpose_rest without a bias
 * argument) only pairs with another from before it.
 *
 * Needs an x86-64 CPU with AVX2 and FMA. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

#define REAL float
#define VEC256_DOUBLE 0
#include "vec256.h"
#define FN(name) CAT(name, a32)
#include "transpose_impl.h"  /* the edges of pg_transpose */
#include "pg_a.h"
#undef FN
#define FN(name) CAT(name, b32)
#include "transpose_impl.h"  /* the edges of pg_transpose */
#include "pg_b.h"
#undef FN
#undef REAL
#undef VEC256_DOUBLE

#define REAL double
#define VEC256_DOUBLE 1
#include "vec256.h"
#define FN(name) CAT(name, a64)
#include "transpose_impl.h"  /* the edges of pg_transpose */
#include "pg_a.h"
#undef FN
#define FN(name) CAT(name, b64)
#include "transpose_impl.h"  /* the edges of pg_transpose */
#include "pg_b.h"
#undef FN

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* One dtype: pack W for each version, then `rounds` rounds of `calls` calls
 * of each, alternating which goes first; A and C alternate between two
 * copies so that C is not the A of the next call. */
#define AB(SFXA, SFXB, T, NAME)                                                          \
    static void ab_##NAME(int M, int H, int calls, int rounds)                          \
    {                                                                                    \
        size_t n = (size_t)M * H;                                                        \
        T *W = malloc(sizeof(T) * H * H), *A = malloc(sizeof(T) * 2 * n);               \
        T *C[2] = {calloc(2 * n, sizeof(T)), calloc(2 * n, sizeof(T))};                  \
        for (size_t i = 0; i < (size_t)H * H; ++i) W[i] = (T)(((i * 7) % 13) * 0.01 - 0.06); \
        for (size_t i = 0; i < 2 * n; ++i) A[i] = (T)(((i * 5) % 11) * 0.01 - 0.05);   \
        size_t wa = pg_worksize_##SFXA(M, H, H), wb = pg_worksize_##SFXB(M, H, H);      \
        T *work[2] = {aligned_alloc(64, sizeof(T) * (wa + 64)),                         \
                      aligned_alloc(64, sizeof(T) * (wb + 64))};                        \
        pg_pack_b_##SFXA(work[0], W, H, H, 1, M);                                        \
        pg_pack_b_##SFXB(work[1], W, H, H, 1, M);                                        \
        T *ap[2] = {work[0] + pg_packed_size_##SFXA(H, H), work[1] + pg_packed_size_##SFXB(H, H)}; \
        double best[2] = {1e30, 1e30};                                                   \
        for (int r = 0; r < rounds; ++r)                                                 \
            for (int k = 0; k < 2; ++k) {                                                \
                int w = (r + k) % 2;                                                     \
                double t0 = now();                                                       \
                for (int i = 0; i < calls; ++i) {                                        \
                    const T *a = A + (size_t)(i & 1) * n;                                \
                    T *c = C[w] + (size_t)((i + 1) & 1) * n;                             \
                    if (w == 0) pg_gemm_##SFXA(M, H, H, a, H, c, H, work[0], ap[0]);     \
                    else pg_gemm_##SFXB(M, H, H, a, H, c, H, work[1], ap[1]);           \
                }                                                                        \
                double t = (now() - t0) / calls;                                         \
                if (t < best[w]) best[w] = t;                                            \
            }                                                                            \
        int same = memcmp(C[0], C[1], sizeof(T) * 2 * n) == 0;                          \
        printf("%-7s M=%-4d H=%-5d A %9.1f us %6.1f GF/s   B %9.1f us %6.1f GF/s   B/A %.3f   %s\n", \
               #NAME, M, H, best[0] * 1e6, 2.0 * M * H * H / best[0] / 1e9, best[1] * 1e6, \
               2.0 * M * H * H / best[1] / 1e9, best[1] / best[0],                       \
               same ? "same bits" : "different bits");                                   \
        free(W), free(A), free(C[0]), free(C[1]), free(work[0]), free(work[1]);          \
    }

AB(a32, b32, float, float32)
AB(a64, b64, double, float64)

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s M H [calls per round] [rounds]\n", argv[0]);
        return 2;
    }
    int M = atoi(argv[1]), H = atoi(argv[2]);
    if (M < 1 || H < 1) {
        fprintf(stderr, "M and H must be positive\n");
        return 2;
    }
    double flops = 2.0 * M * H * H;
    int calls = argc > 3 ? atoi(argv[3]) : (int)(2e7 / flops) + 1;  /* about 0.3 ms per round */
    int rounds = argc > 4 ? atoi(argv[4]) : 40;
    if (calls < 1 || rounds < 1) {
        fprintf(stderr, "calls per round and rounds must be positive\n");
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "this CPU lacks AVX2 or FMA\n");
        return 2;
    }
    ab_float32(M, H, calls, rounds);
    ab_float64(M, H, calls, rounds);
    return 0;
}
