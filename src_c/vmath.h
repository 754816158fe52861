/* vmath.h -- tanh and sigmoid for float and double that GCC can vectorise:
 * straight-line arithmetic, selects and integer bit operations, no calls, no
 * branches (libm's tanh/exp are scalar calls, as costly as the recurrent
 * GEMM at small sizes). Accurate to a few ulp; tests compare them with
 * NumPy's over the whole range. No fast-math is needed or used.
 *
 * exp is split as e^v = 2^n e^r with n = round(v / ln 2), |r| <= ln2/2 and
 * r = v - n ln2_hi - n ln2_lo (ln2_hi has trailing zero bits, so n ln2_hi is
 * exact); e^r - 1 is its Taylor polynomial (degree 13 for double, 8 for
 * float: the first omitted term is below 1e-17 resp. 1e-8 relative);
 * n is read off the low mantissa bits after adding 1.5*2^52 (resp. 2^23),
 * and 2^n is built in the exponent field. */
#ifndef CRNN_VMATH_H
#define CRNN_VMATH_H

#include <stdint.h>
#include <string.h>

static inline double bits_to_f64(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static inline uint64_t f64_to_bits(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }
static inline float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

/* e^r - 1 for |r| <= ln2/2: r + r^2 q(r), q(r) = sum_{i=0..11} r^i / (i+2)!,
 * q by Estrin's scheme (pairs, then powers r^2, r^4, r^8), whose dependency
 * chain is four multiply-adds deep where Horner's is twelve: the activation
 * loop is latency-bound, and its terms are positive and decreasing, so the
 * rounding error is that of Horner's. */
static inline double expm1_poly_f64(double r)
{
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double p0 = 1.0 / 2 + r * (1.0 / 6);
    const double p1 = 1.0 / 24 + r * (1.0 / 120);
    const double p2 = 1.0 / 720 + r * (1.0 / 5040);
    const double p3 = 1.0 / 40320 + r * (1.0 / 362880);
    const double p4 = 1.0 / 3628800 + r * (1.0 / 39916800);
    const double p5 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    const double q = (p0 + r2 * p1) + r4 * (p2 + r2 * p3) + r8 * (p4 + r2 * p5);
    return q * r2 + r;
}

/* the same for float, q(r) = sum_{i=0..6} r^i / (i+2)!, three multiply-adds
 * deep where Horner's is seven */
static inline float expm1_poly_f32(float r)
{
    const float r2 = r * r, r4 = r2 * r2;
    const float p0 = 1.0f / 2 + r * (1.0f / 6);
    const float p1 = 1.0f / 24 + r * (1.0f / 120);
    const float p2 = 1.0f / 720 + r * (1.0f / 5040);
    const float q = (p0 + r2 * p1) + r4 * (p2 + r2 * (1.0f / 40320));
    return q * r2 + r;
}

#define LN2_HI_F64 0x1.62e42feep-1             /* ln 2 to 32 bits */
#define LN2_LO_F64 1.9082149292705877e-10      /* ln 2 - LN2_HI_F64, from 60-digit ln 2 */
#define LN2_HI_F32 0x1.62e4p-1f                 /* ln 2 to 16 bits */
#define LN2_LO_F32 1.4286068203094173e-06f      /* ln 2 - LN2_HI_F32, from 60-digit ln 2 */
#define INV_LN2 1.4426950408889634

/* tanh(x) = sign(x) E / (E + 2), E = e^{2|x|} - 1 = 2^n (e^r - 1) + (2^n - 1). */
static inline double crnn_tanh_f64(double x)
{
    double a = x < 0 ? -x : x;
    a = a > 22.0 ? 22.0 : a;                     /* tanh = 1 in double beyond 19.1; NaN stays */
    double y = 2 * a;
    double t = y * INV_LN2 + 0x1.8p52;           /* round to an integer n in the low bits */
    double n = t - 0x1.8p52;
    double r = (y - n * LN2_HI_F64) - n * LN2_LO_F64;
    double scale = bits_to_f64((f64_to_bits(t) + 1023) << 52);   /* 2^n, 0 <= n <= 64 */
    double E = scale * expm1_poly_f64(r) + (scale - 1);
    double v = E / (E + 2);
    return bits_to_f64(f64_to_bits(v) | (f64_to_bits(x) & 0x8000000000000000u));  /* sign of x, -0 too */
}

static inline float crnn_tanh_f32(float x)
{
    float a = x < 0 ? -x : x;
    a = a > 9.5f ? 9.5f : a;                     /* tanh = 1 in float beyond 9.02; NaN stays */
    float y = 2 * a;
    float t = y * (float)INV_LN2 + 0x1.8p23f;
    float n = t - 0x1.8p23f;
    float r = (y - n * LN2_HI_F32) - n * LN2_LO_F32;
    float scale = bits_to_f32((f32_to_bits(t) + 127) << 23);      /* 2^n, 0 <= n <= 28 */
    float E = scale * expm1_poly_f32(r) + (scale - 1);
    float v = E / (E + 2);
    return bits_to_f32(f32_to_bits(v) | (f32_to_bits(x) & 0x80000000u));
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, e = e^{-|x|};
 * 2^n is applied as two factors so that results down to the subnormals stay
 * accurate. */
static inline double crnn_sigmoid_f64(double x)
{
    double v = x < 0 ? x : -x;
    v = v < -746.0 ? -746.0 : v;                 /* e^-746 rounds to 0; NaN stays */
    double t = v * INV_LN2 + 0x1.8p52;
    double n = t - 0x1.8p52;
    double r = (v - n * LN2_HI_F64) - n * LN2_LO_F64;
    double t1 = (n * 0.5 - 0.25) + 0x1.8p52;     /* n in [-1077, 0] = n1 + n2, both >= -539 */
    double n1 = t1 - 0x1.8p52;
    double n2 = n - n1;
    double s1 = bits_to_f64((f64_to_bits(t1) + 1023) << 52);
    double s2 = bits_to_f64((f64_to_bits(n2 + 0x1.8p52) + 1023) << 52);
    double e = ((expm1_poly_f64(r) + 1) * s1) * s2;
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

static inline float crnn_sigmoid_f32(float x)
{
    float v = x < 0 ? x : -x;
    v = v < -104.0f ? -104.0f : v;               /* e^-104 rounds to 0 in float; NaN stays */
    float t = v * (float)INV_LN2 + 0x1.8p23f;
    float n = t - 0x1.8p23f;
    float r = (v - n * LN2_HI_F32) - n * LN2_LO_F32;
    float t1 = (n * 0.5f - 0.25f) + 0x1.8p23f;   /* n in [-151, 0] = n1 + n2, both >= -76 */
    float n1 = t1 - 0x1.8p23f;
    float n2 = n - n1;
    float s1 = bits_to_f32((f32_to_bits(t1) + 127) << 23);
    float s2 = bits_to_f32((f32_to_bits(n2 + 0x1.8p23f) + 127) << 23);
    float e = ((expm1_poly_f32(r) + 1) * s1) * s2;
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

#endif /* CRNN_VMATH_H */
