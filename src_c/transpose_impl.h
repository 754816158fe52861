/* transpose_impl.h -- the scalar transpose, one value at a time: what
 * pg_transpose (pgemm_impl.h) leaves at the edges of its register blocks
 * and all of FN(transpose) (elman_impl.h) on CPUs without AVX2. Included
 * with REAL and FN defined, by elman_impl.h and by bench/pgemm_ab.c.
 *
 * out[c * ldo + r] (+)= in[r * ldi + c] (+ bias[r]; the result added to
 * out's values with add) for r < R, c < C but the block r < rv, c < cv,
 * which pg_transpose does in registers (rv = cv = 0: all of it). bias: NULL
 * (nothing added, not even 0, which would turn -0 into +0) or R values. */
static void FN(transpose_rest)(REAL *out, size_t ldo, const REAL *in, size_t ldi, int R,
                               int C, int rv, int cv, int add, const REAL *bias)
{
    for (int r = 0; r < R; ++r)
        for (int c = r < rv ? cv : 0; c < C; ++c) {
            REAL *o = out + (size_t)c * ldo + r;
            const REAL v = bias ? in[(size_t)r * ldi + c] + bias[r] : in[(size_t)r * ldi + c];
            *o = add ? *o + v : v;
        }
}
