/* test_core.c -- C-level tests of the crnn core (crnn.h, elman.c).
 *
 * The oracle is a naive forward written here from the model in crnn.h: per
 * sequence b, per valid step (reverse: len_b-1 down to 0), per neuron j, per
 * input d, with a token as its one-hot vector. The core must match it within
 * 1e-12 (double); every gradient of crnn_elman_backward_f64 is checked against
 * central finite differences of that forward's scalar
 *     L = sum_{valid t,b} dy_t . y_t  +  sum_b dstate_b . h_last_b
 * and the float32 entry points against the float64 ones.
 *
 * Build (from the repository root):
 *     cc -std=c99 -O2 -Wall -Wextra -Werror -Isrc_c src_c/tests/test_core.c \
 *        src_c/elman.c src_c/blas_ref.c -lm
 * Prints one line per failing check to stderr (the first MAX_REPORTED), a
 * summary to stdout, and exits 1 if any check failed.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_ref.h"
#include "crnn.h"

#define MAXW 16           /* widest H or O the naive forward handles */
#define FWD_TOL 1e-12     /* core vs naive forward: |got - want| <= FWD_TOL * max(|want|, 1) */
#define FD_STEP 3e-6      /* central differences; smaller steps only add rounding noise */
#define FD_TOL 1e-6       /* |g - fd| <= FD_TOL * max(|g|, |fd|, FD_FLOOR) */
#define FD_FLOOR 1e-2
#define RELU_MARGIN 1e-3  /* relu pre-activations kept this far from the kink */
#define ACC_TOL 1e-12     /* second backward: |acc - 2 g| <= ACC_TOL * max(|2 g|, 1) */
#define F32_TOL 1e-4      /* float32 vs float64: */
#define F32_FLOOR 0.1     /* |f - d| <= F32_TOL * max(|d|, F32_FLOOR * max|d|, F32_ABS) */
#define F32_ABS 1e-2      /* (inputs are O(1); entries, or arrays, that cancel to near 0
                           * are judged against the array's or the problem's scale) */
#define MAX_REPORTED 60

static const crnn_blas REF_BLAS = {crnn_ref_sgemm, crnn_ref_dgemm, crnn_ref_sgemv,
                                   crnn_ref_dgemv, NULL, 1, CRNN_MT_FLOPS, CRNN_MT_FLOPS_STEP,
                                   NULL, 0, 0};
/* the same without gemv: every product through gemm */
static const crnn_blas GEMM_ONLY = {crnn_ref_sgemm, crnn_ref_dgemm, NULL, NULL, NULL, 1,
                                    CRNN_MT_FLOPS, CRNN_MT_FLOPS_STEP, NULL, 0, 0};
/* REF_BLAS split in two: every whole-sequence product with more than one
 * row or column, and every time loop of a batch with B >= 4, runs as two
 * halves (with B < 4 the backward's chunks are pipelined instead) -- on
 * crnn's own two threads (crnn_par_run2, PAR_BLAS), or in turn (SPLIT_BLAS:
 * the grid's many small calls would spend their time handing jobs over),
 * from call to call the second job first, then the first job first, as
 * either may finish first on two threads */
static void serial_par(crnn_job_fn job, void *arg0, void *arg1)
{
    static int flip;
    flip = !flip;
    job(flip ? arg1 : arg0);
    job(flip ? arg0 : arg1);
}
static const crnn_blas SPLIT_BLAS = {crnn_ref_sgemm, crnn_ref_dgemm, crnn_ref_sgemv,
                                     crnn_ref_dgemv, NULL, 2, 0, CRNN_MT_FLOPS_STEP,
                                     serial_par, 0, 0};
static const crnn_blas PAR_BLAS = {crnn_ref_sgemm, crnn_ref_dgemm, crnn_ref_sgemv,
                                   crnn_ref_dgemv, NULL, 2, 0, CRNN_MT_FLOPS_STEP,
                                   crnn_par_run2, 0, 0};
/* the table the grid runs with: both, in turn */
static const crnn_blas *GRID_BLAS = &REF_BLAS;
/* whether the grid passes the `work` buffer (the packed time-loop products) */
static int GRID_WORK = 0;
/* the backward's chunk in the grid: 0 for crnn_elman_chunk's (all T steps at
 * the grid's sizes), else this many steps (capped at T by the core) */
static int GRID_CHUNK = 0;
/* the grid backward's dx_chunk_bytes (0: off; 1: chunks in dx's rows
 * wherever they can be longer than GRID_CHUNK's) */
static double GRID_DX_CHUNK = 0;

/* GRID_BLAS with GRID_DX_CHUNK */
static const crnn_blas *grid_blas(void)
{
    static crnn_blas b;
    b = *GRID_BLAS;
    b.dx_chunk_bytes = GRID_DX_CHUNK;
    return &b;
}

static int grid_chunk(const crnn_shape *s)
{
    return GRID_CHUNK ? GRID_CHUNK : crnn_elman_chunk(s->T, s->B);
}

/* The grid's work buffer for shape s (NULL when GRID_WORK is off): one
 * buffer, grown as needed; it is free between kernel calls. */
static void *grid_work(const crnn_shape *s, int tok, int f32)
{
    static void *buf;
    static size_t cap;
    if (!GRID_WORK) return NULL;
    size_t n = f32 ? (size_t)crnn_elman_worksize_f32(s->B, s->D, s->H, tok) * sizeof(float)
                   : (size_t)crnn_elman_worksize_f64(s->B, s->D, s->H, tok) * sizeof(double);
    if (n > cap) {
        free(buf);
        buf = malloc(n);
        cap = n;
        if (!buf) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
    }
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Check bookkeeping                                                         */

static long n_checks, n_failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void check(int ok, const char *fmt, ...)
{
    ++n_checks;
    if (ok) return;
    if (++n_failed <= MAX_REPORTED) {
        va_list ap;
        va_start(ap, fmt);
        fputs("FAIL: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

/* |got - want| <= tol * max(|want|, floor) at every index; NaN never passes. */
static void check_close(const char *ctx, const char *name, const double *got,
                        const double *want, size_t n, double tol, double floor)
{
    double worst = 0;
    size_t at = 0;
    int ok = 1;
    for (size_t i = 0; i < n; ++i) {
        double den = fabs(want[i]) > floor ? fabs(want[i]) : floor;
        double err = fabs(got[i] - want[i]) / den;
        if (!(err <= tol)) {
            if (ok || !(err <= worst)) { worst = err; at = i; }
            ok = 0;
        }
    }
    if (ok)
        check(1, "%s", name);
    else
        check(0, "%s: %s: rel err %.3g > %.1g at [%zu] (got %.17g, want %.17g)", ctx, name,
              worst, tol, at, got[at], want[at]);
}

/* float32 results against float64 ones: relative to each entry, or to a
 * tenth of the array's largest entry, or to F32_ABS (see the #defines). */
static void check_f32(const char *ctx, const char *name, const double *got, const double *want,
                      size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; ++i) mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
    double floor = F32_FLOOR * mx > F32_ABS ? F32_FLOOR * mx : F32_ABS;
    check_close(ctx, name, got, want, n, F32_TOL, floor);
}

/* got[i] == want[i] at every index (so +0 == -0; NaN never passes). */
static void check_equal(const char *ctx, const char *name, const double *got,
                        const double *want, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!(got[i] == want[i])) {
            check(0, "%s: %s: differs at [%zu] (got %.17g, want %.17g)", ctx, name, i, got[i],
                  want[i]);
            return;
        }
    check(1, "%s", name);
}

/* ------------------------------------------------------------------------ */
/* A small deterministic PRNG (splitmix64)                                    */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unif(rng_t *r, double lo, double hi)  /* [lo, hi) */
{
    return lo + (hi - lo) * (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int rng_int(rng_t *r, int lo, int hi)  /* [lo, hi] */
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static void fill_unif(double *a, size_t n, rng_t *r, double lo, double hi)
{
    for (size_t i = 0; i < n; ++i) a[i] = rng_unif(r, lo, hi);
}

static void fill(double *a, size_t n, double v)
{
    for (size_t i = 0; i < n; ++i) a[i] = v;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("test_core: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

static const char *act_name(int a)
{
    static const char *names[] = {"identity", "tanh", "relu", "sigmoid", "softmax"};
    return a >= 0 && a <= 4 ? names[a] : "?";
}

/* ------------------------------------------------------------------------ */
/* One problem: shape, options, inputs, parameters, and the loss weights      */

typedef struct {
    crnn_shape s;
    int tok;                /* 1: token input (x unused), 0: dense x */
    int has_h0;             /* 0: h0 is passed as NULL */
    int len_mode;           /* 0: lengths NULL; 1: all T; 2: 0, T, random; 3: random */
    /* every double in one block, so that a snapshot is one memcpy */
    double *blk;
    size_t nblk;
    double *x, *h0, *Wxh, *Whh, *bh, *Why, *by, *dy, *dstate, *h0zero;
    int64_t *iblk;          /* tokens (T*B) then lengths (B) */
    size_t niblk;
    int64_t *tokens, *len_buf;
    const int64_t *lengths; /* len_buf or NULL */
} prob;

static size_t out_width(const crnn_shape *s) { return (size_t)(s->O > 0 ? s->O : s->H); }

static void prob_alloc(prob *p)
{
    const size_t T = (size_t)p->s.T, B = (size_t)p->s.B, D = (size_t)p->s.D;
    const size_t H = (size_t)p->s.H, O = (size_t)p->s.O;
    size_t sz[10] = {T * B * D, B * H, H * D, H * H, H, O * H, O, T * B * out_width(&p->s),
                     B * H, B * H};
    double **dst[10] = {&p->x, &p->h0, &p->Wxh, &p->Whh, &p->bh, &p->Why, &p->by,
                        &p->dy, &p->dstate, &p->h0zero};
    p->nblk = 0;
    for (int i = 0; i < 10; ++i) p->nblk += sz[i];
    p->blk = xmalloc(p->nblk * sizeof(double));
    size_t off = 0;
    for (int i = 0; i < 10; ++i) {
        *dst[i] = p->blk + off;
        off += sz[i];
    }
    p->niblk = T * B + B;
    p->iblk = xmalloc(p->niblk * sizeof(int64_t));
    p->tokens = p->iblk;
    p->len_buf = p->iblk + T * B;
    p->lengths = p->len_mode ? p->len_buf : NULL;
}

static void prob_free(prob *p)
{
    free(p->blk);
    free(p->iblk);
}

static int valid(const prob *p, int t, int b)
{
    return !p->lengths || t < p->lengths[b];
}

static void make_lengths(prob *p, rng_t *r)
{
    const int T = p->s.T;
    for (int b = 0; b < p->s.B; ++b) {
        int64_t v = T;
        if (p->len_mode == 2)
            v = b == 0 ? 0 : b == 1 ? T : rng_int(r, 0, T);
        else if (p->len_mode == 3)
            v = b == 0 ? (T > 1 ? rng_int(r, 1, T - 1) : T) : rng_int(r, 0, T);
        p->len_buf[b] = v;
    }
}

/* ------------------------------------------------------------------------ */
/* The naive forward: the oracle                                              */

static double act_ref(double a, int act)
{
    switch (act) {
    case CRNN_TANH: return tanh(a);
    case CRNN_RELU: return a > 0 ? a : 0;
    case CRNN_SIGMOID: return 1 / (1 + exp(-a));
    default: return a;
    }
}

/* hs (T,B,H), y (T,B,O), h_last (B,H) for p's inputs with initial state h0
 * (NULL: zeros). Returns the smallest |pre-activation| that went through a
 * relu (HUGE_VAL if none), so that finite differences can avoid the kink. */
static double naive_forward(double *hs, double *y, double *h_last, const prob *p,
                            const double *h0)
{
    const crnn_shape *s = &p->s;
    const int T = s->T, B = s->B, D = s->D, H = s->H, O = s->O;
    double margin = HUGE_VAL;
    memset(hs, 0, (size_t)T * B * H * sizeof(double));
    if (O > 0) memset(y, 0, (size_t)T * B * O * sizeof(double));
    for (int b = 0; b < B; ++b) {
        const int len = p->lengths ? (int)p->lengths[b] : T;
        double prev[MAXW], cur[MAXW], z[MAXW];
        for (int j = 0; j < H; ++j) prev[j] = h0 ? h0[b * H + j] : 0;
        for (int k = 0; k < len; ++k) {
            const int t = s->reverse ? len - 1 - k : k;
            const int r = t * B + b;
            for (int j = 0; j < H; ++j) {
                double a = s->bias ? p->bh[j] : 0;
                for (int d = 0; d < D; ++d) {
                    double xd = p->tok ? (p->tokens[r] == d ? 1.0 : 0.0) : p->x[r * D + d];
                    a += p->Wxh[j * D + d] * xd;
                }
                for (int i = 0; i < H; ++i) a += p->Whh[j * H + i] * prev[i];
                if (s->activation == CRNN_RELU && fabs(a) < margin) margin = fabs(a);
                cur[j] = act_ref(a, s->activation);
            }
            for (int j = 0; j < H; ++j) hs[r * H + j] = prev[j] = cur[j];
            if (O == 0) continue;
            for (int o = 0; o < O; ++o) {
                z[o] = s->bias ? p->by[o] : 0;
                for (int j = 0; j < H; ++j) z[o] += p->Why[o * H + j] * cur[j];
            }
            if (s->output_activation == CRNN_SOFTMAX) {
                double m = z[0], sum = 0;
                for (int o = 1; o < O; ++o) m = z[o] > m ? z[o] : m;
                for (int o = 0; o < O; ++o) sum += exp(z[o] - m);
                for (int o = 0; o < O; ++o) {
                    double v = exp(z[o] - m) / sum;
                    y[r * O + o] = v < DBL_MIN ? DBL_MIN : v;
                }
            } else {
                for (int o = 0; o < O; ++o) {
                    if (s->output_activation == CRNN_RELU && fabs(z[o]) < margin)
                        margin = fabs(z[o]);
                    y[r * O + o] = act_ref(z[o], s->output_activation);
                }
            }
        }
        for (int j = 0; j < H; ++j) h_last[b * H + j] = prev[j];
    }
    return margin;
}

typedef struct {
    double *hs, *y, *hl;
} scratch;

static double loss(const prob *p, const double *h0, scratch *w)
{
    const int T = p->s.T, B = p->s.B;
    const size_t W = out_width(&p->s);
    naive_forward(w->hs, w->y, w->hl, p, h0);
    const double *out = p->s.O > 0 ? w->y : w->hs;
    double L = 0;
    for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
            if (valid(p, t, b))
                for (size_t k = 0; k < W; ++k) {
                    size_t i = ((size_t)t * B + b) * W + k;
                    L += p->dy[i] * out[i];
                }
    for (size_t i = 0; i < (size_t)B * p->s.H; ++i) L += p->dstate[i] * w->hl[i];
    return L;
}

/* Central differences of L over every entry of P (n values) against g. */
static void check_fd(const char *ctx, const char *name, const prob *p, const double *h0,
                     double *P, size_t n, const double *g, scratch *w)
{
    double worst = 0, fd_at = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
        const double v = P[i], vp = v + FD_STEP, vm = v - FD_STEP;
        P[i] = vp;
        double Lp = loss(p, h0, w);
        P[i] = vm;
        double Lm = loss(p, h0, w);
        P[i] = v;
        double fd = (Lp - Lm) / (vp - vm);
        double den = fabs(g[i]);
        den = fabs(fd) > den ? fabs(fd) : den;
        den = FD_FLOOR > den ? FD_FLOOR : den;
        double err = fabs(g[i] - fd) / den;
        if (!(err <= worst)) {
            worst = err;
            at = i;
            fd_at = fd;
        }
    }
    if (n == 0 || worst <= FD_TOL)
        check(1, "%s", name);
    else
        check(0, "%s: d%s vs finite differences: rel err %.3g at [%zu] (core %.17g, fd %.17g)",
              ctx, name, worst, at, g[at], fd_at);
}

/* Random inputs, dy and dstate in (-1, 1); parameters in (-1/sqrt(H), 1/sqrt(H))
 * as PyTorch initialises them (so that identity and relu stay O(1) over T
 * steps and finite differences stay accurate); relu pre-activations are kept
 * RELU_MARGIN off the kink. */
static void prob_fill(prob *p, rng_t *r)
{
    const crnn_shape *s = &p->s;
    const double k = 1 / sqrt((double)s->H);
    const size_t TB = (size_t)s->T * s->B;
    scratch w;
    w.hs = xmalloc(TB * s->H * sizeof(double));
    w.y = xmalloc((TB * s->O + 1) * sizeof(double));
    w.hl = xmalloc((size_t)s->B * s->H * sizeof(double));
    for (int attempt = 0; attempt < 1000; ++attempt) {
        fill_unif(p->blk, p->nblk, r, -1, 1);
        double *params[] = {p->Wxh, p->Whh, p->bh, p->Why, p->by};
        size_t nparams[] = {(size_t)s->H * s->D, (size_t)s->H * s->H, (size_t)s->H,
                            (size_t)s->O * s->H, (size_t)s->O};
        for (int i = 0; i < 5; ++i)
            for (size_t j = 0; j < nparams[i]; ++j) params[i][j] *= k;
        fill(p->h0zero, (size_t)s->B * s->H, 0);
        for (size_t i = 0; i < TB; ++i) p->tokens[i] = rng_int(r, 0, s->D - 1);
        make_lengths(p, r);
        if (naive_forward(w.hs, w.y, w.hl, p, p->has_h0 ? p->h0 : NULL) >= RELU_MARGIN) break;
    }
    free(w.hs);
    free(w.y);
    free(w.hl);
}

static void describe(char *buf, size_t n, const prob *p)
{
    const crnn_shape *s = &p->s;
    int k = snprintf(buf, n, "T=%d B=%d D=%d H=%d O=%d f=%s g=%s bias=%d rev=%d h0=%s %s lengths=",
                     s->T, s->B, s->D, s->H, s->O, act_name(s->activation),
                     act_name(s->output_activation), s->bias, s->reverse,
                     p->has_h0 ? "given" : "NULL", p->tok ? "tokens" : "dense");
    if (!p->lengths) {
        snprintf(buf + k, n - k, "NULL");
        return;
    }
    for (int b = 0; b < s->B && k < (int)n - 24; ++b)
        k += snprintf(buf + k, n - k, "%s%lld", b ? "," : "[", (long long)p->lengths[b]);
    snprintf(buf + k, n - k, "]");
}

/* ------------------------------------------------------------------------ */
/* Calling the core                                                          */

/* Gradient buffers, one block: dx (T,B,D), dh0 (B,H), dW_xh, dW_hh, db_h,
 * dW_hy, db_y. */
typedef struct {
    double *blk;
    size_t n;
    double *dx, *dh0, *dWxh, *dWhh, *dbh, *dWhy, *dby;
    size_t ndx, ndh0, nWxh, nWhh, nbh, nWhy, nby;
} grads;

static void grads_alloc(grads *g, const crnn_shape *s)
{
    const size_t T = (size_t)s->T, B = (size_t)s->B, D = (size_t)s->D;
    const size_t H = (size_t)s->H, O = (size_t)s->O;
    g->ndx = T * B * D;
    g->ndh0 = B * H;
    g->nWxh = H * D;
    g->nWhh = H * H;
    g->nbh = H;
    g->nWhy = O * H;
    g->nby = O;
    g->n = g->ndx + g->ndh0 + g->nWxh + g->nWhh + g->nbh + g->nWhy + g->nby;
    g->blk = xmalloc(g->n * sizeof(double));
    g->dx = g->blk;
    g->dh0 = g->dx + g->ndx;
    g->dWxh = g->dh0 + g->ndh0;
    g->dWhh = g->dWxh + g->nWxh;
    g->dbh = g->dWhh + g->nWhh;
    g->dWhy = g->dbh + g->nbh;
    g->dby = g->dWhy + g->nWhy;
}

/* Overwritten outputs (dx, dh0) get NaN, accumulators get acc. */
static void grads_reset(grads *g, double acc)
{
    fill(g->dx, g->ndx + g->ndh0, NAN);
    fill(g->dWxh, g->n - g->ndx - g->ndh0, acc);
}

static int fwd64(const prob *p, double *hs, double *y, double *hl, const int64_t *lengths)
{
    const crnn_shape *s = &p->s;
    return crnn_elman_forward_f64(hs, s->O ? y : NULL, hl, p->tok ? NULL : p->x,
                                  p->tok ? p->tokens : NULL, p->has_h0 ? p->h0 : NULL, lengths,
                                  p->Wxh, p->Whh, s->bias ? p->bh : NULL, s->O ? p->Why : NULL,
                                  s->bias && s->O ? p->by : NULL, grid_work(s, p->tok, 0), s,
                                  GRID_BLAS);
}

static int bwd64(const prob *p, grads *g, int with_dx, const double *dy, const double *dstate,
                 const double *hs, const double *y, const int64_t *lengths, double *da,
                 double *dz)
{
    const crnn_shape *s = &p->s;
    const int O = s->O;
    return crnn_elman_backward_f64(
        with_dx && !p->tok ? g->dx : NULL, g->dh0, g->dWxh, g->dWhh, s->bias ? g->dbh : NULL,
        O ? g->dWhy : NULL, s->bias && O ? g->dby : NULL, dy, dstate, hs, O ? y : NULL,
        p->tok ? NULL : p->x, p->tok ? p->tokens : NULL, p->has_h0 ? p->h0 : NULL, lengths,
        p->Wxh, p->Whh, O ? p->Why : NULL, da, O ? dz : NULL, grid_work(s, p->tok, 0),
        grid_chunk(s), s, grid_blas());
}

/* Compare two gradient sets exactly, on the buffers the call wrote. */
static void check_grads_equal(const char *ctx, const char *what, const prob *p,
                              const grads *got, const grads *want, int with_dx)
{
    char name[96];
#define CMP(field, cnt, label)                                           \
    do {                                                                 \
        snprintf(name, sizeof name, "%s %s", what, label);               \
        check_equal(ctx, name, got->field, want->field, got->cnt);       \
    } while (0)
    if (with_dx && !p->tok) CMP(dx, ndx, "dx");
    CMP(dh0, ndh0, "dh0");
    CMP(dWxh, nWxh, "dW_xh");
    CMP(dWhh, nWhh, "dW_hh");
    if (p->s.bias) CMP(dbh, nbh, "db_h");
    if (p->s.O) CMP(dWhy, nWhy, "dW_hy");
    if (p->s.bias && p->s.O) CMP(dby, nby, "db_y");
#undef CMP
}

/* float copies */
static float *f32_of(const double *a, size_t n)
{
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; ++i) f[i] = (float)a[i];
    return f;
}

static void f64_of(double *d, const float *a, size_t n)
{
    for (size_t i = 0; i < n; ++i) d[i] = a[i];
}

/* The float32 entry points on p's inputs rounded to float; hs, y, h_last and
 * the gradients come back as double in fhs, fy, fhl, fg. Returns the two
 * status codes or'ed. */
static int run_f32(const prob *p, double *fhs, double *fy, double *fhl, grads *fg)
{
    const crnn_shape *s = &p->s;
    const size_t TB = (size_t)s->T * s->B, H = (size_t)s->H, O = (size_t)s->O;
    const size_t nh = TB * H, ny = TB * O, nhl = (size_t)s->B * H;
    float *in = f32_of(p->blk, p->nblk);  /* same layout as p->blk */
#define F(ptr) (in + ((ptr) - p->blk))
    float *hs = xmalloc(nh * sizeof(float)), *y = xmalloc((ny + 1) * sizeof(float));
    float *hl = xmalloc(nhl * sizeof(float)), *da = xmalloc((nh + nhl) * sizeof(float));
    float *dz = xmalloc((ny + 1) * sizeof(float));
    float *g = f32_of(fg->blk, fg->n);  /* zero accumulators from the caller */
#define G(ptr) (g + ((ptr) - fg->blk))
    int rc = crnn_elman_forward_f32(hs, O ? y : NULL, hl, p->tok ? NULL : F(p->x),
                                    p->tok ? p->tokens : NULL, p->has_h0 ? F(p->h0) : NULL,
                                    p->lengths, F(p->Wxh), F(p->Whh), s->bias ? F(p->bh) : NULL,
                                    O ? F(p->Why) : NULL, s->bias && O ? F(p->by) : NULL,
                                    grid_work(s, p->tok, 1), s, GRID_BLAS);
    rc |= crnn_elman_backward_f32(
        p->tok ? NULL : G(fg->dx), G(fg->dh0), G(fg->dWxh), G(fg->dWhh),
        s->bias ? G(fg->dbh) : NULL, O ? G(fg->dWhy) : NULL, s->bias && O ? G(fg->dby) : NULL,
        F(p->dy), F(p->dstate), hs, O ? y : NULL, p->tok ? NULL : F(p->x),
        p->tok ? p->tokens : NULL, p->has_h0 ? F(p->h0) : NULL, p->lengths, F(p->Wxh),
        F(p->Whh), O ? F(p->Why) : NULL, da, O ? dz : NULL, grid_work(s, p->tok, 1),
        grid_chunk(s), s, grid_blas());
#undef F
#undef G
    f64_of(fhs, hs, nh);
    f64_of(fy, y, ny);
    f64_of(fhl, hl, nhl);
    f64_of(fg->blk, g, fg->n);
    free(in);
    free(hs);
    free(y);
    free(hl);
    free(da);
    free(dz);
    free(g);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* One configuration, checked every way                                       */

static void test_config(const crnn_shape *shape, int tok, int has_h0, int len_mode,
                        uint64_t seed, int do_fd)
{
    prob p;
    memset(&p, 0, sizeof p);
    p.s = *shape;
    p.tok = tok;
    p.has_h0 = has_h0;
    p.len_mode = len_mode;
    prob_alloc(&p);
    rng_t r = {seed};
    prob_fill(&p, &r);
    char ctx[320];
    describe(ctx, sizeof ctx, &p);

    const crnn_shape *s = &p.s;
    const int T = s->T, B = s->B, H = s->H, O = s->O;
    const size_t TB = (size_t)T * B, nh = TB * H, ny = TB * O, nhl = (size_t)B * H;
    const size_t W = out_width(s);
    const double *h0eff = has_h0 ? p.h0 : p.h0zero;  /* what the oracle starts from */

    /* --- forward vs the naive oracle --- */
    double *ohs = xmalloc(nh * sizeof(double)), *oy = xmalloc((ny + 1) * sizeof(double));
    double *ohl = xmalloc(nhl * sizeof(double));
    naive_forward(ohs, oy, ohl, &p, h0eff);

    double *hs = xmalloc(nh * sizeof(double)), *y = xmalloc((ny + 1) * sizeof(double));
    double *hl = xmalloc(nhl * sizeof(double));
    fill(hs, nh, NAN);
    fill(y, ny, NAN);
    fill(hl, nhl, NAN);
    int rc = fwd64(&p, hs, y, hl, p.lengths);
    check(rc == CRNN_OK, "%s: forward_f64 returned %d", ctx, rc);
    check_close(ctx, "forward hs", hs, ohs, nh, FWD_TOL, 1);
    if (O) check_close(ctx, "forward y", y, oy, ny, FWD_TOL, 1);
    check_close(ctx, "forward h_last", hl, ohl, nhl, FWD_TOL, 1);
    {
        int ok = 1;
        for (int t = 0; t < T; ++t)
            for (int b = 0; b < B; ++b) {
                if (valid(&p, t, b)) continue;
                for (int j = 0; j < H; ++j) ok &= hs[((size_t)t * B + b) * H + j] == 0;
                for (int k = 0; k < O; ++k) ok &= y[((size_t)t * B + b) * O + k] == 0;
            }
        check(ok, "%s: hs or y not exactly 0 at a padded step", ctx);
    }

    double *snap = xmalloc(p.nblk * sizeof(double));
    int64_t *isnap = xmalloc(p.niblk * sizeof(int64_t));
    memcpy(snap, p.blk, p.nblk * sizeof(double));
    memcpy(isnap, p.iblk, p.niblk * sizeof(int64_t));
    double *hs_snap = xmalloc(nh * sizeof(double)), *y_snap = xmalloc((ny + 1) * sizeof(double));
    memcpy(hs_snap, hs, nh * sizeof(double));
    memcpy(y_snap, y, ny * sizeof(double));

    /* --- backward vs finite differences --- */
    double *da = xmalloc((nh + nhl) * sizeof(double)), *dz = xmalloc((ny + 1) * sizeof(double));
    grads g1, g2, g3;
    grads_alloc(&g1, s);
    grads_alloc(&g2, s);
    grads_alloc(&g3, s);
    grads_reset(&g1, 0);
    fill(da, nh + nhl, NAN);
    fill(dz, ny, NAN);
    rc = bwd64(&p, &g1, 1, p.dy, p.dstate, hs, y, p.lengths, da, dz);
    check(rc == CRNN_OK, "%s: backward_f64 returned %d", ctx, rc);
    if (do_fd) {
        scratch w = {ohs, oy, ohl};  /* the oracle's buffers, reused */
        double *h0var = has_h0 ? p.h0 : p.h0zero;
        if (!tok) check_fd(ctx, "x", &p, h0var, p.x, g1.ndx, g1.dx, &w);
        check_fd(ctx, "h0", &p, h0var, h0var, g1.ndh0, g1.dh0, &w);
        check_fd(ctx, "W_xh", &p, h0var, p.Wxh, g1.nWxh, g1.dWxh, &w);
        check_fd(ctx, "W_hh", &p, h0var, p.Whh, g1.nWhh, g1.dWhh, &w);
        if (s->bias) check_fd(ctx, "b_h", &p, h0var, p.bh, g1.nbh, g1.dbh, &w);
        if (O) check_fd(ctx, "W_hy", &p, h0var, p.Why, g1.nWhy, g1.dWhy, &w);
        if (O && s->bias) check_fd(ctx, "b_y", &p, h0var, p.by, g1.nby, g1.dby, &w);
    }
    if (!tok) {
        int ok = 1;
        for (int t = 0; t < T; ++t)
            for (int b = 0; b < B; ++b)
                if (!valid(&p, t, b))
                    for (int d = 0; d < s->D; ++d) ok &= g1.dx[((size_t)t * B + b) * s->D + d] == 0;
        check(ok, "%s: dx not exactly 0 at a padded step", ctx);
    }

    /* --- a second backward accumulates: 2x the parameter gradients; dx and
     * dh0 are overwritten with the same values --- */
    memcpy(g2.blk, g1.blk, g1.n * sizeof(double));
    fill(g2.dx, g2.ndx + g2.ndh0, NAN);
    rc = bwd64(&p, &g2, 1, p.dy, p.dstate, hs, y, p.lengths, da, dz);
    check(rc == CRNN_OK, "%s: second backward_f64 returned %d", ctx, rc);
    {
        double *twice = xmalloc(g1.n * sizeof(double));
        for (size_t i = 0; i < g1.n; ++i) twice[i] = 2 * g1.blk[i];
        size_t off = g1.ndx + g1.ndh0, n = g1.nWxh + g1.nWhh;
        if (s->bias) n += g1.nbh;
        check_close(ctx, "second backward accumulates dW_xh, dW_hh, db_h", g2.blk + off,
                    twice + off, n, ACC_TOL, 1);
        if (O) {
            off = g1.ndx + g1.ndh0 + g1.nWxh + g1.nWhh + g1.nbh;
            check_close(ctx, "second backward accumulates dW_hy, db_y", g2.blk + off,
                        twice + off, g1.nWhy + (s->bias ? g1.nby : 0), ACC_TOL, 1);
        }
        if (!tok) check_equal(ctx, "second backward dx", g2.dx, g1.dx, g1.ndx);
        check_equal(ctx, "second backward dh0", g2.dh0, g1.dh0, g1.ndh0);
        free(twice);
    }

    /* --- NaN in dy at padded steps changes nothing --- */
    if (p.lengths) {
        double *dyn = xmalloc(TB * W * sizeof(double));
        memcpy(dyn, p.dy, TB * W * sizeof(double));
        for (int t = 0; t < T; ++t)
            for (int b = 0; b < B; ++b)
                if (!valid(&p, t, b)) fill(dyn + ((size_t)t * B + b) * W, W, NAN);
        grads_reset(&g3, 0);
        rc = bwd64(&p, &g3, 1, dyn, p.dstate, hs, y, p.lengths, da, dz);
        check(rc == CRNN_OK, "%s: backward_f64 (NaN padding in dy) returned %d", ctx, rc);
        check_grads_equal(ctx, "NaN dy padding:", &p, &g3, &g1, 1);
        free(dyn);
    }

    /* --- dx = NULL skips dx only (the same bits, but where the chunks
     * with dx were longer, in dx's rows: then the same but for rounding;
     * the first chunk is long when T D / (D + H) steps exceed the chunk,
     * and only then, as later chunks end earlier) --- */
    if (!tok) {
        grads_reset(&g3, 0);
        rc = bwd64(&p, &g3, 0, p.dy, p.dstate, hs, y, p.lengths, da, dz);
        check(rc == CRNN_OK, "%s: backward_f64 (dx NULL) returned %d", ctx, rc);
        if (GRID_DX_CHUNK > 0 && O == 0 && (int64_t)T * s->D / (s->D + H) > grid_chunk(s))
            check_close(ctx, "dx NULL: dh0 and the parameter gradients", g3.blk + g3.ndx,
                        g1.blk + g1.ndx, g1.n - g1.ndx, ACC_TOL, 1);
        else
            check_grads_equal(ctx, "dx NULL:", &p, &g3, &g1, 0);
    }

    /* --- dstate = NULL means zeros --- */
    {
        double *zeros = xmalloc(nhl * sizeof(double));
        fill(zeros, nhl, 0);
        grads_reset(&g2, 0);
        grads_reset(&g3, 0);
        rc = bwd64(&p, &g2, 1, p.dy, NULL, hs, y, p.lengths, da, dz);
        rc |= bwd64(&p, &g3, 1, p.dy, zeros, hs, y, p.lengths, da, dz);
        check(rc == CRNN_OK, "%s: backward_f64 (dstate NULL / 0) returned %d", ctx, rc);
        check_grads_equal(ctx, "dstate NULL vs zeros:", &p, &g2, &g3, 1);
        free(zeros);
    }

    /* --- lengths all T is the same as lengths NULL --- */
    if (len_mode == 1) {
        double *hs2 = xmalloc(nh * sizeof(double)), *y2 = xmalloc((ny + 1) * sizeof(double));
        double *hl2 = xmalloc(nhl * sizeof(double));
        rc = fwd64(&p, hs2, y2, hl2, NULL);
        check(rc == CRNN_OK, "%s: forward_f64 (lengths NULL) returned %d", ctx, rc);
        check_equal(ctx, "lengths NULL vs all T: hs", hs2, hs, nh);
        if (O) check_equal(ctx, "lengths NULL vs all T: y", y2, y, ny);
        check_equal(ctx, "lengths NULL vs all T: h_last", hl2, hl, nhl);
        grads_reset(&g3, 0);
        rc = bwd64(&p, &g3, 1, p.dy, p.dstate, hs, y, NULL, da, dz);
        check(rc == CRNN_OK, "%s: backward_f64 (lengths NULL) returned %d", ctx, rc);
        check_grads_equal(ctx, "lengths NULL vs all T:", &p, &g3, &g1, 1);
        free(hs2);
        free(y2);
        free(hl2);
    }

    /* --- inputs are never written --- */
    check(memcmp(snap, p.blk, p.nblk * sizeof(double)) == 0 &&
              memcmp(isnap, p.iblk, p.niblk * sizeof(int64_t)) == 0 &&
              memcmp(hs_snap, hs, nh * sizeof(double)) == 0 &&
              memcmp(y_snap, y, ny * sizeof(double)) == 0,
          "%s: an input buffer was modified", ctx);

    /* --- float32 agrees with float64 --- */
    {
        double *fhs = xmalloc(nh * sizeof(double)), *fy = xmalloc((ny + 1) * sizeof(double));
        double *fhl = xmalloc(nhl * sizeof(double));
        grads fg;
        grads_alloc(&fg, s);
        fill(fg.blk, fg.n, 0);
        rc = run_f32(&p, fhs, fy, fhl, &fg);
        check(rc == CRNN_OK, "%s: f32 entry points returned %d", ctx, rc);
        check_f32(ctx, "f32 hs", fhs, hs, nh);
        if (O) check_f32(ctx, "f32 y", fy, y, ny);
        check_f32(ctx, "f32 h_last", fhl, hl, nhl);
        if (!tok) check_f32(ctx, "f32 dx", fg.dx, g1.dx, g1.ndx);
        check_f32(ctx, "f32 dh0", fg.dh0, g1.dh0, g1.ndh0);
        check_f32(ctx, "f32 dW_xh", fg.dWxh, g1.dWxh, g1.nWxh);
        check_f32(ctx, "f32 dW_hh", fg.dWhh, g1.dWhh, g1.nWhh);
        if (s->bias) check_f32(ctx, "f32 db_h", fg.dbh, g1.dbh, g1.nbh);
        if (O) check_f32(ctx, "f32 dW_hy", fg.dWhy, g1.dWhy, g1.nWhy);
        if (O && s->bias)
            check_f32(ctx, "f32 db_y", fg.dby, g1.dby, g1.nby);
        free(fhs);
        free(fy);
        free(fhl);
        free(fg.blk);
    }

    free(ohs);
    free(oy);
    free(ohl);
    free(hs);
    free(y);
    free(hl);
    free(snap);
    free(isnap);
    free(hs_snap);
    free(y_snap);
    free(da);
    free(dz);
    free(g1.blk);
    free(g2.blk);
    free(g3.blk);
    prob_free(&p);
}

/* Every hidden activation x output (none, or each g with O > 0) x bias x
 * reverse x h0 x lengths x input kind, for each shape. Finite differences on
 * every fd_every-th configuration (the stride is coprime to the grid's
 * factors, so every option meets finite differences). */
static void test_grid(void)
{
    static const int shapes[][5] = {
        /* T  B  D  H  O */
        {1, 1, 1, 1, 1},
        {3, 1, 1, 1, 2},
        {1, 3, 2, 3, 2},
        {4, 2, 3, 1, 3},
        {5, 1, 2, 3, 1},
        {2, 2, 2, 2, 2},
        {7, 3, 5, 4, 3},
        {6, 4, 1, 5, 4},
        {2, 1, 9, 3, 2},  /* 4 T*B < D: token input without the table */
    };
    uint64_t seed = 20240601;
    long idx = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
        const int *sh = shapes[si];
        const int fd_every = sh[0] * sh[1] * sh[2] * sh[3] > 30 ? 7 : 1;
        for (int act = CRNN_IDENTITY; act <= CRNN_SIGMOID; ++act)
            for (int out = -1; out <= CRNN_SOFTMAX; ++out)  /* -1: O = 0 */
                for (int bias = 0; bias <= 1; ++bias)
                    for (int rev = 0; rev <= 1; ++rev)
                        for (int has_h0 = 0; has_h0 <= 1; ++has_h0)
                            for (int len_mode = 0; len_mode <= 3; ++len_mode)
                                for (int tok = 0; tok <= 1; ++tok) {
                                    crnn_shape s = {.T = sh[0], .B = sh[1], .D = sh[2],
                                                    .H = sh[3], .O = out < 0 ? 0 : sh[4],
                                                    .activation = act,
                                                    .output_activation =
                                                        out < 0 ? CRNN_IDENTITY : out,
                                                    .reverse = rev, .bias = bias};
                                    test_config(&s, tok, has_h0, len_mode, seed++,
                                                idx++ % fd_every == 0);
                                }
    }
}

/* The packed time-loop products (work given) against the BLAS ones (work
 * NULL) on shapes the grid's small ones miss: full and partial 6-row
 * slivers and 16/8-column panels, 1-3 rows left over after the 6-row blocks
 * (pg_thin: 4 or 2 panels at a time, fewer in the last group), and long K.
 * Only the summation order differs, so float64 agrees to 1e-12 of each
 * array's scale and float32 to 1e-5. Without AVX2+FMA both sides are BLAS.
 * Each way again on two threads (PAR_BLAS: the time loops split into two
 * halves of the batch when B >= 4, every product and token gather split): the same bits as
 * on one thread. */
static void test_packed(void)
{
    static const int shapes[][4] = {
        /* T  B  D  H */
        {3, 2, 3, 16}, {3, 7, 3, 17}, {2, 11, 2, 33}, {2, 10, 4, 48}, {2, 9, 3, 20},
        {2, 6, 1, 260}, {2, 8, 2, 300}, {16, 9, 3, 20},
        /* rows left after the 6-row blocks: 3, 1, 2 (and 1 in each half of
         * 14), against 1 to 13 panels; 4 and 5 rows in one block */
        {2, 3, 2, 40}, {2, 13, 2, 100}, {2, 14, 3, 40}, {2, 4, 1, 9}, {2, 5, 2, 24},
        /* B = 1: one to four panels per group, a partial last panel */
        {3, 1, 2, 17}, {2, 1, 3, 100}, {2, 1, 2, 64}, {2, 1, 2, 40}, {2, 1, 1, 300},
        /* B < 4 with several chunks in each half of da (pipelined on two threads) */
        {13, 1, 3, 20}, {11, 3, 2, 33},
        /* a chunk's dW_hh beside its dW_xh and dx on two threads (D = H/2),
         * and beside half of dW_xh's rows (D = H = 2 * CRNN_SPLIT_ALIGN) */
        {3, 7, 10, 20}, {5, 6, 24, 48}, {3, 6, 48, 48},
    };
    uint64_t seed = 4242;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si)
        for (int rev = 0; rev <= 1; ++rev) {
            const int *sh = shapes[si];
            prob p;
            memset(&p, 0, sizeof p);
            crnn_shape s = {.T = sh[0], .B = sh[1], .D = sh[2], .H = sh[3], .O = 0,
                            .activation = CRNN_TANH, .output_activation = CRNN_IDENTITY,
                            .reverse = rev, .bias = 1};
            p.s = s;
            p.tok = (int)(si + rev) % 2;  /* token ids in every other case */
            p.has_h0 = 1;
            p.len_mode = 3;
            prob_alloc(&p);
            rng_t r = {seed++};
            /* as prob_fill, whose naive-forward check handles H <= MAXW only */
            fill_unif(p.blk, p.nblk, &r, -1, 1);
            for (size_t i = 0; i < (size_t)s.T * s.B; ++i) p.tokens[i] = rng_int(&r, 0, s.D - 1);
            const double k = 1 / sqrt((double)s.H);
            for (size_t j = 0; j < (size_t)s.H * s.D; ++j) p.Wxh[j] *= k;
            for (size_t j = 0; j < (size_t)s.H * s.H; ++j) p.Whh[j] *= k;
            make_lengths(&p, &r);
            const size_t nh = (size_t)s.T * s.B * s.H, nhl = (size_t)s.B * s.H;
            double *hs[4], *hl[4], *da = xmalloc((nh + nhl) * sizeof(double));
            grads g[4];
            int rc = 0;
            for (int w = 0; w < 4; ++w) {  /* work: w odd; split: w >= 2 */
                hs[w] = xmalloc(nh * sizeof(double));
                hl[w] = xmalloc(nhl * sizeof(double));
                grads_alloc(&g[w], &s);
                grads_reset(&g[w], 0);
                GRID_WORK = w % 2;
                GRID_BLAS = w >= 2 ? &PAR_BLAS : &REF_BLAS;
                rc |= fwd64(&p, hs[w], NULL, hl[w], p.lengths);
                rc |= bwd64(&p, &g[w], 1, p.dy, p.dstate, hs[w], NULL, p.lengths, da, NULL);
            }
            GRID_BLAS = &REF_BLAS;
            /* float32: the packed run against the float64 BLAS one */
            double *fhs = xmalloc(nh * sizeof(double)), *fhl = xmalloc(nhl * sizeof(double));
            double fy[1];
            grads fg;
            grads_alloc(&fg, &s);
            grads_reset(&fg, 0);
            GRID_WORK = 1;
            rc |= run_f32(&p, fhs, fy, fhl, &fg);
            GRID_WORK = 0;
            char ctx[160];
            describe(ctx, sizeof ctx, &p);
            check(rc == CRNN_OK, "%s: packed: a call returned an error", ctx);
            check_close(ctx, "packed hs", hs[1], hs[0], nh, 1e-12, 1);
            check_close(ctx, "packed h_last", hl[1], hl[0], nhl, 1e-12, 1);
            if (!p.tok) check_close(ctx, "packed dx", g[1].dx, g[0].dx, g[0].ndx, 1e-12, 1);
            check_close(ctx, "packed dh0", g[1].dh0, g[0].dh0, g[0].ndh0, 1e-12, 1);
            check_close(ctx, "packed dW_xh", g[1].dWxh, g[0].dWxh, g[0].nWxh, 1e-12, 10);
            check_close(ctx, "packed dW_hh", g[1].dWhh, g[0].dWhh, g[0].nWhh, 1e-12, 10);
            check_close(ctx, "packed db_h", g[1].dbh, g[0].dbh, g[0].nbh, 1e-12, 10);
            check_f32(ctx, "packed f32 hs", fhs, hs[0], nh);
            check_f32(ctx, "packed f32 dW_hh", fg.dWhh, g[0].dWhh, g[0].nWhh);
            check_f32(ctx, "packed f32 dh0", fg.dh0, g[0].dh0, g[0].ndh0);
            for (int w = 2; w < 4; ++w) {
                char sctx[200];
                snprintf(sctx, sizeof sctx, "%s, split, %s", ctx, w == 3 ? "packed" : "BLAS");
                check_equal(sctx, "hs", hs[w], hs[w - 2], nh);
                check_equal(sctx, "h_last", hl[w], hl[w - 2], nhl);
                check_grads_equal(sctx, "backward", &p, &g[w], &g[w - 2], 1);
            }
            for (int w = 0; w < 4; ++w) {
                free(hs[w]);
                free(hl[w]);
                free(g[w].blk);
            }
            free(fhs);
            free(fhl);
            free(fg.blk);
            free(da);
            prob_free(&p);
        }
}

/* ------------------------------------------------------------------------ */
/* Error paths: every status code, for both dtypes, forward and backward      */

enum { F_HS, F_Y, F_HL, F_X, F_TOK, F_H0, F_LEN, F_WXH, F_WHH, F_BH, F_WHY, F_BY, F_N };
enum {
    B_DX, B_DH0, B_DWXH, B_DWHH, B_DBH, B_DWHY, B_DBY, B_DY, B_DST, B_HS, B_Y, B_X, B_TOK,
    B_H0, B_LEN, B_WXH, B_WHH, B_WHY, B_DA, B_DZ, B_N
};
static const char *F_NAMES[F_N] = {"hs", "y", "h_last", "x", "tokens", "h0",
                                   "lengths", "W_xh", "W_hh", "b_h", "W_hy", "b_y"};
static const char *B_NAMES[B_N] = {"dx", "dh0", "dW_xh", "dW_hh", "db_h", "dW_hy", "db_y",
                                   "dy", "dstate", "hs", "y", "x", "tokens", "h0",
                                   "lengths", "W_xh", "W_hh", "W_hy", "da", "dz"};
static const int F_OUT[] = {F_HS, F_Y, F_HL};
static const int B_OUT[] = {B_DX, B_DH0, B_DWXH, B_DWHH, B_DBH, B_DWHY, B_DBY};

#define SENTINEL 0xA5  /* byte pattern the outputs hold before a failing call */
#define ERR_T 3
#define ERR_B 2
#define ERR_D 3
#define ERR_H 2
#define ERR_O 2
#define ERR_MAXN (ERR_T * ERR_B * 3)  /* the largest buffer: T*B*max(D,H,O) */
#define ERR_BYTES (ERR_MAXN * sizeof(double))

typedef struct {
    int f32;
    unsigned char *buf[B_N];  /* every buffer (forward's too), ERR_BYTES each, malloc'd */
    int64_t tokens[ERR_T * ERR_B], lengths[ERR_B];
    void *fp[F_N], *bp[B_N];
    crnn_shape s;
    crnn_blas blas;
    int chunk;  /* the backward's */
} err_case;

/* A valid problem: dense x, bias, O > 0, h0, lengths {T, 1}. */
static void err_reset(err_case *e, int f32)
{
    rng_t r = {777};
    e->f32 = f32;
    for (int i = 0; i < B_N; ++i)
        if (!e->buf[i]) e->buf[i] = xmalloc(ERR_BYTES);
    for (int i = 0; i < B_N; ++i)
        for (int k = 0; k < ERR_MAXN; ++k) {
            double v = rng_unif(&r, -1, 1);
            if (f32) ((float *)e->buf[i])[k] = (float)v;
            else ((double *)e->buf[i])[k] = v;
        }
    for (int i = 0; i < ERR_T * ERR_B; ++i) e->tokens[i] = i % ERR_D;
    e->lengths[0] = ERR_T;
    e->lengths[1] = 1;
    for (int i = 0; i < F_N; ++i) e->fp[i] = e->buf[i];
    e->fp[F_TOK] = NULL;
    e->fp[F_LEN] = e->lengths;
    for (int i = 0; i < B_N; ++i) e->bp[i] = e->buf[i];
    e->bp[B_TOK] = NULL;
    e->bp[B_LEN] = e->lengths;
    crnn_shape s = {.T = ERR_T, .B = ERR_B, .D = ERR_D, .H = ERR_H, .O = ERR_O,
                    .activation = CRNN_TANH, .output_activation = CRNN_SIGMOID,
                    .reverse = 1, .bias = 1};
    e->s = s;
    e->blas = REF_BLAS;
    e->chunk = 2;  /* two chunks of steps, the second one short */
}

static void use_tokens(err_case *e)
{
    e->fp[F_X] = e->bp[B_X] = NULL;
    e->fp[F_TOK] = e->bp[B_TOK] = e->tokens;
    e->bp[B_DX] = NULL;
}

static int call_fwd(err_case *e, const crnn_shape *s, const crnn_blas *blas)
{
    void **p = e->fp;
    if (e->f32)
        return crnn_elman_forward_f32(p[F_HS], p[F_Y], p[F_HL], p[F_X], p[F_TOK], p[F_H0],
                                      p[F_LEN], p[F_WXH], p[F_WHH], p[F_BH], p[F_WHY],
                                      p[F_BY], NULL, s, blas);
    return crnn_elman_forward_f64(p[F_HS], p[F_Y], p[F_HL], p[F_X], p[F_TOK], p[F_H0],
                                  p[F_LEN], p[F_WXH], p[F_WHH], p[F_BH], p[F_WHY], p[F_BY],
                                  NULL, s, blas);
}

static int call_bwd(err_case *e, const crnn_shape *s, const crnn_blas *blas)
{
    void **p = e->bp;
    if (e->f32)
        return crnn_elman_backward_f32(p[B_DX], p[B_DH0], p[B_DWXH], p[B_DWHH], p[B_DBH],
                                       p[B_DWHY], p[B_DBY], p[B_DY], p[B_DST], p[B_HS],
                                       p[B_Y], p[B_X], p[B_TOK], p[B_H0], p[B_LEN], p[B_WXH],
                                       p[B_WHH], p[B_WHY], p[B_DA], p[B_DZ], NULL, e->chunk, s,
                                       blas);
    return crnn_elman_backward_f64(p[B_DX], p[B_DH0], p[B_DWXH], p[B_DWHH], p[B_DBH],
                                   p[B_DWHY], p[B_DBY], p[B_DY], p[B_DST], p[B_HS], p[B_Y],
                                   p[B_X], p[B_TOK], p[B_H0], p[B_LEN], p[B_WXH], p[B_WHH],
                                   p[B_WHY], p[B_DA], p[B_DZ], NULL, e->chunk, s, blas);
}

static int untouched(const unsigned char *b)
{
    for (size_t i = 0; i < ERR_BYTES; ++i)
        if (b[i] != SENTINEL) return 0;
    return 1;
}

/* Forward and backward on e with (s, blas) both return want; on an error,
 * no output buffer was written. */
static void expect(err_case *e, const crnn_shape *s, const crnn_blas *blas, int want,
                   const char *what)
{
    const char *dt = e->f32 ? "f32" : "f64";
    unsigned char save[B_N][ERR_BYTES];
    for (int i = 0; i < B_N; ++i) memcpy(save[i], e->buf[i], ERR_BYTES);
    for (int pass = 0; pass < 2; ++pass) {
        const int *outs = pass ? B_OUT : F_OUT;
        const int nout = pass ? (int)(sizeof B_OUT / sizeof *B_OUT) : 3;
        if (want != CRNN_OK)
            for (int i = 0; i < nout; ++i) memset(e->buf[outs[i]], SENTINEL, ERR_BYTES);
        int rc = pass ? call_bwd(e, s, blas) : call_fwd(e, s, blas);
        check(rc == want, "errors: %s %s, %s: returned %d, want %d", pass ? "backward" : "forward",
              dt, what, rc, want);
        if (want != CRNN_OK) {
            int ok = 1;
            for (int i = 0; i < nout; ++i) ok &= untouched(e->buf[outs[i]]);
            check(ok, "errors: %s %s, %s: an output buffer was written after error %d",
                  pass ? "backward" : "forward", dt, what, rc);
        }
        for (int i = 0; i < B_N; ++i) memcpy(e->buf[i], save[i], ERR_BYTES);
    }
}

static void test_errors_dtype(int f32)
{
    static err_case e;  /* large: keep it off the stack */
    char what[128];
    crnn_shape s;

    err_reset(&e, f32);
    expect(&e, &e.s, &e.blas, CRNN_OK, "valid dense problem");
    use_tokens(&e);
    expect(&e, &e.s, &e.blas, CRNN_OK, "valid token problem");

    /* CRNN_ESIZE: sizes < 1, O < 0, and products beyond int */
    static const struct {
        int T, B, D, H, O;
        const char *what;
    } sizes[] = {
        {0, ERR_B, ERR_D, ERR_H, ERR_O, "T = 0"},      {-1, ERR_B, ERR_D, ERR_H, ERR_O, "T = -1"},
        {ERR_T, 0, ERR_D, ERR_H, ERR_O, "B = 0"},      {ERR_T, ERR_B, 0, ERR_H, ERR_O, "D = 0"},
        {ERR_T, ERR_B, ERR_D, 0, ERR_O, "H = 0"},      {ERR_T, ERR_B, ERR_D, ERR_H, -1, "O = -1"},
        {65536, 32768, 1, 1, 0, "T*B beyond int"},
        {1, 1, 1, 50000, 0, "H*H beyond int"},         {2, 1, 1, 1, 1 << 30, "T*B*O beyond int"},
        {1, 65536, 32768, 1, 0, "T*B*D beyond int"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
        err_reset(&e, f32);
        s = e.s;
        s.T = sizes[i].T;
        s.B = sizes[i].B;
        s.D = sizes[i].D;
        s.H = sizes[i].H;
        s.O = sizes[i].O;
        expect(&e, &s, &e.blas, CRNN_ESIZE, sizes[i].what);
    }
    /* the backward's chunk: < 1 is CRNN_ESIZE before anything is written,
     * beyond T means all T steps at once */
    for (int c = 0; c >= -1; --c) {
        err_reset(&e, f32);
        e.chunk = c;
        const int nout = (int)(sizeof B_OUT / sizeof *B_OUT);
        for (int i = 0; i < nout; ++i) memset(e.buf[B_OUT[i]], SENTINEL, ERR_BYTES);
        int rc = call_bwd(&e, &e.s, &e.blas), ok = 1;
        for (int i = 0; i < nout; ++i) ok &= untouched(e.buf[B_OUT[i]]);
        check(rc == CRNN_ESIZE && ok, "errors: backward %s, chunk = %d: returned %d (want %d), "
              "outputs %s", f32 ? "f32" : "f64", c, rc, CRNN_ESIZE, ok ? "untouched" : "written");
    }
    err_reset(&e, f32);
    e.chunk = 1000;
    expect(&e, &e.s, &e.blas, CRNN_OK, "chunk beyond T");

    /* CRNN_EACT */
    static const struct {
        int f, g;
        const char *what;
    } acts[] = {
        {-1, CRNN_IDENTITY, "activation -1"},
        {CRNN_SOFTMAX + 1, CRNN_IDENTITY, "activation 5"},
        {CRNN_SOFTMAX, CRNN_IDENTITY, "softmax as hidden activation"},
        {CRNN_TANH, -1, "output_activation -1"},
        {CRNN_TANH, CRNN_SOFTMAX + 1, "output_activation 5"},
        {CRNN_TANH, 1000, "output_activation 1000"},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; ++i) {
        err_reset(&e, f32);
        s = e.s;
        s.activation = acts[i].f;
        s.output_activation = acts[i].g;
        expect(&e, &s, &e.blas, CRNN_EACT, acts[i].what);
    }

    /* CRNN_ETOKEN: -1 and D, at a valid and at a padded position */
    static const struct {
        int pos;
        int64_t id;
        const char *what;
    } toks[] = {
        {0, -1, "token -1 at (0,0)"},
        {0, ERR_D, "token D at (0,0)"},
        {ERR_T * ERR_B - 1, ERR_D, "token D at a padded step"},
        {3, INT64_MIN, "token INT64_MIN"},
        {2, INT64_MAX, "token INT64_MAX"},
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; ++i) {
        err_reset(&e, f32);
        use_tokens(&e);
        e.tokens[toks[i].pos] = toks[i].id;
        expect(&e, &e.s, &e.blas, CRNN_ETOKEN, toks[i].what);
    }

    /* CRNN_ELENGTH: -1 and T+1 */
    static const struct {
        int b;
        int64_t len;
        const char *what;
    } lens[] = {
        {0, -1, "length -1"},
        {1, ERR_T + 1, "length T+1"},
        {1, INT64_MAX, "length INT64_MAX"},
        {0, INT64_MIN, "length INT64_MIN"},
    };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; ++i) {
        for (int tok = 0; tok <= 1; ++tok) {
            err_reset(&e, f32);
            if (tok) use_tokens(&e);
            e.lengths[lens[i].b] = lens[i].len;
            snprintf(what, sizeof what, "%s (%s input)", lens[i].what, tok ? "token" : "dense");
            expect(&e, &e.s, &e.blas, CRNN_ELENGTH, what);
        }
    }

    /* CRNN_ENULL: the shape, the BLAS struct, and each required buffer */
    err_reset(&e, f32);
    expect(&e, NULL, &e.blas, CRNN_ENULL, "shape NULL");
    expect(&e, &e.s, NULL, CRNN_ENULL, "blas NULL");
    static const int f_req[] = {F_HS, F_Y, F_HL, F_X, F_WXH, F_WHH, F_BH, F_WHY, F_BY};
    static const int b_req[] = {B_DH0, B_DWXH, B_DWHH, B_DBH, B_DWHY, B_DBY, B_DY, B_HS,
                                B_Y,   B_X,    B_WXH,  B_WHH, B_WHY,  B_DA,  B_DZ};
    for (size_t i = 0; i < sizeof b_req / sizeof b_req[0]; ++i) {
        err_reset(&e, f32);
        e.bp[b_req[i]] = NULL;
        snprintf(what, sizeof what, "%s NULL", B_NAMES[b_req[i]]);
        int rc;
        /* sentinel on the outputs, as in expect(), but only the backward */
        for (size_t k = 0; k < sizeof B_OUT / sizeof *B_OUT; ++k)
            memset(e.buf[B_OUT[k]], SENTINEL, ERR_BYTES);
        rc = call_bwd(&e, &e.s, &e.blas);
        check(rc == CRNN_ENULL, "errors: backward %s, %s: returned %d, want %d",
              f32 ? "f32" : "f64", what, rc, CRNN_ENULL);
        int ok = 1;
        for (size_t k = 0; k < sizeof B_OUT / sizeof *B_OUT; ++k) ok &= untouched(e.buf[B_OUT[k]]);
        check(ok, "errors: backward %s, %s: an output buffer was written", f32 ? "f32" : "f64",
              what);
    }
    for (size_t i = 0; i < sizeof f_req / sizeof f_req[0]; ++i) {
        err_reset(&e, f32);
        e.fp[f_req[i]] = NULL;
        for (int k = 0; k < 3; ++k) memset(e.buf[F_OUT[k]], SENTINEL, ERR_BYTES);
        int rc = call_fwd(&e, &e.s, &e.blas);
        check(rc == CRNN_ENULL, "errors: forward %s, %s NULL: returned %d, want %d",
              f32 ? "f32" : "f64", F_NAMES[f_req[i]], rc, CRNN_ENULL);
        int ok = 1;
        for (int k = 0; k < 3; ++k) ok &= untouched(e.buf[F_OUT[k]]);
        check(ok, "errors: forward %s, %s NULL: an output buffer was written",
              f32 ? "f32" : "f64", F_NAMES[f_req[i]]);
    }
    err_reset(&e, f32);
    e.fp[F_X] = e.bp[B_X] = NULL;  /* neither x nor tokens */
    expect(&e, &e.s, &e.blas, CRNN_ENULL, "x and tokens both NULL");

    /* Optional buffers may be NULL */
    err_reset(&e, f32);
    e.fp[F_H0] = e.bp[B_H0] = NULL;
    e.fp[F_LEN] = e.bp[B_LEN] = NULL;
    e.bp[B_DX] = e.bp[B_DST] = NULL;
    expect(&e, &e.s, &e.blas, CRNN_OK, "h0, lengths, dx, dstate NULL");
    err_reset(&e, f32);
    s = e.s;
    s.bias = 0;
    e.fp[F_BH] = e.fp[F_BY] = e.bp[B_DBH] = e.bp[B_DBY] = NULL;
    expect(&e, &s, &e.blas, CRNN_OK, "bias = 0 with b_h, b_y, db_h, db_y NULL");
    err_reset(&e, f32);
    s = e.s;
    s.O = 0;
    s.output_activation = CRNN_IDENTITY;
    e.fp[F_Y] = e.fp[F_WHY] = e.fp[F_BY] = NULL;
    e.bp[B_Y] = e.bp[B_WHY] = e.bp[B_DZ] = e.bp[B_DWHY] = e.bp[B_DBY] = NULL;
    expect(&e, &s, &e.blas, CRNN_OK, "O = 0 with y, W_hy, b_y, dz, dW_hy, db_y NULL");

    /* CRNN_EBLAS: only this dtype's pointer matters */
    err_reset(&e, f32);
    crnn_blas no_own = REF_BLAS, no_other = REF_BLAS;
    if (f32) {
        no_own.sgemm = NULL;
        no_other.dgemm = NULL;
    } else {
        no_own.dgemm = NULL;
        no_other.sgemm = NULL;
    }
    expect(&e, &e.s, &no_own, CRNN_EBLAS, "own gemm pointer NULL");
    expect(&e, &e.s, &no_other, CRNN_OK, "other dtype's gemm pointer NULL");
    for (int i = 0; i < B_N; ++i) {
        free(e.buf[i]);
        e.buf[i] = NULL;
    }
}

static void test_strerror(void)
{
    const int codes[] = {CRNN_OK,      CRNN_ESIZE, CRNN_EACT, CRNN_ETOKEN,
                         CRNN_ELENGTH, CRNN_ENULL, CRNN_EBLAS};
    const int ncodes = (int)(sizeof codes / sizeof codes[0]);
    const char *unknown = crnn_strerror(12345);
    check(unknown && unknown[0], "crnn_strerror(12345) is NULL or empty");
    const int odd[] = {1, -7, -100, 12345, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; ++i) {
        const char *m = crnn_strerror(odd[i]);
        check(m && m[0], "crnn_strerror(%d) is NULL or empty", odd[i]);
    }
    for (int i = 0; i < ncodes; ++i) {
        const char *m = crnn_strerror(codes[i]);
        check(m && m[0], "crnn_strerror(%d) is NULL or empty", codes[i]);
        if (!m || !unknown) continue;
        check(strcmp(m, unknown) != 0, "crnn_strerror(%d) is the unknown-code message", codes[i]);
        for (int k = 0; k < i; ++k) {
            const char *m2 = crnn_strerror(codes[k]);
            check(!m2 || strcmp(m, m2) != 0, "crnn_strerror(%d) == crnn_strerror(%d)", codes[i],
                  codes[k]);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Elementwise activations vs libm                                            */

/* |got - want| in units of eps * |want|, where |want| is at least tiny / eps:
 * results below the smallest normal number tiny may flush (underflow). */
static double ulps(double got, double want, double eps, double tiny)
{
    if (got == want) return 0;
    double scale = fabs(want) > tiny / eps ? fabs(want) : tiny / eps;
    return fabs(got - want) / (scale * eps);
}

static void test_activate(void)
{
    const double vals[] = {0.0,     -0.0,    1e-300,  -1e-300, 4.9e-324, -4.9e-324, 1e-40,
                           -1e-40,  1e-8,    -1e-8,   0.1,     -0.1,     0.5,       -0.5,
                           1,       -1,      2.5,     -2.5,    10,       -10,       17,
                           -17,     20,      -20,     36,      -36,      50,        -50,
                           87,      -87,     88.5,    -88.5,   89,       -89,       100,
                           -100,    700,     -700,    709,     -709,     710,       -710,
                           745,     -745,    800,     -800,    1e10,     -1e10,     1e300,
                           -1e300,  DBL_MAX, -DBL_MAX, FLT_MAX, -FLT_MAX, HUGE_VAL, -HUGE_VAL};
    const int n = (int)(sizeof vals / sizeof vals[0]);
    double in[sizeof vals / sizeof vals[0]], out[sizeof vals / sizeof vals[0]];
    float fin[sizeof vals / sizeof vals[0]], fout[sizeof vals / sizeof vals[0]];
    for (int i = 0; i < n; ++i) {
        in[i] = vals[i];
        fin[i] = (float)vals[i];  /* large values become +-inf in float */
    }
    for (int act = CRNN_IDENTITY; act <= CRNN_SIGMOID; ++act) {
        int rc = crnn_activate_f64(out, in, n, act);
        check(rc == CRNN_OK, "activate_f64(%s) returned %d", act_name(act), rc);
        rc = crnn_activate_f32(fout, fin, n, act);
        check(rc == CRNN_OK, "activate_f32(%s) returned %d", act_name(act), rc);
        double worst = 0, fworst = 0, want_at = 0, fwant_at = 0;
        int at = 0, fat = 0, exact = 1;
        for (int i = 0; i < n; ++i) {
            double x = in[i], want, fx = fin[i], fwant;
            switch (act) {
            case CRNN_TANH:
                want = tanh(x);
                fwant = tanh(fx);
                break;
            case CRNN_RELU:
                want = x > 0 ? x : 0;
                fwant = fx > 0 ? fx : 0;
                break;
            case CRNN_SIGMOID: /* long double, written differently from the core */
                want = (double)(x >= 0 ? 1 / (1 + expl(-(long double)x))
                                       : expl((long double)x) / (1 + expl((long double)x)));
                fwant = (double)(fx >= 0 ? 1 / (1 + expl(-(long double)fx))
                                         : expl((long double)fx) / (1 + expl((long double)fx)));
                break;
            default:
                want = x;
                fwant = fx;
                break;
            }
            double u = ulps(out[i], want, DBL_EPSILON, DBL_MIN);
            if (!(u <= worst)) { worst = u; at = i; want_at = want; }
            u = ulps(fout[i], fwant, FLT_EPSILON, FLT_MIN);
            if (!(u <= fworst)) { fworst = u; fat = i; fwant_at = fwant; }
            /* identity and relu are exact, with identity keeping the sign of 0 */
            if (act == CRNN_IDENTITY)
                exact &= memcmp(&out[i], &in[i], sizeof(double)) == 0 &&
                         memcmp(&fout[i], &fin[i], sizeof(float)) == 0;
            if (act == CRNN_RELU) exact &= out[i] == want && fout[i] == (float)fwant;
            /* never outside the function's range */
            if (act == CRNN_SIGMOID)
                exact &= out[i] >= 0 && out[i] <= 1 && fout[i] >= 0 && fout[i] <= 1;
            if (act == CRNN_TANH)
                exact &= out[i] >= -1 && out[i] <= 1 && fout[i] >= -1 && fout[i] <= 1;
        }
        check(worst <= 4, "activate_f64(%s)(%.17g) = %.17g, want %.17g (%.1f ulp)",
              act_name(act), in[at], out[at], want_at, worst);
        check(fworst <= 4, "activate_f32(%s)(%.9g) = %.9g, want %.9g (%.1f ulp)", act_name(act),
              (double)fin[fat], (double)fout[fat], fwant_at, fworst);
        check(exact, "activate(%s): an exact value or the range is wrong", act_name(act));
    }

    /* a log-spaced sweep of both signs, 1e-12 <= |x| < 800, against long double
     * references: within 4 ulp (results below the smallest normal may flush) */
    for (int act = CRNN_TANH; act <= CRNN_SIGMOID; act += CRNN_SIGMOID - CRNN_TANH) {
        double worst = 0, wx = 0, fworst = 0, fwx = 0;
        for (int sign = -1; sign <= 1; sign += 2)
            for (double m = 1e-12; m < 800; m *= 1.001) {
                double x = sign * m, yv;
                float xf = (float)x, yf;
                crnn_activate_f64(&yv, &x, 1, act);
                crnn_activate_f32(&yf, &xf, 1, act);
                long double lx = x, lxf = xf;
                double want = act == CRNN_TANH ? (double)tanhl(lx)
                              : (double)(x >= 0 ? 1 / (1 + expl(-lx)) : expl(lx) / (1 + expl(lx)));
                double fwant = act == CRNN_TANH
                                   ? (double)tanhl(lxf)
                                   : (double)(xf >= 0 ? 1 / (1 + expl(-lxf))
                                                      : expl(lxf) / (1 + expl(lxf)));
                double u = ulps(yv, want, DBL_EPSILON, DBL_MIN);
                if (!(u <= worst)) { worst = u; wx = x; }
                u = ulps(yf, (double)(float)fwant, FLT_EPSILON, FLT_MIN);
                if (!(u <= fworst)) { fworst = u; fwx = xf; }
            }
        check(worst <= 4, "activate_f64(%s) sweep: %.1f ulp off at x = %.17g", act_name(act),
              worst, wx);
        check(fworst <= 4, "activate_f32(%s) sweep: %.1f ulp off at x = %.9g", act_name(act),
              fworst, fwx);
    }

    /* exact values: tanh(+-inf) = +-1, tanh(+-0) = +-0, sigmoid(0) = 1/2,
     * sigmoid(+-inf) = 1/0, relu(-inf) = 0, relu(inf) = inf */
    const double sp[] = {HUGE_VAL, -HUGE_VAL, 0.0, -0.0};
    double o[4];
    float fsp[4] = {HUGE_VALF, -HUGE_VALF, 0.0f, -0.0f}, fo[4];
    crnn_activate_f64(o, sp, 4, CRNN_TANH);
    crnn_activate_f32(fo, fsp, 4, CRNN_TANH);
    check(o[0] == 1 && o[1] == -1 && o[2] == 0 && !signbit(o[2]) && o[3] == 0 && signbit(o[3]),
          "activate_f64(tanh)(inf, -inf, 0, -0) = (%g, %g, %g, %g)", o[0], o[1], o[2], o[3]);
    check(fo[0] == 1 && fo[1] == -1 && fo[2] == 0 && !signbit(fo[2]) && fo[3] == 0 &&
              signbit(fo[3]),
          "activate_f32(tanh)(inf, -inf, 0, -0) = (%g, %g, %g, %g)", (double)fo[0],
          (double)fo[1], (double)fo[2], (double)fo[3]);
    crnn_activate_f64(o, sp, 4, CRNN_SIGMOID);
    crnn_activate_f32(fo, fsp, 4, CRNN_SIGMOID);
    check(o[0] == 1 && o[1] == 0 && o[2] == 0.5 && o[3] == 0.5,
          "activate_f64(sigmoid)(inf, -inf, 0, -0) = (%g, %g, %g, %g)", o[0], o[1], o[2], o[3]);
    check(fo[0] == 1 && fo[1] == 0 && fo[2] == 0.5f && fo[3] == 0.5f,
          "activate_f32(sigmoid)(inf, -inf, 0, -0) = (%g, %g, %g, %g)", (double)fo[0],
          (double)fo[1], (double)fo[2], (double)fo[3]);
    crnn_activate_f64(o, sp, 4, CRNN_RELU);
    crnn_activate_f32(fo, fsp, 4, CRNN_RELU);
    check(o[0] == HUGE_VAL && o[1] == 0 && o[2] == 0 && o[3] == 0 && fo[0] == HUGE_VALF &&
              fo[1] == 0 && fo[2] == 0 && fo[3] == 0,
          "activate(relu)(inf, -inf, 0, -0) = (%g, %g, %g, %g)", o[0], o[1], o[2], o[3]);

    /* NaN propagates through tanh, sigmoid and identity */
    double nan_in = NAN, nan_out;
    float fnan_in = NAN, fnan_out;
    for (int act = CRNN_IDENTITY; act <= CRNN_SIGMOID; ++act) {
        if (act == CRNN_RELU) continue;  /* relu(NaN) is not specified by crnn.h */
        crnn_activate_f64(&nan_out, &nan_in, 1, act);
        crnn_activate_f32(&fnan_out, &fnan_in, 1, act);
        check(isnan(nan_out) && isnan(fnan_out), "activate(%s)(NaN) is not NaN", act_name(act));
    }

    /* in place: same results as out of place */
    for (int act = CRNN_IDENTITY; act <= CRNN_SIGMOID; ++act) {
        double buf[sizeof vals / sizeof vals[0]];
        float fbuf[sizeof vals / sizeof vals[0]];
        memcpy(buf, in, sizeof buf);
        memcpy(fbuf, fin, sizeof fbuf);
        crnn_activate_f64(out, in, n, act);
        crnn_activate_f32(fout, fin, n, act);
        int rc = crnn_activate_f64(buf, buf, n, act) | crnn_activate_f32(fbuf, fbuf, n, act);
        check(rc == CRNN_OK && memcmp(buf, out, sizeof buf) == 0 &&
                  memcmp(fbuf, fout, sizeof fbuf) == 0,
              "activate(%s) in place differs from out of place", act_name(act));
    }

    /* n = 0 writes nothing; errors write nothing */
    double sent[3] = {7, 7, 7};
    float fsent[3] = {7, 7, 7};
    check(crnn_activate_f64(sent, in, 0, CRNN_TANH) == CRNN_OK && sent[0] == 7,
          "activate_f64(n = 0) failed or wrote");
    check(crnn_activate_f32(fsent, fin, 0, CRNN_TANH) == CRNN_OK && fsent[0] == 7,
          "activate_f32(n = 0) failed or wrote");
    static const struct {
        int null_out, null_in;
        int64_t n;
        int act, want;
        const char *what;
    } bad[] = {
        {1, 0, 3, CRNN_TANH, CRNN_ENULL, "out NULL"},
        {0, 1, 3, CRNN_TANH, CRNN_ENULL, "in NULL"},
        {0, 0, -1, CRNN_TANH, CRNN_ESIZE, "n = -1"},
        {0, 0, 3, -1, CRNN_EACT, "act -1"},
        {0, 0, 3, CRNN_SOFTMAX, CRNN_EACT, "softmax"},
        {0, 0, 3, CRNN_SOFTMAX + 1, CRNN_EACT, "act 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        int rc = crnn_activate_f64(bad[i].null_out ? NULL : sent, bad[i].null_in ? NULL : in,
                                   bad[i].n, bad[i].act);
        check(rc == bad[i].want && sent[0] == 7 && sent[1] == 7 && sent[2] == 7,
              "activate_f64(%s): returned %d (want %d) or wrote", bad[i].what, rc, bad[i].want);
        rc = crnn_activate_f32(bad[i].null_out ? NULL : fsent, bad[i].null_in ? NULL : fin,
                               bad[i].n, bad[i].act);
        check(rc == bad[i].want && fsent[0] == 7 && fsent[1] == 7 && fsent[2] == 7,
              "activate_f32(%s): returned %d (want %d) or wrote", bad[i].what, rc, bad[i].want);
    }
}

/* ------------------------------------------------------------------------ */
/* crnn_all_finite against isfinite                                          */

/* crnn_all_finite_f64 on a, or crnn_all_finite_f32 on a converted to float */
static int all_finite_of(const double *a, int64_t rows, int64_t F, const int64_t *lengths,
                         int B, int f32)
{
    if (!f32) return crnn_all_finite_f64(a, rows, F, lengths, B);
    size_t n = rows > 0 && F > 0 ? (size_t)rows * (size_t)F : 0;
    float *f = f32_of(a, n);
    int ok = crnn_all_finite_f32(f, rows, F, lengths, B);
    free(f);
    return ok;
}

static void test_all_finite_dtype(int f32)
{
    const char *dt = f32 ? "f32" : "f64";
    /* sizes around the core's blocks of 1024 values and its vector widths */
    const int sizes[] = {1, 7, 8, 255, 256, 257, 1023, 1024, 1025, 2049};
    const double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    /* finite in both dtypes: zeros, subnormals, the smallest normal, the largest */
    const double big = f32 ? FLT_MAX : DBL_MAX;
    const double edge[] = {0.0, -0.0, f32 ? 1.4e-45 : 4.9e-324, f32 ? -1.4e-45 : -4.9e-324,
                           f32 ? FLT_MIN : DBL_MIN, big, -big, 1, -1};
    const size_t n_edge = sizeof edge / sizeof edge[0];
    double *a = xmalloc(2049 * sizeof(double));
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
        const int n = sizes[s];
        for (int i = 0; i < n; ++i) a[i] = edge[(size_t)i % n_edge];
        check(all_finite_of(a, n, 1, NULL, 0, f32) == 1,
              "all_finite_%s: n=%d finite edge values reported non-finite", dt, n);
        const int at[] = {0, n / 2, n - 1};
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k)
            for (int j = 0; j < 3; ++j) {
                double keep = a[at[j]];
                a[at[j]] = bad[k];
                check(all_finite_of(a, n, 1, NULL, 0, f32) == 0 &&
                          all_finite_of(a, 1, n, NULL, 0, f32) == 0,
                      "all_finite_%s: n=%d missed %g at %d", dt, n, bad[k], at[j]);
                a[at[j]] = keep;
            }
    }
    /* lengths: (T,B,F) with rows of 300 values, so that runs of valid rows
     * straddle blocks; a NaN at the first or last value of each row is found
     * exactly when its step is valid */
    enum { T = 5, B = 3, F = 300 };
    const int64_t lens[B] = {2, 0, 5}, zeros[B] = {0, 0, 0};
    double *x = xmalloc((size_t)T * B * F * sizeof(double));
    for (size_t i = 0; i < (size_t)T * B * F; ++i) x[i] = 0.5;
    for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
            for (int k = 0; k < F; k += F - 1) {
                double *v = x + ((size_t)t * B + b) * F + k;
                *v = NAN;
                int got = all_finite_of(x, T * B, F, lens, B, f32);
                check(got == !(t < lens[b]), "all_finite_%s: NaN at (t=%d, b=%d, %d) with "
                      "length %d: got %d", dt, t, b, k, (int)lens[b], got);
                check(all_finite_of(x, T * B, F, zeros, B, f32) == 1,
                      "all_finite_%s: lengths all 0 read a step", dt);
                check(all_finite_of(x, T * B, F, lens, 0, f32) == 0,
                      "all_finite_%s: B = 0 with lengths did not read every row", dt);
                *v = 0.5;
            }
    check(all_finite_of(x, T * B, F, lens, B, f32) == 1, "all_finite_%s: finite (T,B,F)", dt);
    int empty = f32 ? crnn_all_finite_f32(NULL, 0, 5, NULL, 0)
                    : crnn_all_finite_f64(NULL, 3, 0, lens, B);
    check(empty == 1, "all_finite_%s: an empty array is not finite", dt);
    free(x);
    free(a);
}

static void test_all_finite(void)
{
    test_all_finite_dtype(0);
    test_all_finite_dtype(1);
}

/* ------------------------------------------------------------------------ */
/* bias = 0 ignores b_h and b_y even when given                               */

static void test_bias_off_ignores_params(void)
{
    for (int rev = 0; rev <= 1; ++rev) {
        crnn_shape s = {.T = 4, .B = 2, .D = 3, .H = 3, .O = 2, .activation = CRNN_TANH,
                        .output_activation = CRNN_SOFTMAX, .reverse = rev, .bias = 0};
        prob p;
        memset(&p, 0, sizeof p);
        p.s = s;
        p.has_h0 = 1;
        p.len_mode = 2;
        prob_alloc(&p);
        rng_t r = {99 + (uint64_t)rev};
        prob_fill(&p, &r);
        const size_t nh = 4 * 2 * 3, ny = 4 * 2 * 2, nhl = 2 * 3;
        double hs1[4 * 2 * 3], y1[4 * 2 * 2], hl1[2 * 3], hs2[4 * 2 * 3], y2[4 * 2 * 2],
            hl2[2 * 3];
        int rc = fwd64(&p, hs1, y1, hl1, p.lengths);  /* b_h, b_y passed as NULL */
        fill(p.bh, 3, NAN);
        fill(p.by, 2, NAN);
        rc |= crnn_elman_forward_f64(hs2, y2, hl2, p.x, NULL, p.h0, p.lengths, p.Wxh, p.Whh,
                                     p.bh, p.Why, p.by, NULL, &s, &REF_BLAS);
        check(rc == CRNN_OK, "bias = 0 with NaN b_h, b_y: returned %d", rc);
        check_equal("bias = 0", "NaN b_h/b_y ignored: hs", hs2, hs1, nh);
        check_equal("bias = 0", "NaN b_h/b_y ignored: y", y2, y1, ny);
        check_equal("bias = 0", "NaN b_h/b_y ignored: h_last", hl2, hl1, nhl);
        prob_free(&p);
    }
}

/* ------------------------------------------------------------------------ */
/* Token input goes through work's (D,H) table only when 4 T*B >= D
 * (token_table in elman_impl.h): below that the forward and the backward
 * leave the block as it was. Either way the bits are those of the call
 * without work where work changes nothing else: one step from h0 = 0 (no
 * W_hh product, packed or not, but dh0's), gradients from 0. The grid
 * checks both ways against the oracle over more steps.                      */

/* How many of block's n values (none without a block) still hold 12345. */
static size_t marked(const double *block, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; block && i < n; ++i) kept += block[i] == 12345.0;
    return kept;
}

static void test_token_table(void)
{
    static const int shapes[][3] = {/* B D H; T = 1: the table where 4 B >= D */
                                    {1, 5, 3}, {2, 9, 2}, {2, 8, 3}, {3, 13, 4},
                                    {3, 12, 2}, {4, 17, 3}, {4, 16, 3},
                                    /* whole register blocks of the transposes and edges */
                                    {6, 19, 13}, {8, 32, 16}, {4, 17, 13}};  /* H <= MAXW */
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
        const int *sh = shapes[si];
        crnn_shape s = {.T = 1, .B = sh[0], .D = sh[1], .H = sh[2], .O = 2,
                        .activation = CRNN_TANH, .output_activation = CRNN_IDENTITY,
                        .reverse = 0, .bias = 1};
        const int table = 4 * s.T * s.B >= s.D;
        prob p;
        memset(&p, 0, sizeof p);
        p.s = s;
        p.tok = 1;
        prob_alloc(&p);
        rng_t r = {77 + (uint64_t)si};
        prob_fill(&p, &r);
        const size_t TB = (size_t)s.T * s.B, nh = TB * s.H, ny = TB * s.O, nhl = (size_t)s.B * s.H;
        double *out = xmalloc(2 * (nh + ny + nhl + nh + nhl + ny) * sizeof(double));
        double *hs[2], *y[2], *hl[2], *da[2], *dz[2];
        grads g[2];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "token table, B=%d D=%d", s.B, s.D);
        for (int w = 0; w < 2; ++w) {  /* w = 0: without work, 1: with */
            double *o = out + (size_t)w * (nh + ny + nhl + nh + nhl + ny);
            hs[w] = o, y[w] = hs[w] + nh, hl[w] = y[w] + ny, da[w] = hl[w] + nhl;
            dz[w] = da[w] + nh + nhl;
            GRID_WORK = w;
            double *work = grid_work(&s, 1, 0), *block = NULL;
            size_t nblock = (size_t)s.D * s.H;
            if (work) {
                block = work + (crnn_elman_worksize_f64(s.B, s.D, s.H, 1) - (int64_t)nblock);
                fill(block, nblock, 12345.0);
            }
            grads_alloc(&g[w], &s);
            grads_reset(&g[w], 0);
            int rc = fwd64(&p, hs[w], y[w], hl[w], NULL);
            size_t kept = marked(block, nblock);
            if (block)
                check(table ? kept < nblock : kept == nblock,
                      "%s: the forward %s the table (%zu of %zu untouched)", ctx,
                      table ? "did not use" : "used", kept, nblock);
            if (block) fill(block, nblock, 12345.0);
            rc |= bwd64(&p, &g[w], 0, p.dy, p.dstate, hs[w], y[w], NULL, da[w], dz[w]);
            kept = marked(block, nblock);
            if (block)
                check(table ? kept < nblock : kept == nblock,
                      "%s: the backward %s the table (%zu of %zu untouched)", ctx,
                      table ? "did not use" : "used", kept, nblock);
            check(rc == CRNN_OK, "%s, work %d: returned %d", ctx, w, rc);
        }
        check_equal(ctx, "hs with work", hs[1], hs[0], nh);
        check_equal(ctx, "y with work", y[1], y[0], ny);
        check_equal(ctx, "h_last with work", hl[1], hl[0], nhl);
        check_equal(ctx, "dW_xh with work", g[1].dWxh, g[0].dWxh, g[0].nWxh);
        check_equal(ctx, "db_h with work", g[1].dbh, g[0].dbh, g[0].nbh);
        check_equal(ctx, "dW_hy with work", g[1].dWhy, g[0].dWhy, g[0].nWhy);
        check_equal(ctx, "db_y with work", g[1].dby, g[0].dby, g[0].nby);
        GRID_WORK = 0;
        free(g[0].blk);
        free(g[1].blk);
        free(out);
        prob_free(&p);
    }
}

/* Without a bias, a token's input term is W_xh's column itself, with and
 * without the table: a -0 weight stays -0 (adding a 0 bias would make it
 * +0). T = 1 from h0 = 0, identity: hs holds the input terms. */
static void test_token_signed_zero(void)
{
    /* 4 B >= D: the table; W_xh (H, D) transposed in 8 x 8 (float) or 4 x 4
     * (double) register blocks and an edge row */
    enum { B = 4, D = 16, H = 9 };
    const crnn_shape s = {.T = 1, .B = B, .D = D, .H = H, .O = 0, .activation = CRNN_IDENTITY,
                          .output_activation = CRNN_IDENTITY, .reverse = 0, .bias = 0};
    const int64_t tokens[B] = {0, 15, 7, 12};
    double Wxh[H * D], Whh[H * H] = {0}, hs[B * H], hl[B * H];
    float Wxhf[H * D], Whhf[H * H] = {0}, hsf[B * H], hlf[B * H];
    for (int i = 0; i < H * D; ++i) Wxh[i] = i % 2 ? -0.0 : -(double)i, Wxhf[i] = (float)Wxh[i];
    double *work = xmalloc((size_t)crnn_elman_worksize_f64(B, D, H, 1) * sizeof(double));
    float *workf = xmalloc((size_t)crnn_elman_worksize_f32(B, D, H, 1) * sizeof(float));
    for (int w = 0; w < 2; ++w) {
        int rc = crnn_elman_forward_f64(hs, NULL, hl, NULL, tokens, NULL, NULL, Wxh, Whh, NULL,
                                        NULL, NULL, w ? work : NULL, &s, &REF_BLAS);
        rc |= crnn_elman_forward_f32(hsf, NULL, hlf, NULL, tokens, NULL, NULL, Wxhf, Whhf, NULL,
                                     NULL, NULL, w ? workf : NULL, &s, &REF_BLAS);
        check(rc == CRNN_OK, "token signed zero, work %d: returned %d", w, rc);
        int same = 1;
        for (int b = 0; b < B; ++b)
            for (int j = 0; j < H; ++j) {
                const double want = Wxh[j * D + tokens[b]];
                same &= hs[b * H + j] == want && !signbit(hs[b * H + j]) == !signbit(want);
                same &= hsf[b * H + j] == (float)want && !signbit(hsf[b * H + j]) == !signbit(want);
            }
        check(same, "token signed zero, work %d: hs is not W_xh's columns, sign of 0 included", w);
    }
    free(work);
    free(workf);
}

/* ------------------------------------------------------------------------ */
/* Softmax that underflows: y >= the dtype's smallest normal at valid steps
 * (crnn.h), exactly 0 at padded ones, and gradients stay finite.            */

static void test_softmax_floor(void)
{
    enum { T = 2, B = 2, D = 1, H = 1, O = 3 };
    const crnn_shape s = {.T = T, .B = B, .D = D, .H = H, .O = O,
                          .activation = CRNN_IDENTITY, .output_activation = CRNN_SOFTMAX,
                          .reverse = 0, .bias = 0};
    const double x[T * B * D] = {1, -1, 1, 5}, Wxh[H * D] = {1}, Whh[H * H] = {0};
    const double Why[O * H] = {1000, 0, -1000};  /* |z| = 1000: e^(z - max) underflows */
    const double dy[T * B * O] = {1, 2, 3, -1, 0.5, 2, 1, 1, 1, 4, 5, 6};
    const int64_t lengths[B] = {2, 1};
    float xf[T * B * D], Wxhf[H * D], Whhf[H * H], Whyf[O * H], dyf[T * B * O];
    for (int i = 0; i < T * B * D; ++i) xf[i] = (float)x[i];
    Wxhf[0] = (float)Wxh[0];
    Whhf[0] = (float)Whh[0];
    for (int i = 0; i < O * H; ++i) Whyf[i] = (float)Why[i];
    for (int i = 0; i < T * B * O; ++i) dyf[i] = (float)dy[i];

    double hs[T * B * H], y[T * B * O], hl[B * H], dx[T * B * D], dh0[B * H];
    double dWxh[H * D] = {0}, dWhh[H * H] = {0}, dWhy[O * H] = {0}, da[(T + 1) * B * H],
           dz[T * B * O];
    float hsf[T * B * H], yf[T * B * O], hlf[B * H], dxf[T * B * D], dh0f[B * H];
    float dWxhf[H * D] = {0}, dWhhf[H * H] = {0}, dWhyf[O * H] = {0}, daf[(T + 1) * B * H],
          dzf[T * B * O];
    int rc = crnn_elman_forward_f64(hs, y, hl, x, NULL, NULL, lengths, Wxh, Whh, NULL, Why,
                                    NULL, NULL, &s, &REF_BLAS);
    rc |= crnn_elman_backward_f64(dx, dh0, dWxh, dWhh, NULL, dWhy, NULL, dy, NULL, hs, y, x,
                                  NULL, NULL, lengths, Wxh, Whh, Why, da, dz, NULL, T, &s,
                                  &REF_BLAS);
    rc |= crnn_elman_forward_f32(hsf, yf, hlf, xf, NULL, NULL, lengths, Wxhf, Whhf, NULL, Whyf,
                                 NULL, NULL, &s, &REF_BLAS);
    rc |= crnn_elman_backward_f32(dxf, dh0f, dWxhf, dWhhf, NULL, dWhyf, NULL, dyf, NULL, hsf,
                                  yf, xf, NULL, NULL, lengths, Wxhf, Whhf, Whyf, daf, dzf, NULL,
                                  T, &s, &REF_BLAS);
    check(rc == CRNN_OK, "softmax floor: a call returned an error");
    int floor_ok = 1, pad_ok = 1, finite = 1, clamped = 0;
    for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
            for (int k = 0; k < O; ++k) {
                int i = (t * B + b) * O + k;
                if (t < lengths[b]) {
                    floor_ok &= y[i] >= DBL_MIN && yf[i] >= FLT_MIN;
                    clamped += y[i] == DBL_MIN;
                } else {
                    pad_ok &= y[i] == 0 && yf[i] == 0;
                }
            }
    const double *all[] = {dx, dh0, dWxh, dWhh, dWhy};
    const size_t nall[] = {T * B * D, B * H, H * D, H * H, O * H};
    for (int a = 0; a < 5; ++a)
        for (size_t i = 0; i < nall[a]; ++i) finite &= isfinite(all[a][i]);
    const float *allf[] = {dxf, dh0f, dWxhf, dWhhf, dWhyf};
    for (int a = 0; a < 5; ++a)
        for (size_t i = 0; i < nall[a]; ++i) finite &= isfinite(allf[a][i]);
    check(floor_ok && clamped > 0, "softmax floor: a valid y below the smallest normal number");
    check(pad_ok, "softmax floor: y at a padded step is not exactly 0");
    check(finite, "softmax floor: a gradient is not finite");
}

/* The thread policy: a fake set_threads records every count the core asks
 * for. Products under their threshold (mt_flops for whole-sequence ones,
 * mt_flops_step inside the time loop) must run on 1 thread, larger ones on
 * blas.threads, and blas.threads is in force on return. */
static int thread_log[4096], n_thread_log;
static void record_threads(int n)
{
    if (n_thread_log < 4096) thread_log[n_thread_log++] = n;
}

static void test_thread_policy(void)
{
    enum { T = 64, B = 64, D = 80, H = 64 };
    static double x[T * B * D], hs[T * B * H], hl[B * H], dx[T * B * D], dh0[B * H],
        dy[T * B * H], da[(T + 1) * B * H], Wxh[H * D], Whh[H * H], dWxh[H * D], dWhh[H * H];
    for (int i = 0; i < T * B * D; ++i) x[i] = 0.01 * (i % 7);
    for (int i = 0; i < H * D; ++i) Wxh[i] = 0.01 * (i % 5);
    for (int i = 0; i < H * H; ++i) Whh[i] = 0.001 * (i % 3);
    for (int i = 0; i < T * B * H; ++i) dy[i] = 1;
    const crnn_shape s = {.T = T, .B = B, .D = D, .H = H, .O = 0, .activation = CRNN_TANH,
                          .output_activation = CRNN_IDENTITY, .reverse = 0, .bias = 0};
    const double step_flops = 2.0 * B * H * H, seq_flops = 2.0 * T * B * D * H;
    /* (mt_flops, mt_flops_step) -> which counts must appear: a threshold
     * between the two sizes, one above both, one below both */
    const double cases[3][2] = {{seq_flops / 2, step_flops * 2},
                                {seq_flops * 4, step_flops * 4},
                                {0, 0}};
    /* case 1 sets 3 only on return, when it restores blas.threads */
    const int want1[3] = {1, 1, 0}, want3[3] = {1, 1, 1};
    for (int c = 0; c < 3; ++c)
        for (int pass = 0; pass < 2; ++pass) {
            crnn_blas blas = {crnn_ref_sgemm, crnn_ref_dgemm, crnn_ref_sgemv, crnn_ref_dgemv,
                              record_threads, 3, cases[c][0], cases[c][1], NULL, 0,
                              0};
            n_thread_log = 0;
            int rc = pass == 0
                ? crnn_elman_forward_f64(hs, NULL, hl, x, NULL, NULL, NULL, Wxh, Whh, NULL, NULL,
                                         NULL, NULL, &s, &blas)
                : crnn_elman_backward_f64(dx, dh0, dWxh, dWhh, NULL, NULL, NULL, dy, NULL, hs,
                                          NULL, x, NULL, NULL, NULL, Wxh, Whh, NULL, da, NULL,
                                          NULL, T, &s, &blas);
            check(rc == CRNN_OK, "thread policy: case %d pass %d returned %d", c, pass, rc);
            int saw1 = 0, saw3 = 0, other = 0;
            for (int i = 0; i < n_thread_log; ++i) {
                saw1 |= thread_log[i] == 1;
                saw3 |= thread_log[i] == 3;
                other |= thread_log[i] != 1 && thread_log[i] != 3;
            }
            check(saw1 == want1[c] && saw3 == want3[c] && !other,
                  "thread policy: case %d pass %d asked for the wrong thread counts", c, pass);
            check(n_thread_log == 0 || thread_log[n_thread_log - 1] == 3,
                  "thread policy: case %d pass %d did not leave blas.threads in force", c, pass);
            check(n_thread_log <= 6, "thread policy: case %d pass %d switched threads %d times",
                  c, pass, n_thread_log);
            if (c == 1)
                check(n_thread_log == 2 && thread_log[0] == 1,
                      "thread policy: below both thresholds a product ran on 3 threads");
        }
}

/* The split policy: a time loop (the forward's, each backward chunk's) is
 * split only with par, threads = 2, B >= 4 and at least par_flops flops in
 * its products; a whole-sequence product only with par, threads = 2 and at
 * least mt_flops flops. With B < 4 the backward instead runs each
 * chunk's gradients beside the next chunk's loop (par once per chunk but
 * the first) when the chunk's products have at least par_flops flops. On
 * crnn's own threads the BLAS gets one thread throughout, whatever B.
 * fake_par counts its calls and runs the jobs in turn; that the results are
 * right is test_packed's and the grid's part. */
static int par_calls, par_bad;
static void fake_par(crnn_job_fn job, void *arg0, void *arg1)
{
    ++par_calls;
    par_bad |= arg0 == arg1;
    job(arg0);
    job(arg1);
}

/* Whether this CPU runs the packed time loop (crnn.h: work) */
static int cpu_packs(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
    return crnn_elman_worksize_f64(1, 1, 1, 0) > 0 && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static void test_split_policy(void)
{
    enum { T = 48, D = 3, H = 16 };
    static const int Bs[] = {3, 4, 5, 9};
    for (size_t bi = 0; bi < sizeof Bs / sizeof Bs[0]; ++bi)
        for (int c = 0; c < 8; ++c) {
            const int B = Bs[bi];
            const double loop_flops = 2.0 * B * H * H * T;
            const double proj_flops = 2.0 * T * B * D * H;  /* and token rows' */
            /* B < 4: the backward's chunks are T/2 steps (of the chunk T) */
            const double pipe_flops = 2.0 * (T / 2) * B * H * (H + D);
            /* c: 0 split, 1 par_flops above the loop, 2 one thread, 3 no
             * par, 4 three threads (the BLAS's own, as without par), 5 as
             * 0 with every whole-sequence product split too (only the
             * forward's input projection has 2 * CRNN_SPLIT_ALIGN rows, and
             * a pipelined chunk's products are not split); all with work,
             * but case 6; 7 as 0 with mt_flops = the input projection's
             * flops, which splits it only beside a split loop (a forward
             * with B < 4 is cold: from 8 mt_flops) */
            crnn_blas blas = SPLIT_BLAS;
            blas.par = c == 3 ? NULL : fake_par;
            blas.par_flops = (c == 1 ? 2 : 1) * (B >= 4 ? loop_flops : pipe_flops);
            blas.set_threads = record_threads;
            blas.threads = c == 2 ? 1 : c == 4 ? 3 : 2;
            blas.mt_flops = c == 5 ? 0 : c == 7 ? proj_flops : HUGE_VAL;
            const crnn_shape s = {.T = T, .B = B, .D = D, .H = H, .O = 0,
                                  .activation = CRNN_TANH,
                                  .output_activation = CRNN_IDENTITY, .reverse = 0, .bias = 0};
            double *buf = xmalloc(((size_t)T * B * (D + 3 * H) + 2 * (size_t)B * H +
                                   2 * (size_t)H * (D + H) + (size_t)B * H) * sizeof(double));
            double *x = buf, *hs = x + (size_t)T * B * D, *dy = hs + (size_t)T * B * H;
            double *da = dy + (size_t)T * B * H, *hl = da + (size_t)(T + 1) * B * H;
            double *dh0 = hl + (size_t)B * H, *Wxh = dh0 + (size_t)B * H, *Whh = Wxh + H * D;
            double *dWxh = Whh + H * H, *dWhh = dWxh + H * D;
            for (size_t i = 0; i < (size_t)T * B * D; ++i) x[i] = 0.1 * (double)(i % 7) - 0.3;
            for (int i = 0; i < H * D; ++i) Wxh[i] = 0.05 * (i % 5) - 0.1;
            for (int i = 0; i < H * H; ++i) Whh[i] = 0.02 * (i % 9) - 0.08;
            for (size_t i = 0; i < (size_t)T * B * H; ++i) dy[i] = 0.01 * (double)(i % 11);
            memset(dWxh, 0, (size_t)H * (D + H) * sizeof(double));
            double *work = c == 6 ? NULL
                : xmalloc((size_t)crnn_elman_worksize_f64(B, D, H, 0) * sizeof(double) + 8);
            par_calls = par_bad = n_thread_log = 0;
            int rc = crnn_elman_forward_f64(hs, NULL, hl, x, NULL, NULL, NULL, Wxh, Whh, NULL,
                                            NULL, NULL, work, &s, &blas);
            const int fwd_calls = par_calls;
            rc |= crnn_elman_backward_f64(NULL, dh0, dWxh, dWhh, NULL, NULL, NULL, dy, NULL, hs,
                                          NULL, x, NULL, NULL, NULL, Wxh, Whh, NULL, da, NULL,
                                          work, T, &s, &blas);
            free(work);
            const int log_n = n_thread_log;
            /* token ids: the table's rows are copied by the halves of a
             * split loop (each its own rows), or, where the loop is not
             * split, in two halves of their own where the one-hot product
             * would be split (case 5) */
            int64_t *ids = xmalloc((size_t)T * B * sizeof(int64_t));
            for (size_t i = 0; i < (size_t)T * B; ++i) ids[i] = (int64_t)(i % D);
            work = c == 6 ? NULL
                : xmalloc((size_t)crnn_elman_worksize_f64(B, D, H, 1) * sizeof(double) + 8);
            const int before_tok = par_calls;
            rc |= crnn_elman_forward_f64(hs, NULL, hl, NULL, ids, NULL, NULL, Wxh, Whh, NULL,
                                         NULL, NULL, work, &s, &blas);
            const int tok_calls = par_calls - before_tok;
            par_calls = before_tok;
            n_thread_log = log_n;
            free(work);
            free(ids);
            const int want = (c == 0 || c == 5 || c == 7) && B >= 4 && cpu_packs();
            const int gemms = (c == 5 || (c == 7 && B >= 4)) && B * T >= 2 * CRNN_SPLIT_ALIGN &&
                              cpu_packs();
            const int pipe = (c == 0 || c == 5 || c == 7) && B < 4 && cpu_packs();
            const int want_fwd = want + gemms, want_all = 2 * want + gemms + pipe;
            const int want_tok = want + (c == 5 && !want && cpu_packs());
            check(rc == CRNN_OK, "split policy: B = %d case %d returned %d", B, c, rc);
            check(fwd_calls == want_fwd && par_calls == want_all && !par_bad,
                  "split policy: B = %d case %d: par called %d times in the forward, %d in all "
                  "(want %d, %d)", B, c, fwd_calls, par_calls, want_fwd, want_all);
            check(tok_calls == want_tok, "split policy: B = %d case %d: par called %d times in "
                  "the token forward (want %d)", B, c, tok_calls, want_tok);
            /* own threads (case 5: every product >= mt_flops = 0): each
             * call asks for one BLAS thread, then restores 2 on return */
            if (c == 5 && cpu_packs())
                check(n_thread_log == 4 && thread_log[0] == 1 && thread_log[1] == 2 &&
                      thread_log[2] == 1 && thread_log[3] == 2,
                      "split policy: B = %d case 5: BLAS thread counts asked for: %d of them, "
                      "first %d (want 1, 2, 1, 2)", B, n_thread_log, thread_log[0]);
            free(buf);
        }
}

/* On crnn's own threads (loops not split: par_flops above them) a chunk's
 * gradients run as two parts at once -- db_h, dW_hh and some rows of dW_xh
 * beside the other rows and dx -- when the parts' flops can come within
 * 20 %, and the results are those of one thread: one par call for the one
 * chunk with D = H/2 and dx (no rows beside dW_hh), with D = H and dx when
 * H/2 is a multiple of CRNN_SPLIT_ALIGN (half of them), with D = H and no
 * dx (all); none when the parts cannot balance (D = H = 16 with dx: no cut
 * below H; D = 3; token input). */
static void test_grads_parts(void)
{
    enum { T = 6, B = 5 };
    static const struct { int D, H, tok, with_dx, want; } cases[] = {
        {8, 16, 0, 1, 1}, {16, 16, 0, 0, 1}, {16, 16, 0, 1, 0}, {3, 16, 0, 1, 0},
        {8, 16, 1, 0, 0}, {2 * CRNN_SPLIT_ALIGN, 2 * CRNN_SPLIT_ALIGN, 0, 1, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
        const int D = cases[ci].D, H = cases[ci].H;
        crnn_shape s = {.T = T, .B = B, .D = D, .H = H, .O = 0, .activation = CRNN_TANH,
                        .output_activation = CRNN_IDENTITY, .reverse = 0, .bias = 1};
        prob p;
        memset(&p, 0, sizeof p);
        p.s = s;
        p.tok = cases[ci].tok;
        p.has_h0 = 1;
        p.len_mode = 3;
        prob_alloc(&p);
        rng_t r = {777 + ci};
        fill_unif(p.blk, p.nblk, &r, -0.5, 0.5);
        for (size_t i = 0; i < (size_t)T * B; ++i) p.tokens[i] = rng_int(&r, 0, D - 1);
        make_lengths(&p, &r);
        const size_t nh = (size_t)T * B * H;
        double *hs = xmalloc(nh * sizeof(double)), *hl = xmalloc((size_t)B * H * sizeof(double));
        double *da = xmalloc((nh + (size_t)B * H) * sizeof(double));
        grads g[2];
        int rc = 0, calls[2] = {0, 0};
        for (int w = 0; w < 2; ++w) {  /* 0: one thread; 1: own threads */
            crnn_blas blas = SPLIT_BLAS;
            blas.par = fake_par;
            blas.threads = w ? 2 : 1;
            blas.par_flops = 1e300;
            blas.set_threads = record_threads;
            GRID_BLAS = &blas;
            GRID_WORK = 1;
            grads_alloc(&g[w], &s);
            grads_reset(&g[w], 0);
            rc |= fwd64(&p, hs, NULL, hl, p.lengths);
            par_calls = par_bad = n_thread_log = 0;
            rc |= bwd64(&p, &g[w], cases[ci].with_dx, p.dy, p.dstate, hs, NULL, p.lengths, da, NULL);
            calls[w] = par_calls;
            /* own threads: the BLAS on one thread before any product (the
             * parts' too), two again on return */
            if (w && cpu_packs())
                check(n_thread_log == 2 && thread_log[0] == 1 && thread_log[1] == 2,
                      "grads parts: D = %d: BLAS thread counts asked for: %d of them, first %d "
                      "(want 1, 2)", D, n_thread_log, n_thread_log ? thread_log[0] : 0);
        }
        GRID_BLAS = &REF_BLAS;
        GRID_WORK = 0;
        char ctx[160];
        describe(ctx, sizeof ctx, &p);
        const int want = cases[ci].want && cpu_packs();
        check(rc == CRNN_OK && !par_bad, "%s: grads parts: a call failed", ctx);
        check(calls[0] == 0 && calls[1] == want, "%s, dx %d: grads parts: par called %d times "
              "(want %d; one thread %d)", ctx, cases[ci].with_dx, calls[1], want, calls[0]);
        check_grads_equal(ctx, "grads parts", &p, &g[1], &g[0], cases[ci].with_dx);
        for (int w = 0; w < 2; ++w) free(g[w].blk);
        free(hs);
        free(hl);
        free(da);
        prob_free(&p);
    }
}

static int report(void)
{
    if (n_failed) {
        if (n_failed > MAX_REPORTED)
            fprintf(stderr, "... %ld more failures not shown\n", n_failed - MAX_REPORTED);
        fprintf(stderr, "test_core: %ld of %ld checks FAILED\n", n_failed, n_checks);
        return 1;
    }
    printf("test_core: %ld checks passed\n", n_checks);
    return 0;
}

/* `test_core threads`: only the tests that run crnn's own two threads (for
 * a ThreadSanitizer build, too slow for the rest). */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "threads") == 0) {
        test_split_policy();
        test_grads_parts();
        GRID_CHUNK = 1;
        test_packed();
        GRID_CHUNK = 4;
        test_packed();
        return report();
    }
    test_thread_policy();
    test_split_policy();
    test_grads_parts();
    test_strerror();
    test_errors_dtype(0);
    test_errors_dtype(1);
    test_activate();
    test_all_finite();
    test_bias_off_ignores_params();
    test_token_table();
    test_token_signed_zero();
    test_softmax_floor();
    /* the grid, each way: BLAS table, work (the packed time loop), chunk,
     * dx_chunk_bytes (1: chunks in dx's rows, where they can be longer:
     * with chunk 1, the shapes with T D >= 2 (D + H)) */
    static const struct {
        const crnn_blas *blas;
        int work, chunk;
        double dx_chunk;
    } ways[] = {{&REF_BLAS, 0, 0, 0}, {&GEMM_ONLY, 0, 1, 1}, {&REF_BLAS, 1, 2, 0},
                {&SPLIT_BLAS, 1, 1, 1}, {&REF_BLAS, 0, 3, 0}, {&SPLIT_BLAS, 1, 3, 0}};
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; ++w) {
        GRID_BLAS = ways[w].blas;
        GRID_WORK = ways[w].work;
        GRID_CHUNK = ways[w].chunk;
        GRID_DX_CHUNK = ways[w].dx_chunk;
        test_grid();
    }
    GRID_BLAS = &REF_BLAS;
    GRID_WORK = 0;
    GRID_DX_CHUNK = 0;
    test_packed();
    GRID_CHUNK = 1;
    test_packed();
    GRID_DX_CHUNK = 1;
    test_packed();
    GRID_DX_CHUNK = 0;
    GRID_CHUNK = 4;
    test_packed();
    return report();
}
