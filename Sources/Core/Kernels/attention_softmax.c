// Attention's softmax for the bf16 products (Sources/Core/Tensor/AttentionBF16.swift), 16 lanes at a
// time: the Swift engine is compiled for x86-64-v3 (8 lanes), and these rows are the largest
// elementwise work of a UNet pass (4096 × 4096 scores per head at SD 1.5's first level).
#include "xattn_kernels.h"
#if defined(__x86_64__)
#include <immintrin.h>

/// e^x with the engine's vexp (VectorMath.swift): Cody–Waite reduction by ln 2, degree-6 polynomial,
/// 2^n built in the exponent field; the same constants, so both paths round alike.
__attribute__((target("avx512f")))
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000));
    return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(127)), 23)));
}

__attribute__((target("avx512f")))
static void softmax_rows_avx512(float *scores, ptrdiff_t ld, int rows, int keys, float scale, float *inverse) {
    for (int row = 0; row < rows; row++) {
        float *x = scores + row * ld;
        __m512 m = _mm512_set1_ps(-__builtin_inff());
        for (int i = 0; i < keys; i += 16) {
            const __mmask16 k = keys - i >= 16 ? 0xFFFF : (__mmask16)((1u << (keys - i)) - 1);
            m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
        }
        const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(m) * scale), factor = _mm512_set1_ps(scale);
        __m512 sum = _mm512_setzero_ps();
        for (int i = 0; i < keys; i += 16) {
            const __mmask16 k = keys - i >= 16 ? 0xFFFF : (__mmask16)((1u << (keys - i)) - 1);
            const __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + i), factor, shift));
            _mm512_mask_storeu_ps(x + i, k, e);
            sum = _mm512_mask_add_ps(sum, k, sum, e);
        }
        inverse[row] = 1.0f / _mm512_reduce_add_ps(sum);
    }
}
#endif

int xattn_softmax_unnormalised(float *scores, ptrdiff_t ld, int rows, int keys, float scale, float *inverse) {
#if defined(__x86_64__)
    if (!xattn_cpu_has_avx512_bf16()) return 0;
    softmax_rows_avx512(scores, ld, rows, keys, scale, inverse);
    return 1;
#else
    (void)scores; (void)ld; (void)rows; (void)keys; (void)scale; (void)inverse;
    return 0;
#endif
}
