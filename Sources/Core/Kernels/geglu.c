// GEGLU's gate on 16 lanes (Sources/Core/Tensor/Activations.swift, gegluRow): the Swift engine is
// compiled for 8 lanes, and its erf divides; this is the same formula with a reciprocal estimate
// refined by one Newton step, and exp by vector_exp.h's base-2 polynomial.
#include "xattn_kernels.h"
#include "vector_exp.h"

#if defined(__x86_64__)
/// out = hidden · ½·g·(1 + erf(g/√2)) with erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷),
/// as VectorMath.swift's verf: erf(a) = 1 − (a₁t + … + a₅t⁵)·e^(−a²), t = 1/(1 + p·a), a = |x|.
__attribute__((target("avx512f")))
static void geglu16(const float *hidden, const float *gate, float *out, int count) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    for (int i = 0; i < count; i += 16) {
        const int left = count - i;
        const __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i), h = _mm512_maskz_loadu_ps(m, hidden + i);
        const __m512 a = _mm512_abs_ps(_mm512_mul_ps(g, _mm512_set1_ps(0.70710678118654752f)));
        const __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), one);
        __m512 t = _mm512_rcp14_ps(d);
        t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, two));  // Newton: relative error 2⁻²⁸ from 2⁻¹⁴
        __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
        p = _mm512_mul_ps(p, t);
        // e^(−a²) = 2^(−a²·log₂e), a nonpositive power (clamped at 2⁻¹²⁵, where p·e is far below float's 1).
        const __m512 e = exp2_nonpositive16(_mm512_mul_ps(_mm512_mul_ps(a, a), _mm512_set1_ps(-1.44269504088896341f)));
        const __m512 magnitude = _mm512_fnmadd_ps(p, e, one);                                   // erf(|x|)
        const __m512i signed_bits = _mm512_or_si512(_mm512_castps_si512(magnitude), _mm512_and_si512(_mm512_castps_si512(g), sign));
        const __m512 erf = _mm512_castsi512_ps(signed_bits);                                    // g's sign
        const __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), g), _mm512_add_ps(one, erf));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(h, gelu));
    }
}
#endif

int xattn_geglu(const float *hidden, const float *gate, float *out, int count) {
#if defined(__x86_64__)
    if (!xattn_cpu_has_avx512()) return 0;
    geglu16(hidden, gate, out, count);
    return 1;
#else
    (void)hidden; (void)gate; (void)out; (void)count;
    return 0;
#endif
}
