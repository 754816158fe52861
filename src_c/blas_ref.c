/* blas_ref.c -- naive column-major sgemm_/dgemm_ with the Fortran BLAS
 * signature, so that the C tests run without any BLAS library. Slow and
 * obvious on purpose: C = alpha op(A) op(B) + beta C, column-major. */
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
