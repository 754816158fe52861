/* crnn.h -- the C99 core of crnn: Elman RNN layers over whole sequences.
 *
 * Size letters, used in every comment below:
 *   T  time steps         B  sequences in the batch
 *   D  input features     H  hidden units        O  output features (0: none)
 * Every array is C-contiguous (row-major); a batch of sequences is time-major,
 * x[t][b][d] at x + (t*B + b)*D + d. Parameters are stored as in the notes:
 * W_xh (H,D), W_hh (H,H), b_h (H), W_hy (O,H), b_y (O).
 *
 * The model, for each sequence b and each valid step t (t < len_b):
 *   a_t = W_xh x_t + W_hh h_prev + b_h,   h_t = f(a_t),   y_t = g(W_hy h_t + b_y)
 * where h_prev is h_{t-1} (forward) or h_{t+1} (reverse), and h0 before the
 * first step processed. Steps t >= len_b are padding: h_t = y_t = 0 there and
 * nothing read there reaches the state or any gradient.
 *
 * The core links no BLAS: the caller hands it sgemm/dgemm with the Fortran
 * (column-major) signature, e.g. from scipy.linalg.cython_blas. Kernels never
 * allocate, print or exit; they return CRNN_OK or a negative CRNN_E* code.
 * No Python headers here.
 */
#ifndef CRNN_H
#define CRNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CRNN_OK = 0,
    CRNN_ESIZE = -1,       /* a size < 1 (O < 0), T*B*max(D,H,O) beyond int, chunk < 1 */
    CRNN_EACT = -2,        /* unknown activation, or softmax as hidden activation */
    CRNN_ETOKEN = -3,      /* a token id outside [0, D) */
    CRNN_ELENGTH = -4,     /* a length outside [0, T] */
    CRNN_ENULL = -5,       /* a required buffer is NULL */
    CRNN_EBLAS = -6        /* the BLAS function pointer for this dtype is NULL */
};

typedef enum {
    CRNN_IDENTITY = 0,
    CRNN_TANH = 1,
    CRNN_RELU = 2,
    CRNN_SIGMOID = 3,
    CRNN_SOFTMAX = 4       /* output activation only: over the O features of a step */
} crnn_activation;

/* Fortran BLAS ?gemm, as scipy.linalg.cython_blas exports it. */
typedef void (*crnn_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                              float *alpha, float *a, int *lda, float *b, int *ldb,
                              float *beta, float *c, int *ldc);
typedef void (*crnn_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                              double *alpha, double *a, int *lda, double *b, int *ldb,
                              double *beta, double *c, int *ldc);
/* Fortran BLAS ?gemv. */
typedef void (*crnn_sgemv_fn)(char *trans, int *m, int *n, float *alpha, float *a, int *lda,
                              float *x, int *incx, float *beta, float *y, int *incy);
typedef void (*crnn_dgemv_fn)(char *trans, int *m, int *n, double *alpha, double *a, int *lda,
                              double *x, int *incx, double *beta, double *y, int *incy);

/* Two-way parallelism, optional (crnn_blas.par): par(job, arg0, arg1) runs
 * job(arg0) and job(arg1) at the same time, on two threads, and returns when
 * both are done (running them one after the other is correct too, only
 * slower). crnn_par_run2 is one. */
typedef void (*crnn_job_fn)(void *arg);
typedef void (*crnn_par_fn)(crnn_job_fn job, void *arg0, void *arg1);

/* The BLAS the core calls. gemv is optional (NULL: gemm does everything); with
 * it, products with a single row or column -- every per-step product when
 * B = 1 and no `work` is given -- go to gemv, which some OpenBLAS kernels run
 * several times faster than an n = 1 gemm. set_threads is optional (NULL: the
 * BLAS decides): with it, a product runs on `threads` threads only from a size
 * on, and on one thread below it: from mt_flops flops for the whole-sequence
 * products (a handful per call), from mt_flops_step for the products inside
 * the time loop (one or two per step), where extra threads mostly add
 * synchronisation and, when another process holds a core, stall for
 * milliseconds on every step. The count in force on return is `threads`.
 * par is optional. With it, threads = 2 and the time loop on the packed W_hh
 * (work given, AVX2 and FMA), the call runs on its own two threads instead of
 * the BLAS's: the BLAS gets one thread throughout; a whole-sequence product of
 * at least mt_flops flops (8 mt_flops in a forward whose time loop is not
 * split, whose second thread then sleeps), at least 2*CRNN_SPLIT_ALIGN rows
 * (of the row-major result) and more than one column (a single column goes
 * to gemv, whose bits depend on the rows around) is split into two halves of
 * its rows run at once, at a multiple of CRNN_SPLIT_ALIGN (so that a BLAS
 * whose tiles divide it computes each element as in the whole product; each
 * half also writes its rows' bias first), and so are token input's row
 * copies when the one-hot product they stand for has mt_flops flops
 * (memory-bound: two cores write faster than one; a split time loop's
 * halves copy their own rows); a backward chunk's dW_hh
 * (and db_h) runs beside its dx, each whole, with dW_xh's rows shared out
 * between the two so that their flops come within 20 % (when they can), from
 * mt_flops flops; and, with B >= 4, a time loop -- the forward's, or one chunk
 * of the backward's -- with at least par_flops flops in its products runs as
 * two halves of the batch at once. A batch's sequences are independent, so
 * each half is the whole loop over its own rows, with no synchronisation
 * between steps; on the packed W_hh the results are the same bits as on
 * one thread. (The BLAS's own threads are not used meanwhile because OpenBLAS's idle
 * threads spin on the cores for a while after each multi-threaded product, and
 * a thread of crnn's would share a core with them.) With B < 4 time loops are
 * not split; instead the backward computes each chunk's parameter gradients on
 * the second thread while the next chunk's time loop runs on the first, when a
 * chunk's products have at least par_flops flops (those products are then not
 * split); same bits as on one thread.
 * Otherwise -- other thread counts, no work, par_flops = infinity -- par is
 * not used. dx_chunk_bytes is not about threads: from that many bytes of a
 * chunk's da, a backward with dx and no output projection runs longer
 * chunks, their da in dx's rows not written yet (crnn_elman_backward); 0
 * turns this off. CRNN_MT_FLOPS, CRNN_MT_FLOPS_STEP, CRNN_PAR_FLOPS and
 * CRNN_DX_CHUNK_BYTES are the suggested values. */
typedef struct {
    crnn_sgemm_fn sgemm;
    crnn_dgemm_fn dgemm;
    crnn_sgemv_fn sgemv;
    crnn_dgemv_fn dgemv;
    void (*set_threads)(int);
    int threads;
    double mt_flops;
    double mt_flops_step;
    crnn_par_fn par;
    double par_flops;
    double dx_chunk_bytes;
} crnn_blas;

#define CRNN_MT_FLOPS 4194304.0         /* 2^22 flops, about 0.1 ms on one core */
#define CRNN_MT_FLOPS_STEP 33554432.0   /* 2^25 flops, about 0.5 ms on one core */
#define CRNN_PAR_FLOPS 4194304.0        /* 2^22 flops */
#define CRNN_DX_CHUNK_BYTES 1048576.0   /* 2^20 bytes, twice a Zen 3 core's L2 */
/* A multiple of the widths OpenBLAS's kernels walk C's columns in (12 in
 * its Haswell sgemm, measured: a cut at 64 changed bits of a (40, 156)
 * sgemm with K >= 8, a cut at any multiple of 12 did not; see
 * bench/split_bits.py. 24 also covers blocks of 3 x 8 columns), and small:
 * a 256-row product splits 120 / 136 */
#define CRNN_SPLIT_ALIGN 24

/* A crnn_par_fn: job(arg1) runs on a worker thread, started on first use,
 * that waits for the next job spinning for 1 ms, then blocked; job(arg0)
 * on the calling thread. Where POSIX threads are missing, or the worker
 * cannot be started, or another thread's call is using it, both run on the
 * calling thread. */
void crnn_par_run2(crnn_job_fn job, void *arg0, void *arg1);

typedef struct {
    int T, B, D, H, O;       /* O = 0: no output projection, the output is h */
    int activation;          /* f: a crnn_activation other than CRNN_SOFTMAX */
    int output_activation;   /* g: any crnn_activation; identity when O = 0 */
    int reverse;             /* 1: each sequence runs from step len_b-1 down to 0 */
    int bias;                /* 0: b_h and b_y are absent (may be NULL) */
} crnn_shape;

/* What a status code means, as a static string. */
const char *crnn_strerror(int code);

/* REALs of the optional `work` buffer of forward and backward (tokens: 1
 * for token input, 0 for dense x); 0 when there is nothing to use it for
 * (then pass NULL). */
int64_t crnn_elman_worksize_f32(int B, int D, int H, int tokens);
int64_t crnn_elman_worksize_f64(int B, int D, int H, int tokens);

/* Forward over a whole batch of sequences.
 *   hs      (T,B,H) out  h_t; 0 at padded steps. Kept by the caller for backward.
 *   y       (T,B,O) out  y_t; 0 at padded steps. Only when O > 0, else NULL.
 *           Softmax outputs are at least the dtype's smallest normal number,
 *           so that -log y and 1/y stay finite.
 *   h_last  (B,H)   out  the state after each sequence's last processed step
 *                        (h0, or 0, when len_b = 0)
 *   x       (T,B,D) in   dense input; finite at every position (the caller
 *                        zeroes padding); NULL when tokens are given
 *   tokens  (T,B)   in   token ids in [0,D) at every position (one-hot input:
 *                        column W_xh[:, id]); NULL for dense input
 *   h0      (B,H)   in   initial state; NULL means zeros
 *   lengths (B)     in   valid steps per sequence in [0,T]; NULL means all T
 *   W_xh (H,D), W_hh (H,H), b_h (H), W_hy (O,H), b_y (O)   parameters
 *   work    (crnn_elman_worksize(B, D, H, tokens != NULL)) work, or NULL.
 *           With it, on x86-64 CPUs with AVX2 and FMA, the time loop's
 *           products run on a copy of W_hh packed once per call (see
 *           pgemm_impl.h) instead of the BLAS, when the BLAS would use one
 *           thread for them; token ids gather rows of a transposed W_xh
 *           when 4 T*B >= D (below that, building it costs more than the
 *           columns it saves reading; the sums are the same either way).
 */
int crnn_elman_forward_f32(float *hs, float *y, float *h_last,
                           const float *x, const int64_t *tokens, const float *h0,
                           const int64_t *lengths,
                           const float *W_xh, const float *W_hh, const float *b_h,
                           const float *W_hy, const float *b_y, float *work,
                           const crnn_shape *s, const crnn_blas *blas);
int crnn_elman_forward_f64(double *hs, double *y, double *h_last,
                           const double *x, const int64_t *tokens, const double *h0,
                           const int64_t *lengths,
                           const double *W_xh, const double *W_hh, const double *b_h,
                           const double *W_hy, const double *b_y, double *work,
                           const crnn_shape *s, const crnn_blas *blas);

/* The backward runs its time loop in chunks of `chunk` steps and computes the
 * parameter gradients of each chunk's chunk*B rows right after it, so that
 * its da/dz workspaces hold one chunk, not all T steps. This is the suggested
 * chunk: enough rows (CRNN_CHUNK_ROWS) for the chunk's GEMMs to run at full
 * speed, capped at T. 0 when T < 1 or B < 1. */
#define CRNN_CHUNK_ROWS 256
int crnn_elman_chunk(int T, int B);

/* Backpropagation through time over the whole batch, after a forward with the
 * same inputs, parameters and shape.
 *   dx      (T,B,D) out  dL/dx, overwritten; NULL skips it (always for tokens)
 *   dh0     (B,H)   out  dL/dh0, overwritten (dL/dh0 at h0 = 0 when h0 is NULL)
 *   dW_xh (H,D), dW_hh (H,H), db_h (H), dW_hy (O,H), db_y (O)
 *                   acc  parameter gradients, accumulated (+=)
 *   dy      (T,B,O or H) in  dL/dy; read at valid steps only
 *   dstate  (B,H)   in   dL/dh_last; NULL means zeros
 *   hs, y           in   the forward's outputs (y only when O > 0)
 *   x, tokens, h0, lengths, W_xh, W_hh, W_hy   in   as given to the forward
 *   da      (C+1,B,H) work  dL/da_t for the C = min(chunk, T) steps of one
 *                        chunk, and dL/dh carried from one chunk to the next;
 *                        with B < 4 and C/2 steps' products of at least
 *                        par_flops flops, the chunks are C/2 steps (rounded
 *                        down), taking turns in da's two halves (crnn_blas)
 *   dz      (C,B,O) work dL/dz_t, the output pre-activation gradient (O > 0)
 *   work    (crnn_elman_worksize(B, D, H, tokens != NULL)) work, or NULL: as
 *           for the forward; token ids sum into rows of dW_xh^T first
 *           when 4 T*B >= D (then it is added to dW_xh once: the bits can
 *           differ from adding each row in place where dW_xh was not 0)
 *   chunk   steps per chunk, >= 1 (crnn_elman_chunk(T, B) suggests one).
 *           The result does not depend on it but for rounding: the chunks'
 *           contributions to the parameter gradients are summed in turn
 *           (the same chunks on any thread count). With dx, O = 0, chunks
 *           not pipelined and C*B*H values of da of at least
 *           blas->dx_chunk_bytes bytes, a chunk that ends at step hi (in the
 *           order processed: steps hi-1 down to 0 remain) is instead
 *           floor(hi*D / (D+H)) steps long when that is more than C, with
 *           its da in dx's rows of the steps before it, which are written
 *           last; so whether dx is wanted can change the last bits of the
 *           parameter gradients.
 */
int crnn_elman_backward_f32(float *dx, float *dh0,
                            float *dW_xh, float *dW_hh, float *db_h,
                            float *dW_hy, float *db_y,
                            const float *dy, const float *dstate,
                            const float *hs, const float *y,
                            const float *x, const int64_t *tokens, const float *h0,
                            const int64_t *lengths,
                            const float *W_xh, const float *W_hh, const float *W_hy,
                            float *da, float *dz, float *work, int chunk,
                            const crnn_shape *s, const crnn_blas *blas);
int crnn_elman_backward_f64(double *dx, double *dh0,
                            double *dW_xh, double *dW_hh, double *db_h,
                            double *dW_hy, double *db_y,
                            const double *dy, const double *dstate,
                            const double *hs, const double *y,
                            const double *x, const int64_t *tokens, const double *h0,
                            const int64_t *lengths,
                            const double *W_xh, const double *W_hh, const double *W_hy,
                            double *da, double *dz, double *work, int chunk,
                            const crnn_shape *s, const crnn_blas *blas);

/* Elementwise activations, exposed so that their accuracy can be tested:
 * out[i] = act(in[i]) for tanh, relu, sigmoid, identity; softmax is not
 * elementwise (CRNN_EACT). in and out may be the same buffer. */
int crnn_activate_f32(float *out, const float *in, int64_t n, int act);
int crnn_activate_f64(double *out, const double *in, int64_t n, int act);

/* Whether an array is finite where the core reads it: returns 1 when every
 * value of the rows to check is finite (no NaN, no inf), else 0 (not a status
 * code). rows < 1 or F < 1: nothing to check, 1.
 *   a       (rows,F) in  row t*B + b is step t of sequence b (rows = T*B)
 *   lengths (B)      in  valid steps per sequence: only the rows with
 *                        t < lengths[b] are checked; NULL (or B < 1): every row
 */
int crnn_all_finite_f32(const float *a, int64_t rows, int64_t F, const int64_t *lengths, int B);
int crnn_all_finite_f64(const double *a, int64_t rows, int64_t F, const int64_t *lengths, int B);

/* Whether every a[i], i < n, lies in [0, D): 1 or 0 (not a status code);
 * n < 1: 1. Token ids ([0, D)) and lengths ([0, T + 1)) are checked with it,
 * by the binding before a call and by the kernels again. */
int crnn_ids_in_range(const int64_t *a, int64_t n, int64_t D);

#ifdef __cplusplus
}
#endif
#endif /* CRNN_H */
