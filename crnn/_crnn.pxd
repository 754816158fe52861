# Declarations of src_c/crnn.h, in the header's order, one per line.
from libc.stdint cimport int64_t

cdef extern from "crnn.h" nogil:
    enum:
        CRNN_OK
        CRNN_ESIZE
        CRNN_EACT
        CRNN_ETOKEN
        CRNN_ELENGTH
        CRNN_ENULL
        CRNN_EBLAS

    ctypedef enum crnn_activation:
        CRNN_IDENTITY
        CRNN_TANH
        CRNN_RELU
        CRNN_SIGMOID
        CRNN_SOFTMAX

    ctypedef void (*crnn_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) noexcept nogil
    ctypedef void (*crnn_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a, int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) noexcept nogil

    ctypedef void (*crnn_sgemv_fn)(char *trans, int *m, int *n, float *alpha, float *a, int *lda, float *x, int *incx, float *beta, float *y, int *incy) noexcept nogil
    ctypedef void (*crnn_dgemv_fn)(char *trans, int *m, int *n, double *alpha, double *a, int *lda, double *x, int *incx, double *beta, double *y, int *incy) noexcept nogil

    ctypedef void (*crnn_job_fn)(void *arg) noexcept nogil
    ctypedef void (*crnn_par_fn)(crnn_job_fn job, void *arg0, void *arg1) noexcept nogil

    ctypedef struct crnn_blas:
        crnn_sgemm_fn sgemm
        crnn_dgemm_fn dgemm
        crnn_sgemv_fn sgemv
        crnn_dgemv_fn dgemv
        void (*set_threads)(int) noexcept nogil
        int threads
        double mt_flops
        double mt_flops_step
        crnn_par_fn par
        double par_flops
        double dx_chunk_bytes

    double CRNN_MT_FLOPS
    double CRNN_MT_FLOPS_STEP
    double CRNN_PAR_FLOPS
    double CRNN_DX_CHUNK_BYTES

    void crnn_par_run2(crnn_job_fn job, void *arg0, void *arg1)

    ctypedef struct crnn_shape:
        int T, B, D, H, O
        int activation
        int output_activation
        int reverse
        int bias

    const char *crnn_strerror(int code)

    int64_t crnn_elman_worksize_f32(int B, int D, int H, int tokens)
    int64_t crnn_elman_worksize_f64(int B, int D, int H, int tokens)

    int crnn_elman_forward_f32(float *hs, float *y, float *h_last, const float *x, const int64_t *tokens, const float *h0, const int64_t *lengths, const float *W_xh, const float *W_hh, const float *b_h, const float *W_hy, const float *b_y, float *work, const crnn_shape *s, const crnn_blas *blas)
    int crnn_elman_forward_f64(double *hs, double *y, double *h_last, const double *x, const int64_t *tokens, const double *h0, const int64_t *lengths, const double *W_xh, const double *W_hh, const double *b_h, const double *W_hy, const double *b_y, double *work, const crnn_shape *s, const crnn_blas *blas)

    int CRNN_CHUNK_ROWS
    int crnn_elman_chunk(int T, int B)

    int crnn_elman_backward_f32(float *dx, float *dh0, float *dW_xh, float *dW_hh, float *db_h, float *dW_hy, float *db_y, const float *dy, const float *dstate, const float *hs, const float *y, const float *x, const int64_t *tokens, const float *h0, const int64_t *lengths, const float *W_xh, const float *W_hh, const float *W_hy, float *da, float *dz, float *work, int chunk, const crnn_shape *s, const crnn_blas *blas)
    int crnn_elman_backward_f64(double *dx, double *dh0, double *dW_xh, double *dW_hh, double *db_h, double *dW_hy, double *db_y, const double *dy, const double *dstate, const double *hs, const double *y, const double *x, const int64_t *tokens, const double *h0, const int64_t *lengths, const double *W_xh, const double *W_hh, const double *W_hy, double *da, double *dz, double *work, int chunk, const crnn_shape *s, const crnn_blas *blas)

    int crnn_activate_f32(float *out, const float *inp, int64_t n, int act)
    int crnn_activate_f64(double *out, const double *inp, int64_t n, int act)

    int crnn_all_finite_f32(const float *a, int64_t rows, int64_t F, const int64_t *lengths, int B)
    int crnn_all_finite_f64(const double *a, int64_t rows, int64_t F, const int64_t *lengths, int B)
    int crnn_ids_in_range(const int64_t *a, int64_t n, int64_t D)
