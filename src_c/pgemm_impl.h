/* pgemm_impl.h -- the time loop's product on a pre-packed W_hh, for x86-64
 * CPUs with AVX2 and FMA. Included by elman.c once per REAL, with REAL, SFX,
 * FN and the vector macros V (the 256-bit type), VL (its lanes), VZERO,
 * VLOAD, VSTORE, VADD, VFMA, VBCAST defined, after transpose_impl.h.
 *
 *   C (M,N) += A (M,K) Bm (K,N)         all row-major; M = B, N = K = H
 *
 * Bm is W_hh^T (forward: h_prev W_hh^T) or W_hh (backward: da_t W_hh); it is
 * the same matrix at every step, so it is packed once per kernel call, where
 * a BLAS packs it again on every call -- at (32,128)x(128,128) that packing
 * is a quarter of the product's time. Packed Bm: NR = 2*VL columns per panel,
 * panel p holding rows k = 0..K-1 of columns p*NR .. p*NR+NR-1 contiguously
 * (zeros beyond N), streamed from L2 by each block of A's rows (for M = 1,
 * groups of four panels interleaved row by row: pg_pack_b; a product must
 * have the M = 1-ness it was packed for).
 * A is copied per product into slivers of MR rows interleaved by k (zeros
 * beyond M): the strided rows of A would otherwise share cache sets when
 * K*sizeof(REAL) is a multiple of 4 KiB.
 * K is not split into blocks: with blocks of 256 (an L1-sized panel), C is
 * read and written once per block, and in a harness ((64,512)x(512,512) to
 * (64,2048)x(2048,2048), float32 and float64) the product took 3-19 % longer
 * than with all of K at once.
 *
 * The micro-kernel holds an MR x NR block of C in 12 registers and adds, for
 * each k, a broadcast A[i][k] times the panel's row k with one FMA per
 * register. A single row (B = 1) goes to pg_row, four panels at a time.
 * Each C element is the sum over k in order (FMA-rounded, from zero, then
 * added to C) whatever its row or column and M, so a sequence's bits do not
 * depend on the other rows of the batch, nor on B. */

#define PG_MR 6
#define PG_NR (2 * VL)

/* REALs of the packed Bm (K,N). */
static int64_t FN(pg_packed_size)(int N, int K)
{
    return (int64_t)((N + PG_NR - 1) / PG_NR) * PG_NR * K;
}

/* REALs of one A block, for products of up to M rows. */
static int64_t FN(pg_ablock_size)(int M, int K)
{
    return (int64_t)((M + PG_MR - 1) / PG_MR) * PG_MR * K;
}

/* REALs of workspace: the packed Bm, then two A blocks (one for each half of
 * a time loop split in two, crnn_blas.par). */
static int64_t FN(pg_worksize)(int M, int N, int K)
{
    return FN(pg_packed_size)(N, K) + 2 * FN(pg_ablock_size)(M, K);
}

/* dst[k * step + j] (+)= src[j * ld + k] (+ bias[j]) for j, k < VL: a VL x VL
 * block transposed in registers (rows of src in, columns out), bias (NULL:
 * none) added to each column, the result added to dst's values with add. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
FN(pg_tile_t)(REAL *dst, size_t step, const REAL *src, size_t ld, int add, const REAL *bias)
{
    V r[VL], c[VL];
    for (int j = 0; j < VL; ++j) r[j] = VLOAD(src + (size_t)j * ld);
#if VEC256_DOUBLE
    const V t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const V t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    c[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    c[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    c[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    c[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
#else
    V t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        c[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        c[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
#endif
    if (bias)
        for (int k = 0; k < VL; ++k) c[k] = VADD(c[k], VLOAD(bias));
    for (int k = 0; k < VL; ++k) {
        REAL *d = dst + (size_t)k * step;
        VSTORE(d, add ? VADD(VLOAD(d), c[k]) : c[k]);
    }
}

/* out[c * ldo + r] (+)= in[r * ldi + c] (+ bias[r]) for r < R, c < C: in's
 * (R,C) block transposed (bias, NULL or R values, added to each of out's
 * rows; the result added to out's values with add), in VL x VL blocks in
 * registers, the edges one value at a time (transpose_rest, elman_impl.h).
 * Column blocks outermost: each reads a strip of in's rows, VL values of
 * each, and writes VL whole rows of out. */
__attribute__((target("avx2,fma"))) static void
FN(pg_transpose)(REAL *out, size_t ldo, const REAL *in, size_t ldi, int R, int C, int add,
                 const REAL *bias)
{
    const int rv = R - R % VL, cv = C - C % VL;  /* the parts in whole blocks */
    for (int c = 0; c < cv; c += VL)
        for (int r = 0; r < rv; r += VL)
            FN(pg_tile_t)(out + (size_t)c * ldo + r, ldo, in + (size_t)r * ldi + c, ldi, add,
                          bias ? bias + r : NULL);
    FN(transpose_rest)(out, ldo, in, ldi, R, C, rv, cv, add, bias);
}

/* Pack Bm (K,N) = W^T (transposed: W is (N,K)) or W (W is (K,N)) into bp,
 * for products with M rows. For M = 1 the panels go in groups of four (the
 * last group may have fewer), interleaved row by row within a group: pg_row
 * reads a group as one stream, not four. Row k of a panel lies at
 * dst + k * step, step = NR (or the group's width for M = 1). W^T goes
 * through pg_transpose: a forward of one step from a given h0 (generation,
 * one token at a time) packs W_hh for a single product, where the pack's
 * cost shows. */
__attribute__((target("avx2,fma"))) static void
FN(pg_pack_b)(REAL *bp, const REAL *W, int K, int N, int transposed, int M)
{
    for (int p = 0; p < N; p += PG_NR) {
        const int g = M == 1 ? p - p % (4 * PG_NR) : p;        /* the group's first column */
        const int left = (N - g + PG_NR - 1) / PG_NR;           /* panels from g on */
        const size_t step = M == 1 ? (size_t)(left < 4 ? left : 4) * PG_NR : PG_NR;
        REAL *dst = bp + (size_t)g * K + (size_t)(p - g);
        const int w = N - p < PG_NR ? N - p : PG_NR;            /* Bm's columns in the panel */
        if (transposed) {
            FN(pg_transpose)(dst, step, W + (size_t)p * K, (size_t)K, w, K, 0, NULL);
        } else {
            for (int k = 0; k < K; ++k)
                memcpy(dst + (size_t)k * step, W + (size_t)k * N + p, (size_t)w * sizeof(REAL));
        }
        if (w < PG_NR)
            for (int k = 0; k < K; ++k)
                memset(dst + (size_t)k * step + w, 0, (size_t)(PG_NR - w) * sizeof(REAL));
    }
}

/* c[0..nr) += the 2*VL values (lo, hi); nr <= NR. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
FN(pg_add)(REAL *c, V lo, V hi, int nr)
{
    if (nr == PG_NR) {
        VSTORE(c, VADD(VLOAD(c), lo));
        VSTORE(c + VL, VADD(VLOAD(c + VL), hi));
    } else {
        REAL t[PG_NR];
        VSTORE(t, lo);
        VSTORE(t + VL, hi);
        for (int j = 0; j < nr; ++j) c[j] += t[j];
    }
}

/* One MR x NR block: C[i][0..nr) += sum_k ap[k*MR + i] * bp[k*NR + 0..nr), i < mr,
 * for mr = 4..6 (fewer rows go to pg_thin). mr is a constant at every call
 * site, so each instance keeps only the registers it needs. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
FN(pg_block)(int mr, int nr, int K, const REAL *ap, const REAL *bp, REAL *C, int ldc)
{
    /* C's rows are read only after the k loop: ask for them now (in the
     * time loop C is a_t, which has not been touched since the input
     * projection wrote it, so it comes from L3 or memory) */
    for (int i = 0; i < mr; ++i) {
        __builtin_prefetch(C + (size_t)i * ldc, 1);
        __builtin_prefetch(C + (size_t)i * ldc + PG_NR - 1, 1);
    }
    V c00 = VZERO(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
      c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < K; ++k, ap += PG_MR, bp += PG_NR) {
        V b0 = VLOAD(bp), b1 = VLOAD(bp + VL), a;
        a = VBCAST(ap);     c00 = VFMA(a, b0, c00); c01 = VFMA(a, b1, c01);
        a = VBCAST(ap + 1); c10 = VFMA(a, b0, c10); c11 = VFMA(a, b1, c11);
        a = VBCAST(ap + 2); c20 = VFMA(a, b0, c20); c21 = VFMA(a, b1, c21);
        a = VBCAST(ap + 3); c30 = VFMA(a, b0, c30); c31 = VFMA(a, b1, c31);
        if (mr > 4) { a = VBCAST(ap + 4); c40 = VFMA(a, b0, c40); c41 = VFMA(a, b1, c41); }
        if (mr > 5) { a = VBCAST(ap + 5); c50 = VFMA(a, b0, c50); c51 = VFMA(a, b1, c51); }
    }
    V acc[PG_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < mr; ++i) FN(pg_add)(C + (size_t)i * ldc, acc[i][0], acc[i][1], nr);
}

/* One row against a group of np panels at once (M = 1: the time loop when
 * B = 1): 2*np independent FMA chains, where pg_block's mr = 1 has two and
 * waits on the FMA latency. The group is packed row by row (pg_pack_b), row
 * k's np*NR values at bp + k*np*NR; the last panel has nr columns. Each
 * element is the same sum as in pg_block. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
FN(pg_row)(int np, int nr, int K, const REAL *a, const REAL *bp, REAL *C)
{
    for (int q = 0; q < np; ++q) {
        __builtin_prefetch(C + q * PG_NR, 1);
        __builtin_prefetch(C + q * PG_NR + PG_NR - 1, 1);
    }
    V c0 = VZERO(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    const REAL *b0 = bp, *b1 = bp + PG_NR, *b2 = bp + 2 * PG_NR, *b3 = bp + 3 * PG_NR;
    for (int k = 0; k < K; ++k) {
        const V x = VBCAST(a + k);
        const size_t o = (size_t)k * np * PG_NR;
        c0 = VFMA(x, VLOAD(b0 + o), c0); c1 = VFMA(x, VLOAD(b0 + o + VL), c1);
        if (np > 1) { c2 = VFMA(x, VLOAD(b1 + o), c2); c3 = VFMA(x, VLOAD(b1 + o + VL), c3); }
        if (np > 2) { c4 = VFMA(x, VLOAD(b2 + o), c4); c5 = VFMA(x, VLOAD(b2 + o + VL), c5); }
        if (np > 3) { c6 = VFMA(x, VLOAD(b3 + o), c6); c7 = VFMA(x, VLOAD(b3 + o + VL), c7); }
    }
    V acc[4][2] = {{c0, c1}, {c2, c3}, {c4, c5}, {c6, c7}};
    for (int q = 0; q < np; ++q)
        FN(pg_add)(C + q * PG_NR, acc[q][0], acc[q][1], q < np - 1 ? PG_NR : nr);
}

/* Fewer than four rows (mr = 1..3, the rows left over after the MR x NR
 * blocks) against np panels at once: pg_block's mr = 2 has four FMA chains
 * and runs at half the FMA throughput, this has mr*2*np (np = 4 for mr = 1,
 * 2 otherwise: 8 or 12). Panels lie pstride REALs apart, the last has nr
 * columns. Each element is the same sum as in pg_block. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
FN(pg_thin)(int mr, int np, int nr, int K, const REAL *ap, const REAL *bp, size_t pstride,
            REAL *C, int ldc)
{
    for (int i = 0; i < mr; ++i)  /* as in pg_block */
        for (int q = 0; q < np; ++q) {
            __builtin_prefetch(C + (size_t)i * ldc + q * PG_NR, 1);
            __builtin_prefetch(C + (size_t)i * ldc + q * PG_NR + PG_NR - 1, 1);
        }
    V acc[3][8];
#pragma GCC unroll 3
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 8
        for (int q = 0; q < 2 * np; ++q) acc[i][q] = VZERO();
    for (int k = 0; k < K; ++k, ap += PG_MR, bp += PG_NR) {
#pragma GCC unroll 3
        for (int i = 0; i < mr; ++i) {
            const V a = VBCAST(ap + i);
#pragma GCC unroll 8
            for (int q = 0; q < 2 * np; ++q)
                acc[i][q] = VFMA(a, VLOAD(bp + (q / 2) * pstride + (q % 2) * VL), acc[i][q]);
        }
    }
#pragma GCC unroll 3
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int q = 0; q < np; ++q)
            FN(pg_add)(C + (size_t)i * ldc + q * PG_NR, acc[i][2 * q], acc[i][2 * q + 1],
                       q < np - 1 ? PG_NR : nr);
}

/* C (M,N) += A (M,K) Bm, Bm packed by pg_pack_b at bp; A copied into the A
 * block ap (pg_ablock_size(M, K) REALs) unless M = 1. */
__attribute__((target("avx2,fma"))) static void
FN(pg_gemm)(int M, int N, int K, const REAL *A, int lda, REAL *C, int ldc, const REAL *bp,
            REAL *ap)
{
    if (M == 1) {  /* one row: read A in place, four panels at a time */
        for (int j = 0; j < N; j += 4 * PG_NR) {
            const int left = (N - j + PG_NR - 1) / PG_NR;   /* panels from j on */
            const int np = left < 4 ? left : 4;
            const int nr = left > 4 ? PG_NR : N - j - (np - 1) * PG_NR;
            const REAL *b = bp + (size_t)j * K;
            switch (np) {
            case 4: FN(pg_row)(4, nr, K, A, b, C + j); break;
            case 3: FN(pg_row)(3, nr, K, A, b, C + j); break;
            case 2: FN(pg_row)(2, nr, K, A, b, C + j); break;
            default: FN(pg_row)(1, nr, K, A, b, C + j); break;
            }
        }
        return;
    }
    for (int i = 0; i < M; i += PG_MR) {
        REAL *dst = ap + (size_t)i * K;
        for (int ii = 0; ii < PG_MR; ++ii) {
            if (i + ii < M) {
                const REAL *src = A + (size_t)(i + ii) * lda;
                for (int k = 0; k < K; ++k) dst[(size_t)k * PG_MR + ii] = src[k];
            } else {
                for (int k = 0; k < K; ++k) dst[(size_t)k * PG_MR + ii] = 0;
            }
        }
    }
    const int mr = M % PG_MR <= 3 ? M % PG_MR : 0;   /* rows left to pg_thin, 0..3 */
    const int mfull = M - mr;                          /* rows in MR x NR blocks (the last 4-6) */
    const int gp = mr == 1 ? 4 : 2;                    /* pg_thin's panels */
    const size_t ps = (size_t)K * PG_NR;               /* one panel */
    /* gp panels at a time: each panel against every MR x NR block, then the
     * group against the thin rows while it is still in L2 */
    for (int j0 = 0; j0 < N; j0 += gp * PG_NR) {
        for (int j = j0; j < N && j < j0 + gp * PG_NR; j += PG_NR) {
            const int nr = N - j < PG_NR ? N - j : PG_NR;
            for (int i = 0; i < mfull; i += PG_MR) {
                const REAL *a = ap + (size_t)i * K, *b = bp + (size_t)j * K;
                REAL *c = C + (size_t)i * ldc + j;
                switch (mfull - i < PG_MR ? mfull - i : PG_MR) {
                case 6: FN(pg_block)(6, nr, K, a, b, c, ldc); break;
                case 5: FN(pg_block)(5, nr, K, a, b, c, ldc); break;
                default: FN(pg_block)(4, nr, K, a, b, c, ldc); break;
                }
            }
        }
        if (mr == 0) continue;
        const int left = (N - j0 + PG_NR - 1) / PG_NR;      /* panels from j0 on */
        const int np = left < gp ? left : gp;
        const int nr = N - j0 - (np - 1) * PG_NR < PG_NR ? N - j0 - (np - 1) * PG_NR : PG_NR;
        const REAL *a = ap + (size_t)mfull * K, *b = bp + (size_t)j0 * K;
        REAL *c = C + (size_t)mfull * ldc + j0;
        switch (mr * 8 + np) {
        case 3 * 8 + 2: FN(pg_thin)(3, 2, nr, K, a, b, ps, c, ldc); break;
        case 3 * 8 + 1: FN(pg_thin)(3, 1, nr, K, a, b, ps, c, ldc); break;
        case 2 * 8 + 2: FN(pg_thin)(2, 2, nr, K, a, b, ps, c, ldc); break;
        case 2 * 8 + 1: FN(pg_thin)(2, 1, nr, K, a, b, ps, c, ldc); break;
        case 1 * 8 + 4: FN(pg_thin)(1, 4, nr, K, a, b, ps, c, ldc); break;
        case 1 * 8 + 3: FN(pg_thin)(1, 3, nr, K, a, b, ps, c, ldc); break;
        case 1 * 8 + 2: FN(pg_thin)(1, 2, nr, K, a, b, ps, c, ldc); break;
        default: FN(pg_thin)(1, 1, nr, K, a, b, ps, c, ldc); break;
        }
    }
}

#undef PG_MR
#undef PG_NR
