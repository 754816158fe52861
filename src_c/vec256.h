/* vec256.h -- the 256-bit vector macros pgemm_impl.h is written in, for the
 * includer's REAL: define VEC256_DOUBLE as 0 (float) or 1 (double), then
 * include; each inclusion replaces the macros of the one before. The types
 * and intrinsics come from <immintrin.h>, which only code that expands the
 * macros needs. */
#undef V
#undef VL
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VADD
#undef VFMA
#undef VBCAST
#if VEC256_DOUBLE
#define V __m256d
#define VL 4
#define VZERO _mm256_setzero_pd
#define VLOAD _mm256_loadu_pd
#define VSTORE _mm256_storeu_pd
#define VADD _mm256_add_pd
#define VFMA _mm256_fmadd_pd
#define VBCAST _mm256_broadcast_sd
#else
#define V __m256
#define VL 8
#define VZERO _mm256_setzero_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VADD _mm256_add_ps
#define VFMA _mm256_fmadd_ps
#define VBCAST _mm256_broadcast_ss
#endif
