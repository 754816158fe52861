/* transpose_impl.h -- the scalar transpose, one value at a time: what
 * pg_transpose (pgemm_impl.h) leaves at the edges of its register blocks
 * and all of FN(transpose) (elman_impl.h) on CPUs without AVX2. Included
 * with REAL and FN defined, by elman_impl.h and by bench/pgemm_ab.c.
 *
 * out[c * ldo + r] (+)= in[r * ldi + c] (added to out's values with add) for
 * r < R, c < C but the block r < rv, c < cv, which pg_transpose does in
 * registers (rv = cv = 0: all of it). */
static void FN(transpose_rest)(REAL *out, size_t ldo, const REAL *in, size_t ldi, int R,
                               int C, int rv, int cv, int add)
{
    for (int r = 0; r < R; ++r)
        for (int c = r < rv ? cv : 0; c < C; ++c) {
            REAL *o = out + (size_t)c * ldo + r;
            *o = add ? *o + in[(size_t)r * ldi + c] : in[(size_t)r * ldi + c];
        }
}
