/* elman_impl.h -- one body for float and double, included twice by elman.c
 * with REAL (float|double), SFX (f32|f64), GEMM_PTR and GEMV_PTR (the crnn_blas members),
 * REAL_TINY (smallest normal), the math functions TANH_, SIGMOID_ and EXP_,
 * and pgemm_impl.h's vector macros (V, VL, VZERO, ...; undefined at the end)
 * defined.
 * Size letters and conventions: see crnn.h. */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

#include "transpose_impl.h"

#if CRNN_PGEMM
#include "pgemm_impl.h"
#endif

/* The work buffer: the packed W_hh (pgemm_impl.h), then for token input a
 * (D,H) block: W_xh^T in the forward, the batch's dW_xh^T in the backward. */
static int64_t FN(pg_part)(int B, int H)
{
#if CRNN_PGEMM
    return FN(pg_worksize)(B, H, H);
#else
    (void)B, (void)H;
    return 0;
#endif
}

/* The (D,H) token block of work, after the packed W_hh; NULL without work. */
static REAL *FN(token_block)(REAL *work, int B, int H)
{
    return work ? work + FN(pg_part)(B, H) : NULL;
}

/* out (C,R) (+)= in^T (+ bias in each row) for in (R,C), both row-major and
 * dense, bias NULL or R values: in register blocks (pg_transpose) where the
 * CPU has AVX2, else one value at a time. */
static void FN(transpose)(REAL *out, const REAL *in, int R, int C, int add, const REAL *bias)
{
#if CRNN_PGEMM
    if (cpu_has_pgemm()) {
        FN(pg_transpose)(out, (size_t)R, in, (size_t)C, R, C, add, bias);
        return;
    }
#endif
    FN(transpose_rest)(out, (size_t)R, in, (size_t)C, R, C, 0, 0, add, bias);
}

/* The token block when T*B tokens make it pay, else NULL (W_xh's columns are
 * then read, or dW_xh's added to, in place). Building the table, or adding
 * it back into dW_xh, reads all of W_xh across its rows: D*H transposed
 * accesses, ~0.6 ns each (1.3 when W_xh is past the L2); doing without it
 * costs T*B*H accesses of stride D, ~1 ns each while W_xh is in the L2 but
 * ~11 once a column's H values lie on H pages (a (10000, 512) float32 W_xh).
 * Measured on one thread (T = 1, forward): the table pays from T*B of about
 * D (D = 100, H = 128) down to about D/5 (D = 10000, H = 512); a 1-token
 * step with that W_xh took 6.4 ms with it and 11 us without. 4 T*B >= D is
 * within 2x of the better way on either side of those crossings. */
static REAL *FN(token_table)(REAL *work, int B, int D, int H, int TB)
{
    return 4 * (int64_t)TB >= D ? FN(token_block)(work, B, H) : NULL;
}

int64_t FN(crnn_elman_worksize)(int B, int D, int H, int tokens)
{
    if (B < 1 || D < 1 || H < 1) return 0;
    return FN(pg_part)(B, H) + (tokens ? (int64_t)D * H : 0);
}

/* One product's arguments, for a half of it run on another thread. */
typedef struct {
    gemm_ctx *gc;
    char ta, tb;
    int M, N, K, lda, ldb, ldc;
    REAL alpha, beta;
    const REAL *A, *B;
    REAL *C;
    const REAL *fill;
} FN(gemm_args);

static void FN(gemm_job)(void *arg);

/* Whether gemm_fill sends a product with an (M,N) C to gemv: a single row
 * or column, when the table has gemv. OpenBLAS's gemv sums a row of C in an
 * order that depends on where the row lies in its block of rows (sgemv_n:
 * a (50, 30) product cut into 24 + 26 rows changed bits), so such a product
 * is never split, and no split gives a share of one row to gemv: halves
 * would not give the whole's bits. */
static int FN(to_gemv)(const crnn_blas *bl, int M, int N)
{
    return bl->GEMV_PTR && (M == 1 || N == 1);
}

/* Row-major C (M,N) = alpha op(A) op(B) + beta C through a column-major gemm:
 * a row-major matrix is its column-major transpose, so C^T = op(B)^T op(A)^T
 * is computed by swapping the operands (never by copying). ta/tb say whether
 * A/B are used transposed; lda/ldb/ldc are the row-major row lengths. A
 * single-row or single-column C goes to gemv when the table has it. in_loop:
 * the product is one of the time loop's (for the thread policy). fill:
 * NULL, or N values each row of C is set to first, beta then being 1
 * whatever is passed (C = alpha op(A) op(B) + fill, a bias), by the half
 * that computes the row when the product is split. BLAS never writes A or
 * B, the casts only meet its Fortran signature. */
static void FN(gemm_fill)(gemm_ctx *gc, int in_loop, char ta, char tb, int M, int N, int K,
                          REAL alpha, const REAL *A, int lda, const REAL *B, int ldb,
                          REAL beta, REAL *C, int ldc, const REAL *fill)
{
    if (M == 0 || N == 0) return;
    if (fill) beta = 1;
    const crnn_blas *bl = gc->blas;
    const int gemv = FN(to_gemv)(bl, M, N);  /* never split */
    use_threads(gc, 2.0 * M * N * K, in_loop);
    if (!in_loop && !gemv && split_product(gc, 2.0 * M * N * K) && M >= 2 * CRNN_SPLIT_ALIGN) {
        /* crnn's own two threads: the rows of C in two halves, each a
         * one-thread product of its own, split at a multiple of
         * CRNN_SPLIT_ALIGN. The rows of row-major C are the columns (n) of
         * the BLAS's column-major C^T, which OpenBLAS walks in tiles of a
         * few columns (3 x 4 in its Haswell sgemm); cut between tiles, every
         * element is summed as in the whole product: the same bits. Not its
         * rows (m): there OpenBLAS's driver halves m itself when m lies
         * between one and two of its blocks: every cut at a multiple of 4
         * but the middle changed bits of a (384, 40) sgemm with K = 20. */
        crnn_blas one;
        gemm_ctx half = half_ctx(gc, &one);
        FN(gemm_args) first = {&half, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C, fill};
        FN(gemm_args) second = first;
        const int cut = (M / 2 + CRNN_SPLIT_ALIGN / 2) / CRNN_SPLIT_ALIGN * CRNN_SPLIT_ALIGN;
        first.M = cut;
        second.M = M - cut;
        second.A = A + (ta == 'N' ? (size_t)cut * lda : (size_t)cut);
        second.C = C + (size_t)cut * ldc;
        gc->blas->par(FN(gemm_job), &first, &second);
        return;
    }
    if (fill)
        for (int i = 0; i < M; ++i) copy_row(C + (size_t)i * ldc, fill, N * sizeof(REAL));
    if (K == 0) {  /* BLAS would scale C by beta; keep that meaning (no split: no flops) */
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j)
                C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (gemv && M == 1) {
        /* c^T (N) = op(B)^T a: op(B)^T is B's column-major buffer ('N', N x K)
         * when tb = 'N', its transpose ('T', buffer K x N) when tb = 'T' */
        char tr = tb == 'N' ? 'N' : 'T';
        int m = tb == 'N' ? N : K, n = tb == 'N' ? K : N, incx = ta == 'N' ? 1 : lda, one = 1;
        bl->GEMV_PTR(&tr, &m, &n, &alpha, (REAL *)B, &ldb, (REAL *)A, &incx, &beta, C, &one);
        return;
    }
    if (gemv) {  /* N == 1 */
        /* c (M) = op(A) b: op(A) is the transpose of A's column-major buffer
         * (K x M) when ta = 'N', the buffer itself (M x K) when ta = 'T' */
        char tr = ta == 'N' ? 'T' : 'N';
        int m = ta == 'N' ? K : M, n = ta == 'N' ? M : K, incx = tb == 'N' ? ldb : 1;
        bl->GEMV_PTR(&tr, &m, &n, &alpha, (REAL *)A, &lda, (REAL *)B, &incx, &beta, C, &ldc);
        return;
    }
    bl->GEMM_PTR(&tb, &ta, &N, &M, &K, &alpha, (REAL *)B, &ldb, (REAL *)A, &lda,
                 &beta, C, &ldc);
}

/* gemm_fill without fill. */
static void FN(rm_gemm)(gemm_ctx *gc, int in_loop, char ta, char tb, int M, int N, int K,
                        REAL alpha, const REAL *A, int lda, const REAL *B, int ldb,
                        REAL beta, REAL *C, int ldc)
{
    FN(gemm_fill)(gc, in_loop, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

static void FN(gemm_job)(void *arg)
{
    const FN(gemm_args) *g = arg;
    FN(gemm_fill)(g->gc, 0, g->ta, g->tb, g->M, g->N, g->K, g->alpha, g->A, g->lda, g->B,
                  g->ldb, g->beta, g->C, g->ldc, g->fill);
}

/* Whether a time loop of `steps` steps runs as two halves of the batch at
 * once: crnn's own two threads (so B >= 4, call_ctx) and enough work. */
static int FN(split_loop)(const gemm_ctx *gc, int B, int H, int steps)
{
    return gc->halves && 2.0 * B * H * H * steps >= gc->blas->par_flops;
}

/* The thread policy of a call of batch B given `work` (or NULL). On crnn's
 * own threads the BLAS has one thread throughout, and large products are
 * split in halves. Time loops are split only with B >= 4, so that each half
 * has the M > 1 layout the packed W_hh was made for. With B < 4 the
 * backward pipelines its chunks instead (pipe_chunks): in 0.4.0, which
 * split its chunks' products but not its loops, crnn's second thread slept
 * through each loop and woke for each product (LAT, B = 1, at two threads:
 * 7.03 ms, against 6.30 with the BLAS's threads and 5.60 on one thread;
 * float64 forward+backward, `python bench/threads_ab.py LAT --one --blocks
 * 8 --calls 5`), and 0.4.1's BLAS threads went on spinning after the
 * forward's products, on the core the pipeline's second thread needs. */
static gemm_ctx FN(call_ctx)(const crnn_blas *blas, const REAL *work, int B)
{
    const int own = own_pair(blas, CRNN_PGEMM && work && cpu_has_pgemm());
    gemm_ctx gc = {blas, 0, own, own && B >= 4, 0};
    return gc;
}

/* Whether the time loop's products (B,H)x(H,H) run on a W_hh packed into
 * work (pgemm_impl.h): the caller gave work, the CPU has AVX2 and FMA, and
 * the BLAS would run them on one thread (always, on crnn's own threads). */
static int FN(use_pgemm)(const gemm_ctx *gc, const REAL *work, int B, int H)
{
    int one_thread = policy_threads(gc, 2.0 * B * H * H, 1) == 1;
    return CRNN_PGEMM && work && one_thread && cpu_has_pgemm();
}

/* One time loop -- the forward's, or one chunk of the backward's -- over the
 * rows b0 .. b1-1 of each step. A batch's sequences are independent, so the
 * two halves of a batch can run at the same time (run_loop). */
typedef struct {
    const crnn_shape *s;
    gemm_ctx *gc;            /* the BLAS, for the products when pg is 0 */
    int pg;                  /* the products on the packed W_hh at bp, A block at ap */
    const REAL *bp;
    REAL *ap;
    const REAL *W_hh;
    const int64_t *lengths;
    int b0, b1;
    /* forward */
    REAL *hs;                /* (T,B,H) a_t in (but see wt), h_t out */
    const REAL *h0;          /* (B,H) or NULL */
    REAL *h_last;            /* (B,H) out; h0 W_hh^T on entry when h0_fix */
    const REAL *wt;          /* token input: the rows' a_t are still to be copied from
                              * the table wt (D,H) (gather_rows); else NULL */
    const int64_t *tokens;   /* (T,B) with wt */
    int h0_fix;              /* add h_last to a_t at step len_b-1 of a reversed
                              * sequence shorter than T, which starts there from h0 */
    /* backward, over the steps lo .. hi-1 (in the forward's order) of a chunk
     * whose first t is t0 */
    const REAL *hs_in;       /* (T,B,H) the forward's h_t */
    const REAL *dy;          /* (T,B,H) dL/dh_t from the outputs when the layer has
                              * none (O = 0), copied into da by the rows' own job;
                              * else NULL: da holds dz W_hy already */
    const REAL *dstate;      /* (B,H) or NULL */
    REAL *da;                /* (C,B,H) dL/dh_t in, dL/da_t out */
    REAL *carry, *dh0;       /* (B,H) dL/dh of the step before the chunk; dL/dh0 */
    int lo, hi, t0;
} FN(loop);

/* The step's product C (M,H) += A (M,H) W_hh^T (forward) or A W_hh
 * (backward, transposed = 0), for M = b1 - b0 rows: on the packed W_hh when
 * pg is set, else through the BLAS. */
static void FN(step_gemm)(const FN(loop) *L, int transposed, const REAL *A, REAL *C)
{
    const int M = L->b1 - L->b0, H = L->s->H;
#if CRNN_PGEMM
    if (L->pg) {
        FN(pg_gemm)(M, H, H, A, H, C, H, L->bp, L->ap);
        return;
    }
#endif
    FN(rm_gemm)(L->gc, 1, 'N', transposed ? 'T' : 'N', M, H, H, 1, A, H, L->W_hh, H, 1, C, H);
}

static void FN(forward_rows)(void *arg);
static void FN(backward_rows)(void *arg);

/* Run a loop job over the whole batch: as two halves at once when split
 * (each with its own A block and a one-thread BLAS table), else here. */
static void FN(run_loop)(FN(loop) *L, crnn_job_fn job, int split)
{
    L->b0 = 0;
    L->b1 = L->s->B;
    if (!split) {
        job(L);
        return;
    }
    crnn_blas one;
    gemm_ctx half = half_ctx(L->gc, &one);  /* the BLAS on one thread meanwhile */
    FN(loop) first = *L, second = *L;
    first.b1 = second.b0 = (L->s->B + 1) / 2;
    first.gc = second.gc = &half;
#if CRNN_PGEMM
    if (L->pg) second.ap = L->ap + FN(pg_ablock_size)(L->s->B, L->s->H);
#endif
    L->gc->blas->par(job, &first, &second);
}

/* Pack W_hh (transposed for the forward) into work when pg is set, and
 * point L's bp and ap at it and at the A blocks after it. */
static void FN(step_pack)(FN(loop) *L, REAL *work, int transposed)
{
#if CRNN_PGEMM
    const int B = L->s->B, H = L->s->H;
    if (!L->pg) return;
    FN(pg_pack_b)(work, L->W_hh, H, H, transposed, B);
    L->bp = work;
    L->ap = work + FN(pg_packed_size)(H, H);
#else
    (void)L, (void)work, (void)transposed;
#endif
}

/* out = act(in), elementwise, n values. */
CRNN_CLONES static void FN(act_forward)(REAL *out, const REAL *in, size_t n, int act)
{
    switch (act) {
    case CRNN_TANH:
        for (size_t i = 0; i < n; ++i) out[i] = TANH_(in[i]);
        break;
    case CRNN_RELU:
        for (size_t i = 0; i < n; ++i) out[i] = in[i] < 0 ? 0 : in[i];  /* NaN stays */
        break;
    case CRNN_SIGMOID:
        for (size_t i = 0; i < n; ++i) out[i] = SIGMOID_(in[i]);
        break;
    default: /* identity */
        if (out != in)
            for (size_t i = 0; i < n; ++i) out[i] = in[i];
        break;
    }
}

/* g <- g * f'(a), with f' written in terms of the output v = f(a). n values. */
CRNN_CLONES static void FN(act_backward)(REAL *g, const REAL *v, size_t n, int act)
{
    switch (act) {
    case CRNN_TANH:
        for (size_t i = 0; i < n; ++i) g[i] *= 1 - v[i] * v[i];
        break;
    case CRNN_RELU:  /* relu'(0) = 0 */
        for (size_t i = 0; i < n; ++i) g[i] = v[i] > 0 ? g[i] : 0;
        break;
    case CRNN_SIGMOID:
        for (size_t i = 0; i < n; ++i) g[i] *= v[i] * (1 - v[i]);
        break;
    default:
        break;
    }
}

/* Softmax over each of `rows` rows of O values, in place, clamped below at
 * the smallest normal number (see crnn.h). */
static void FN(softmax_rows)(REAL *z, size_t rows, int O)
{
    for (size_t r = 0; r < rows; ++r) {
        REAL *v = z + r * (size_t)O;
        REAL m = v[0];
        for (int k = 1; k < O; ++k) m = v[k] > m ? v[k] : m;
        REAL sum = 0;
        for (int k = 0; k < O; ++k) {
            v[k] = EXP_(v[k] - m);
            sum += v[k];
        }
        REAL inv = 1 / sum;
        for (int k = 0; k < O; ++k) {
            REAL p = v[k] * inv;
            v[k] = p < REAL_TINY ? REAL_TINY : p;
        }
    }
}

/* dz = J_softmax(y)^T dy = y * (dy - <y, dy>) for one row of O values. */
static void FN(softmax_backward_row)(REAL *dz, const REAL *y, const REAL *dy, int O)
{
    REAL dot = 0;
    for (int k = 0; k < O; ++k) dot += y[k] * dy[k];
    for (int k = 0; k < O; ++k) dz[k] = y[k] * (dy[k] - dot);
}

/* The step processed at position `step` of the forward's order. */
static int FN(step_t)(int reverse, int T, int step)
{
    return reverse ? T - 1 - step : step;
}

/* The step sequence b processes first, and the one it ends on. */
static int FN(step_of)(int reverse, int len, int T, int last)
{
    (void)T;
    if (reverse) return last ? 0 : len - 1;
    return last ? len - 1 : 0;
}

static int FN(check)(const crnn_shape *s, const crnn_blas *blas, const int64_t *tokens,
                     const int64_t *lengths)
{
    if (!s || !blas) return CRNN_ENULL;
    if (!blas->GEMM_PTR) return CRNN_EBLAS;
    if (s->T < 1 || s->B < 1 || s->D < 1 || s->H < 1 || s->O < 0) return CRNN_ESIZE;
    int64_t widest = s->D > s->H ? s->D : s->H;
    widest = widest > s->O ? widest : s->O;
    if ((int64_t)s->T * s->B * widest > INT32_MAX || (int64_t)s->H * s->H > INT32_MAX)
        return CRNN_ESIZE;
    if (s->activation < CRNN_IDENTITY || s->activation > CRNN_SIGMOID) return CRNN_EACT;
    if (s->output_activation < CRNN_IDENTITY || s->output_activation > CRNN_SOFTMAX)
        return CRNN_EACT;
    if (tokens && !crnn_ids_in_range(tokens, (int64_t)s->T * s->B, s->D)) return CRNN_ETOKEN;
    if (lengths && !crnn_ids_in_range(lengths, s->B, (int64_t)s->T + 1)) return CRNN_ELENGTH;
    return CRNN_OK;
}

/* Token input: rows r0 .. r1-1 of hs (T*B rows of H) are the rows of the
 * table wt (D,H) = W_xh^T + b_h that the tokens name. */
typedef struct {
    REAL *hs;
    const REAL *wt;
    const int64_t *tokens;
    int H;
    size_t r0, r1;
} FN(gather);

static void FN(gather_rows)(void *arg)
{
    const FN(gather) *g = arg;
    for (size_t r = g->r0; r < g->r1; ++r)
        copy_row(g->hs + r * g->H, g->wt + (size_t)g->tokens[r] * g->H, g->H * sizeof(REAL));
}

/* The forward's recurrence over rows b0 .. b1-1: a_t += h_prev W_hh^T (one
 * product per step), h_t = f(a_t), 0 at padded steps; first, for token
 * input, the rows' a_t from the table (when the forward left them to the
 * loop), and h0's term for reversed sequences that start late. */
static void FN(forward_rows)(void *arg)
{
    const FN(loop) *L = arg;
    const crnn_shape *s = L->s;
    const int T = s->T, H = s->H, b0 = L->b0, b1 = L->b1;
    const size_t BH = (size_t)s->B * H, off = (size_t)b0 * H, n = (size_t)(b1 - b0) * H;
    if (L->wt)
        for (int t = 0; t < T; ++t) {
            FN(gather) g = {L->hs, L->wt, L->tokens, H, (size_t)t * s->B + b0,
                            (size_t)t * s->B + b1};
            FN(gather_rows)(&g);
        }
    if (L->h0_fix)
        for (int b = b0; b < b1; ++b) {
            int len = (int)L->lengths[b];
            if (len == 0 || len == T) continue;
            REAL *a = L->hs + (size_t)(len - 1) * BH + (size_t)b * H;
            const REAL *g = L->h_last + (size_t)b * H;
            for (int j = 0; j < H; ++j) a[j] += g[j];
        }
    for (int step = 0; step < T; ++step) {
        const int t = FN(step_t)(s->reverse, T, step);
        REAL *a = L->hs + (size_t)t * BH;
        const REAL *prev = step == 0 ? L->h0 : L->hs + (size_t)(s->reverse ? t + 1 : t - 1) * BH;
        if (prev) FN(step_gemm)(L, 1, prev + off, a + off);
        FN(act_forward)(a + off, a + off, n, s->activation);
        if (L->lengths)
            for (int b = b0; b < b1; ++b)
                if (t >= L->lengths[b]) memset(a + (size_t)b * H, 0, H * sizeof(REAL));
    }
    /* each sequence's state after its last step (h0, or 0, when len_b = 0),
     * here so that the two halves of a split loop copy theirs at once */
    for (int b = b0; b < b1; ++b) {
        const int len = L->lengths ? (int)L->lengths[b] : T;
        REAL *dst = L->h_last + (size_t)b * H;
        if (len == 0) {
            if (L->h0) copy_row(dst, L->h0 + (size_t)b * H, H * sizeof(REAL));
            else memset(dst, 0, H * sizeof(REAL));
        } else {
            const int t = FN(step_of)(s->reverse, len, T, 1);
            copy_row(dst, L->hs + (size_t)t * BH + (size_t)b * H, H * sizeof(REAL));
        }
    }
}

/* BPTT over one chunk's steps, rows b0 .. b1-1. First the rest of their
 * dL/dh_t, in this order: dy (when the layer has no output: 0 at padded
 * steps, where dy is not read), dstate at each sequence's last processed
 * step, and the carry from the chunk after this one; here, so that the two
 * halves of a split loop add theirs at once. On entry to a step, da[t]
 * holds the whole dL/dh_t (its successor has added dL/dh_t W_hh already); it
 * leaves as dL/da_t = dL/dh_t * f'(a_t), 0 at padded steps. */
static void FN(backward_rows)(void *arg)
{
    const FN(loop) *L = arg;
    const crnn_shape *s = L->s;
    const int T = s->T, H = s->H, rev = s->reverse, b0 = L->b0, b1 = L->b1;
    const int64_t *lengths = L->lengths;
    const size_t BH = (size_t)s->B * H, off = (size_t)b0 * H, n = (size_t)(b1 - b0) * H;
    const int t0 = L->t0, t1 = L->t0 + (L->hi - L->lo);  /* the chunk's t: t0 .. t1-1 */
    if (L->dy)
        for (int t = t0; t < t1; ++t)
            for (int b = b0; b < b1; ++b) {
                REAL *g = L->da + (size_t)(t - t0) * BH + (size_t)b * H;
                if (!lengths || t < lengths[b])
                    copy_row(g, L->dy + ((size_t)t * s->B + b) * H, H * sizeof(REAL));
                else
                    memset(g, 0, H * sizeof(REAL));
            }
    if (L->dstate)
        for (int b = b0; b < b1; ++b) {
            const int len = lengths ? (int)lengths[b] : T;
            const int t = len ? FN(step_of)(rev, len, T, 1) : -1;
            if (t < t0 || t >= t1) continue;
            const REAL *src = L->dstate + (size_t)b * H;
            REAL *dst = L->da + (size_t)(t - t0) * BH + (size_t)b * H;
            for (int j = 0; j < H; ++j) dst[j] += src[j];
        }
    if (L->hi < T) {
        REAL *g = L->da + (size_t)(FN(step_t)(rev, T, L->hi - 1) - t0) * BH;
        for (size_t i = off; i < off + n; ++i) g[i] += L->carry[i];
    }
    for (int step = L->hi - 1; step >= L->lo; --step) {
        const int t = FN(step_t)(rev, T, step);
        REAL *g = L->da + (size_t)(t - L->t0) * BH;
        if (lengths)
            for (int b = b0; b < b1; ++b) {
                if (t < lengths[b]) continue;
                /* a reversed sequence of length t: what reached h_t came
                 * from step t-1, whose h_prev was h0 */
                if (rev && lengths[b] == t)
                    for (int j = 0; j < H; ++j) L->dh0[(size_t)b * H + j] += g[(size_t)b * H + j];
                memset(g + (size_t)b * H, 0, H * sizeof(REAL));
            }
        FN(act_backward)(g + off, L->hs_in + (size_t)t * BH + off, n, s->activation);
        /* dL/dh_prev += da_t W_hh: into the predecessor step, the carry for
         * the next chunk, or dh0 */
        REAL *gprev = step == 0 ? L->dh0 : step == L->lo ? L->carry
                    : L->da + (size_t)(FN(step_t)(rev, T, step - 1) - L->t0) * BH;
        if (gprev == L->carry) memset(gprev + off, 0, n * sizeof(REAL));
        FN(step_gemm)(L, 0, g + off, gprev + off);
    }
}

int FN(crnn_elman_forward)(REAL *hs, REAL *y, REAL *h_last,
                           const REAL *x, const int64_t *tokens, const REAL *h0,
                           const int64_t *lengths,
                           const REAL *W_xh, const REAL *W_hh, const REAL *b_h,
                           const REAL *W_hy, const REAL *b_y, REAL *work,
                           const crnn_shape *s, const crnn_blas *blas)
{
    int rc = FN(check)(s, blas, tokens, lengths);
    if (rc) return rc;
    const int T = s->T, B = s->B, D = s->D, H = s->H, O = s->O;
    const int TB = T * B;
    const REAL *bh = s->bias ? b_h : NULL;
    if (!hs || !h_last || !W_xh || !W_hh || (!x && !tokens) || (s->bias && !b_h))
        return CRNN_ENULL;
    if (O > 0 && (!y || !W_hy || (s->bias && !b_y))) return CRNN_ENULL;
    gemm_ctx gc = FN(call_ctx)(blas, work, s->B);
    /* The recurrence and h_last (forward_rows), on one thread or on two
     * halves of the batch. A single step from h0 = 0 has no product: W_hh is
     * not packed then. */
    FN(loop) L = {.s = s, .gc = &gc, .pg = (T > 1 || h0) && FN(use_pgemm)(&gc, work, B, H),
                  .W_hh = W_hh, .lengths = lengths, .hs = hs, .h0 = h0, .h_last = h_last};
    const int split = FN(split_loop)(&gc, B, H, T);
    gc.cold = gc.own && !split;

    /* hs <- X W_xh^T + b_h for all T*B rows at once: one GEMM, or a gather of
     * W_xh's columns for one-hot tokens. */
    if (tokens) {
        /* with the table (token_table), copy rows of W_xh^T + b_h instead
         * of reading down W_xh's columns (stride D): the same sums, each
         * made once per id, and a row copy (memcpy's vector stores) per
         * token */
        REAL *wt = FN(token_table)(work, B, D, H, TB);
        if (wt) {
            FN(transpose)(wt, W_xh, H, D, 0, bh);
            /* by each half of a split loop, its rows first; else on crnn's
             * own threads in two halves when the one-hot product it stands
             * for would be split (rm_gemm): the copy is bound by memory, and
             * two cores write faster than one */
            FN(gather) all = {hs, wt, tokens, H, 0, (size_t)TB};
            if (split) {
                L.wt = wt;
                L.tokens = tokens;
            } else if (split_product(&gc, 2.0 * TB * D * H)) {
                FN(gather) first = all, second = all;
                first.r1 = second.r0 = (size_t)TB / 2;
                blas->par(FN(gather_rows), &first, &second);
            } else {
                FN(gather_rows)(&all);
            }
        } else {
            for (size_t r = 0; r < (size_t)TB; ++r) {
                REAL *row = hs + r * H;
                const REAL *col = W_xh + tokens[r];
                for (int j = 0; j < H; ++j) {
                    const REAL w = col[(size_t)j * D];
                    row[j] = bh ? w + bh[j] : w;  /* no 0 added: a -0 stays -0, as in the table */
                }
            }
        }
    } else {
        FN(gemm_fill)(&gc, 0, 'N', 'T', TB, H, D, 1, x, D, W_xh, D, 0, hs, H, bh);
    }

    /* A reversed sequence shorter than T starts at step len_b-1, where hs[t+1]
     * is padding (0), not h0: its W_hh h0 is added there (forward_rows).
     * h_last is free until the end and holds h0 W_hh^T meanwhile. */
    if (s->reverse && lengths && h0) {
        FN(rm_gemm)(&gc, 0, 'N', 'T', B, H, H, 1, h0, H, W_hh, H, 0, h_last, H);
        L.h0_fix = 1;
    }

    FN(step_pack)(&L, work, 1);
    FN(run_loop)(&L, FN(forward_rows), split);

    /* y = g(hs W_hy^T + b_y): one GEMM over all T*B rows. */
    if (O > 0) {
        const REAL *by = s->bias ? b_y : NULL;
        FN(gemm_fill)(&gc, 0, 'N', 'T', TB, O, H, 1, hs, H, W_hy, H, 0, y, O, by);
        if (s->output_activation == CRNN_SOFTMAX)
            FN(softmax_rows)(y, (size_t)TB, O);
        else
            FN(act_forward)(y, y, (size_t)TB * O, s->output_activation);
        if (lengths)
            for (int t = 0; t < T; ++t)
                for (int b = 0; b < B; ++b)
                    if (t >= lengths[b]) memset(y + ((size_t)t * B + b) * O, 0, O * sizeof(REAL));
    }
    restore_threads(&gc);
    return CRNN_OK;
}

/* What the backward's chunks share: crnn_elman_backward's arguments. */
typedef struct {
    const crnn_shape *s;
    gemm_ctx *gc;            /* the policy of the chunks' products */
    FN(loop) *L;             /* the time loop's */
    REAL *dx, *dW_xh, *dW_hh, *db_h, *dW_hy, *db_y, *dz, *wt;
    const REAL *dy, *hs, *y, *x, *h0, *W_xh, *W_hy;
    const int64_t *tokens, *lengths;
} FN(bwd);

/* One chunk of the backward: the forward's steps lo .. hi-1, whose t run
 * over t0 .. t0+n-1 (a contiguous range in either direction), with dL/da of
 * its n*B rows in da. chunk_job runs its gradients when grads is set, else
 * its time loop. */
typedef struct {
    const FN(bwd) *k;
    int lo, hi, n, t0;
    REAL *da;
    int grads;
} FN(chunk);

#define VALID(t, b) (!lengths || (t) < lengths[b])
#define DA(t) (c->da + (size_t)((t) - c->t0) * BH)

/* A chunk's dL/dh_t from the outputs when the layer has them (the rest
 * comes in backward_rows), then BPTT over it (backward_rows): its da then
 * holds dL/da_t. */
static void FN(chunk_loop)(const FN(chunk) *c)
{
    const FN(bwd) *k = c->k;
    const crnn_shape *s = k->s;
    const int B = s->B, H = s->H, O = s->O;
    const int t0 = c->t0, n = c->n;
    const size_t BH = (size_t)B * H, rows = (size_t)n * B;
    const int64_t *lengths = k->lengths;
    const REAL *dy = k->dy, *y = k->y;
    REAL *da = c->da, *dz = k->dz;

    /* da <- dz W_hy, dz = dL/dz_t from dy (0 at padded steps, where dy is
     * not read) */
    if (O > 0) {
        for (int t = t0; t < t0 + n; ++t)
            for (int b = 0; b < B; ++b) {
                size_t r = ((size_t)t * B + b) * O, rc_ = ((size_t)(t - t0) * B + b) * O;
                if (!VALID(t, b)) {
                    memset(dz + rc_, 0, O * sizeof(REAL));
                } else if (s->output_activation == CRNN_SOFTMAX) {
                    FN(softmax_backward_row)(dz + rc_, y + r, dy + r, O);
                } else {
                    copy_row(dz + rc_, dy + r, O * sizeof(REAL));
                    FN(act_backward)(dz + rc_, y + r, (size_t)O, s->output_activation);
                }
            }
        /* dW_hy += dz^T hs;  db_y += sum_rows dz;  dh = dz W_hy */
        FN(rm_gemm)(k->gc, 0, 'T', 'N', O, H, (int)rows, 1, dz, O, k->hs + (size_t)t0 * BH, H,
                    1, k->dW_hy, H);
        if (s->bias)
            for (size_t r = 0; r < rows; ++r)
                for (int j = 0; j < O; ++j) k->db_y[j] += dz[r * O + j];
        FN(rm_gemm)(k->gc, 0, 'N', 'N', (int)rows, H, O, 1, dz, O, k->W_hy, H, 0, da, H);
    }

    FN(loop) *L = k->L;
    L->lo = c->lo;
    L->hi = c->hi;
    L->t0 = t0;
    L->da = da;
    FN(run_loop)(L, FN(backward_rows), FN(split_loop)(L->gc, B, H, n));
}

/* A chunk's recurrent gradients from its da (0 at padded steps): db_h and
 * dW_hh, as whole-chunk products under the policy gc. */
static void FN(grads_hh)(const FN(chunk) *c, gemm_ctx *gc)
{
    const FN(bwd) *k = c->k;
    const crnn_shape *s = k->s;
    const int T = s->T, B = s->B, H = s->H, rev = s->reverse;
    const int t0 = c->t0, n = c->n;
    const size_t BH = (size_t)B * H, rows = (size_t)n * B;
    const int64_t *lengths = k->lengths;
    const REAL *hs = k->hs, *h0 = k->h0, *da = c->da;
    REAL *dW_hh = k->dW_hh;

    if (s->bias)
        for (size_t r = 0; r < rows; ++r)
            for (int j = 0; j < H; ++j) k->db_h[j] += da[r * H + j];

    /* dW_hh += sum_t da_t^T h_prev(t): one GEMM pairs the chunk's steps
     * whose h_prev is in hs (all but the first processed, t = 0 or T-1)
     * with it; that step's h_prev is h0. */
    {
        const int a = rev ? t0 : (t0 > 0 ? t0 : 1);                 /* first such t */
        const int e = rev ? (t0 + n < T ? t0 + n : T - 1) : t0 + n;  /* one past the last */
        if (e > a)
            FN(rm_gemm)(gc, 0, 'T', 'N', H, H, (e - a) * B, 1, DA(a), H,
                        hs + (size_t)(rev ? a + 1 : a - 1) * BH, H, 1, dW_hh, H);
    }
    if (h0) {
        const int tf = FN(step_t)(rev, T, 0);
        if (tf >= t0 && tf < t0 + n)
            FN(rm_gemm)(gc, 0, 'T', 'N', H, H, B, 1, DA(tf), H, h0, H, 1, dW_hh, H);
        /* a reversed sequence shorter than T started from h0 at step len_b-1 */
        if (rev && lengths)
            for (int b = 0; b < B; ++b) {
                int len = (int)lengths[b];
                if (len == 0 || len == T || len - 1 < t0 || len - 1 >= t0 + n) continue;
                FN(rm_gemm)(gc, 0, 'T', 'N', H, H, 1, 1, DA(len - 1) + (size_t)b * H, H,
                            h0 + (size_t)b * H, H, 1, dW_hh, H);
            }
    }
}

/* A chunk's dW_xh from its da (for token input the sums of da's rows per
 * id), under the policy gc; for dense input only dW_xh's rows j0 .. j1-1. */
static void FN(grads_xh)(const FN(chunk) *c, gemm_ctx *gc, int j0, int j1)
{
    const FN(bwd) *k = c->k;
    const crnn_shape *s = k->s;
    const int B = s->B, D = s->D, H = s->H;
    const int t0 = c->t0, n = c->n;
    const size_t BH = (size_t)B * H, rows = (size_t)n * B;
    const int64_t *lengths = k->lengths, *tokens = k->tokens;
    const REAL *da = c->da;

    if (tokens) {
        /* dW_xh[:, id] += da_t for each valid (t, b); with the table
         * (token_table), summed into rows of dW_xh^T first (contiguous),
         * then added once */
        for (int t = t0; t < t0 + n; ++t)
            for (int b = 0; b < B; ++b) {
                if (!VALID(t, b)) continue;
                size_t r = (size_t)t * B + b;
                const REAL *d = DA(t) + (size_t)b * H;
                if (k->wt) {
                    REAL *row = k->wt + (size_t)tokens[r] * H;
                    for (int j = 0; j < H; ++j) row[j] += d[j];
                } else {
                    REAL *col = k->dW_xh + tokens[r];
                    for (int j = 0; j < H; ++j) col[(size_t)j * D] += d[j];
                }
            }
    } else {
        /* dW_xh[j0:j1] += da[:, j0:j1]^T X */
        const size_t xo = (size_t)t0 * B * D;
        FN(rm_gemm)(gc, 0, 'T', 'N', j1 - j0, D, (int)rows, 1, da + j0, H, k->x + xo, D, 1,
                    k->dW_xh + (size_t)j0 * D, D);
    }
}

/* A chunk's rows of dx = da W_xh (when dx is wanted), under the policy gc. */
static void FN(grads_dx)(const FN(chunk) *c, gemm_ctx *gc)
{
    const FN(bwd) *k = c->k;
    const int B = k->s->B, D = k->s->D, H = k->s->H;
    if (k->dx)
        FN(rm_gemm)(gc, 0, 'N', 'N', c->n * B, D, H, 1, c->da, H, k->W_xh, D, 0,
                    k->dx + (size_t)c->t0 * B * D, D);
}

typedef struct {
    const FN(chunk) *c;
    gemm_ctx *gc;
    int first;   /* 1: db_h, dW_hh and dW_xh's rows j0 .. j1-1; 0: those rows and dx */
    int j0, j1;
} FN(grads_part);

static void FN(grads_job)(void *arg)
{
    const FN(grads_part) *g = arg;
    if (g->first) FN(grads_hh)(g->c, g->gc);
    FN(grads_xh)(g->c, g->gc, g->j0, g->j1);
    if (!g->first) FN(grads_dx)(g->c, g->gc);
}

/* A chunk's parameter gradients. On crnn's own threads, from mt_flops
 * flops, dW_hh (with db_h) runs beside dx, and dW_xh's rows are shared out
 * between the two (cut at a multiple of CRNN_SPLIT_ALIGN) so that both
 * sides have about the same flops: none of them beside dW_hh when
 * D = H/2 with dx (M, S) or D = H without it, half when D = H with dx (L).
 * Each product, or row block of dW_xh, is whole on one thread, rather than
 * every product split into two halves that each pack the operand they
 * share (dx's: all of W_xh), and one par call replaces one per product.
 * When the two sides cannot come within 20 % of each other (no dx and
 * D < 0.8 H, token input, an H too small to cut) the products run one
 * after the other, each split in halves. Each accumulator is summed in the
 * same order as on one thread, and the rows of dW_xh as in the whole
 * product: the same bits. */
static void FN(chunk_grads)(const FN(chunk) *c)
{
    const FN(bwd) *k = c->k;
    const crnn_shape *s = k->s;
    gemm_ctx *gc = k->gc;
    const int H = s->H;
    const double rows = (double)c->n * s->B;
    /* from h0 = 0 the first step (lo = 0) adds nothing to dW_hh (grads_hh) */
    const double hh_rows = (double)(c->n - (c->lo == 0 && !k->h0)) * s->B;
    const double fhh = 2 * hh_rows * H * H, fxh = k->tokens ? 0 : 2 * rows * H * s->D;
    const double fdx = k->dx ? fxh : 0;
    if (fxh > 0 && split_product(gc, fhh + fxh + fdx)) {
        /* dW_xh's rows 0 .. cut-1 beside dW_hh, the rest beside dx */
        double f = (fdx + fxh - fhh) / (2 * fxh);
        f = f < 0 ? 0 : f > 1 ? 1 : f;
        int cut = (int)(f * H / CRNN_SPLIT_ALIGN + 0.5) * CRNN_SPLIT_ALIGN;
        cut = cut > H ? H : cut;
        /* no share of dW_xh (H, D) goes to gemv (to_gemv): a whole that
         * does stays whole, a one-row share moves into the other */
        const crnn_blas *bl = gc->blas;
        if (cut > 0 && cut < H &&
            (FN(to_gemv)(bl, H, s->D) || FN(to_gemv)(bl, cut, s->D) || FN(to_gemv)(bl, H - cut, s->D)))
            cut = FN(to_gemv)(bl, H, s->D) ? 0 : cut - CRNN_SPLIT_ALIGN;
        const double one_side = fhh + fxh * cut / H, other = fdx + fxh * (H - cut) / H;
        const double lo = one_side < other ? one_side : other;
        const double hi = one_side < other ? other : one_side;
        if (5 * lo >= 4 * hi) {
            crnn_blas one;
            gemm_ctx half = half_ctx(gc, &one);  /* the BLAS on one thread meanwhile */
            FN(grads_part) a = {c, &half, 1, 0, cut}, b = {c, &half, 0, cut, H};
            gc->blas->par(FN(grads_job), &a, &b);
            return;
        }
    }
    FN(grads_hh)(c, gc);
    FN(grads_xh)(c, gc, 0, H);
    FN(grads_dx)(c, gc);
}
#undef DA

static void FN(chunk_job)(void *arg)
{
    const FN(chunk) *c = arg;
    if (c->grads) FN(chunk_grads)(c);
    else FN(chunk_loop)(c);
}

/* Whether a backward of B < 4 rows and chunks of C steps makes its chunks
 * C/2 steps, taking turns in two halves of da, so that on crnn's own two
 * threads (call_ctx: own, not halves) each chunk's gradients can be
 * computed on the second thread while the next chunk's time loop runs on
 * the first: when such a chunk's products beside its loop have at least
 * par_flops flops. This does not depend on the thread count: the chunks,
 * and so the bits, are the same on one thread. */
static int FN(pipe_chunks)(const crnn_blas *b, int B, int D, int H, int C)
{
    return B < 4 && C >= 2 && 2.0 * (C / 2) * B * H * ((double)H + D) >= b->par_flops;
}

int FN(crnn_elman_backward)(REAL *dx, REAL *dh0,
                            REAL *dW_xh, REAL *dW_hh, REAL *db_h,
                            REAL *dW_hy, REAL *db_y,
                            const REAL *dy, const REAL *dstate,
                            const REAL *hs, const REAL *y,
                            const REAL *x, const int64_t *tokens, const REAL *h0,
                            const int64_t *lengths,
                            const REAL *W_xh, const REAL *W_hh, const REAL *W_hy,
                            REAL *da, REAL *dz, REAL *work, int chunk,
                            const crnn_shape *s, const crnn_blas *blas)
{
    int rc = FN(check)(s, blas, tokens, lengths);
    if (rc) return rc;
    if (chunk < 1) return CRNN_ESIZE;
    const int T = s->T, B = s->B, D = s->D, H = s->H, O = s->O, rev = s->reverse;
    const int C = chunk < T ? chunk : T;
    const size_t BH = (size_t)B * H;
    if (!dh0 || !dW_xh || !dW_hh || !dy || !hs || !W_xh || !W_hh || !da ||
        (!x && !tokens) || (s->bias && !db_h))
        return CRNN_ENULL;
    if (O > 0 && (!y || !W_hy || !dz || !dW_hy || (s->bias && !db_y))) return CRNN_ENULL;
    gemm_ctx gc = FN(call_ctx)(blas, work, s->B);
    REAL *carry = da + (size_t)C * BH;  /* dL/dh of the step before a chunk */

    /* dstate is dL/dh_last: it enters at each sequence's last processed step
     * (backward_rows, in that step's chunk), or goes straight to dh0 when the
     * sequence is empty. */
    memset(dh0, 0, BH * sizeof(REAL));
    if (dstate && lengths)
        for (int b = 0; b < B; ++b)
            if (lengths[b] == 0)
                for (int j = 0; j < H; ++j) dh0[(size_t)b * H + j] += dstate[(size_t)b * H + j];

    /* each chunk's time loop (backward_rows), on one thread or on two
     * halves of the batch */
    FN(loop) L = {.s = s, .gc = &gc, .pg = FN(use_pgemm)(&gc, work, B, H), .W_hh = W_hh,
                  .lengths = lengths, .hs_in = hs, .dy = O > 0 ? NULL : dy, .dstate = dstate,
                  .carry = carry, .dh0 = dh0};
    FN(step_pack)(&L, work, 0);
    REAL *wt = tokens ? FN(token_table)(work, B, D, H, T * B) : NULL;  /* dW_xh^T, summed first */
    if (wt) memset(wt, 0, (size_t)D * H * sizeof(REAL));

    /* The forward's steps in reverse order, cs at a time: a chunk's time
     * loop, then its parameter gradients as whole-chunk products. A chunk's
     * da is cs*B*H long, not T*B*H, and still in cache when the products
     * read it. Pipelined (pipe), one chunk's gradients are computed from
     * one half of da while the next chunk's loop fills the other; every
     * accumulator is still summed chunk by chunk in the same order, so the
     * bits are those of one thread. */
    const int nbuf = FN(pipe_chunks)(blas, B, D, H, C) ? 2 : 1, cs = C / nbuf;
    crnn_blas one;
    gemm_ctx half;
    const int pipe = nbuf == 2 && gc.own && !gc.halves;
    if (pipe) {
        half = half_ctx(&gc, &one);  /* the BLAS on one thread for both jobs */
        L.gc = &half;
    }
    const FN(bwd) k = {.s = s, .gc = pipe ? &half : &gc, .L = &L, .dx = dx, .dW_xh = dW_xh,
                       .dW_hh = dW_hh, .db_h = db_h, .dW_hy = dW_hy, .db_y = db_y, .dz = dz,
                       .wt = wt, .dy = dy, .hs = hs, .y = y, .x = x, .h0 = h0, .W_xh = W_xh,
                       .W_hy = W_hy, .tokens = tokens, .lengths = lengths};
    /* Longer chunks in dx's rows not written yet (those of the steps the
     * chunks still to come hold): a chunk ending at step hi can be n steps,
     * n H <= (hi - n) D, with its da in those rows; fewer, longer chunks
     * repack W_xh for dx and hand work to the threads fewer times. Only
     * where cs steps' da reach dx_chunk_bytes (below that, a chunk's da
     * stays in cache from the loop to the products) and dz needs no more
     * than cs steps (O = 0). */
    const int in_dx = dx && O == 0 && nbuf == 1 && blas->dx_chunk_bytes > 0 &&
                      (double)cs * BH * sizeof(REAL) >= blas->dx_chunk_bytes;
    FN(chunk) prev = {0};
    int i = 0;
    for (int hi = T, lo; hi > 0; hi = lo, ++i) {
        const int nd = in_dx ? (int)((int64_t)hi * D / (D + H)) : 0;
        const int n = nd > cs ? nd : hi < cs ? hi : cs;
        lo = hi - n;
        FN(chunk) cur = {.k = &k, .lo = lo, .hi = hi, .n = n, .t0 = rev ? T - hi : lo,
                         .da = nd > cs ? dx + (size_t)(rev ? T - lo : 0) * B * D
                                       : da + (size_t)(i % nbuf) * cs * BH};
        if (pipe && i > 0) {
            prev.grads = 1;  /* on the worker, beside cur's loop here */
            blas->par(FN(chunk_job), &cur, &prev);
        } else {
            FN(chunk_loop)(&cur);
            if (!pipe) FN(chunk_grads)(&cur);
        }
        prev = cur;
    }
    if (pipe) FN(chunk_grads)(&prev);
    if (wt) FN(transpose)(dW_xh, wt, D, H, 1, NULL);  /* dW_xh += wt^T, the batch's sums */
#undef VALID
    restore_threads(&gc);
    return CRNN_OK;
}

int FN(crnn_activate)(REAL *out, const REAL *in, int64_t n, int act)
{
    if (!out || !in) return CRNN_ENULL;
    if (n < 0) return CRNN_ESIZE;
    if (act < CRNN_IDENTITY || act > CRNN_SIGMOID) return CRNN_EACT;
    FN(act_forward)(out, in, (size_t)n, act);
    return CRNN_OK;
}

#undef FN
#undef CAT
#undef CAT_
