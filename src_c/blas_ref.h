/* blas_ref.h -- naive gemm with the Fortran BLAS signature (for C tests). */
#ifndef CRNN_BLAS_REF_H
#define CRNN_BLAS_REF_H
void crnn_ref_sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                    float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
void crnn_ref_dgemm(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                    double *a, int *lda, double *b, int *ldb, double *beta, double *c, int *ldc);
void crnn_ref_sgemv(char *trans, int *m, int *n, float *alpha, float *a, int *lda, float *x,
                    int *incx, float *beta, float *y, int *incy);
void crnn_ref_dgemv(char *trans, int *m, int *n, double *alpha, double *a, int *lda, double *x,
                    int *incx, double *beta, double *y, int *incy);
#endif
