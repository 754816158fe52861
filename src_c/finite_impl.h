/* finite_impl.h -- crnn_all_finite for float and double, included twice by
 * elman.c with REAL (float|double), SFX (f32|f64), UREAL (the unsigned integer
 * of REAL's width), ABS_MASK (every bit but the sign) and EXP_ONE (the lowest
 * exponent bit) defined; it #undefs the last three, elman.c the others.
 *
 * A value is NaN or inf when its exponent field is all ones, that is when its
 * magnitude bits u & ABS_MASK are at least those of inf; adding EXP_ONE then
 * carries into the sign bit (and never beyond it). OR-ing these sums into an
 * integer is a reduction GCC may reorder, so it vectorises without fast-math,
 * which a float reduction does not. The values are read in blocks of
 * FINITE_BLOCK, a fixed trip count, and the first block holding a non-finite
 * value ends the scan. */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

#define FINITE_BLOCK 1024
#define SIGN_BIT (~(UREAL)ABS_MASK)

/* The OR over a[0..n) of (bits & ABS_MASK) + EXP_ONE: its sign bit is set
 * when a value is NaN or inf. */
static inline UREAL FN(nonfinite_bits)(const REAL *a, size_t n)
{
    UREAL acc = 0;
    for (size_t i = 0; i < n; ++i) {
        UREAL u;
        memcpy(&u, a + i, sizeof u);
        acc |= (u & ABS_MASK) + EXP_ONE;
    }
    return acc;
}

/* 1 when a[0..n) holds no NaN and no inf. */
CRNN_CLONES static int FN(span_finite)(const REAL *a, size_t n)
{
    size_t i = 0;
    for (; n - i >= FINITE_BLOCK; i += FINITE_BLOCK)
        if (FN(nonfinite_bits)(a + i, FINITE_BLOCK) & SIGN_BIT) return 0;
    return !(FN(nonfinite_bits)(a + i, n - i) & SIGN_BIT);
}

int FN(crnn_all_finite)(const REAL *a, int64_t rows, int64_t F, const int64_t *lengths, int B)
{
    if (rows <= 0 || F <= 0) return 1;
    if (!lengths || B < 1) return FN(span_finite)(a, (size_t)rows * (size_t)F);
    /* row r = t*B + b; runs of consecutive valid rows are read as one span */
    int64_t run = -1;  /* first row of the current run of valid rows, or -1 */
    int64_t t = 0;
    int b = 0;
    for (int64_t r = 0; r < rows; ++r) {
        if (t < lengths[b]) {
            if (run < 0) run = r;
        } else if (run >= 0) {
            if (!FN(span_finite)(a + (size_t)run * (size_t)F, (size_t)(r - run) * (size_t)F))
                return 0;
            run = -1;
        }
        if (++b == B) {
            b = 0;
            ++t;
        }
    }
    return run < 0 || FN(span_finite)(a + (size_t)run * (size_t)F, (size_t)(rows - run) * (size_t)F);
}

#undef UREAL
#undef ABS_MASK
#undef EXP_ONE
#undef SIGN_BIT
#undef FINITE_BLOCK
#undef FN
#undef CAT
#undef CAT_
