/* blas_ref.c -- naive column-major ?gemm and ?gemv with the Fortran BLAS
 * signatures, so that the C tests run without any BLAS library. Slow and
 * obvious on purpose: C = alpha op(A) op(B) + beta C, y = alpha op(A) x + beta y. */
#include "blas_ref.h"

#define NAIVE_GEMM(NAME, REAL)                                                     \
    void NAME(char *transa, char *transb, int *m, int *n, int *k, REAL *alpha,    \
              REAL *a, int *lda, REAL *b, int *ldb, REAL *beta, REAL *c, int *ldc) \
    {                                                                              \
        int ta = (*transa == 'T' || *transa == 't' || *transa == 'C' || *transa == 'c'); \
        int tb = (*transb == 'T' || *transb == 't' || *transb == 'C' || *transb == 'c'); \
        for (int j = 0; j < *n; ++j)                                               \
            for (int i = 0; i < *m; ++i) {                                         \
                REAL acc = 0;                                                      \
                for (int p = 0; p < *k; ++p) {                                     \
                    REAL av = ta ? a[p + (long)i * *lda] : a[i + (long)p * *lda];  \
                    REAL bv = tb ? b[j + (long)p * *ldb] : b[p + (long)j * *ldb];  \
                    acc += av * bv;                                                \
                }                                                                  \
                REAL *cij = &c[i + (long)j * *ldc];                                \
                *cij = *beta == 0 ? *alpha * acc : *alpha * acc + *beta * *cij;    \
            }                                                                      \
    }

NAIVE_GEMM(crnn_ref_sgemm, float)
NAIVE_GEMM(crnn_ref_dgemm, double)

/* y (len m, or n when transposed) = alpha op(A) x + beta y; A is m x n. */
#define NAIVE_GEMV(NAME, REAL)                                                     \
    void NAME(char *trans, int *m, int *n, REAL *alpha, REAL *a, int *lda, REAL *x, \
              int *incx, REAL *beta, REAL *y, int *incy)                           \
    {                                                                              \
        int t = (*trans == 'T' || *trans == 't' || *trans == 'C' || *trans == 'c'); \
        int rows = t ? *n : *m, cols = t ? *m : *n;                                \
        for (int i = 0; i < rows; ++i) {                                           \
            REAL acc = 0;                                                          \
            for (int j = 0; j < cols; ++j) {                                       \
                REAL av = t ? a[j + (long)i * *lda] : a[i + (long)j * *lda];       \
                acc += av * x[(long)j * *incx];                                    \
            }                                                                      \
            REAL *yi = &y[(long)i * *incy];                                        \
            *yi = *beta == 0 ? *alpha * acc : *alpha * acc + *beta * *yi;          \
        }                                                                          \
    }

NAIVE_GEMV(crnn_ref_sgemv, float)
NAIVE_GEMV(crnn_ref_dgemv, double)
