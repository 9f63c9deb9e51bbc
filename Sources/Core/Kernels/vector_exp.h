// Vector exponentials shared by the attention kernels in this directory. Private to CKernels.
#ifndef XATTN_VECTOR_EXP_H
#define XATTN_VECTOR_EXP_H
#if defined(__x86_64__)
#include <immintrin.h>

/// 2^t for t ≤ 0, 16 lanes: t = n + f with n = round(t), 2^f by a degree-5 polynomial on [−½, ½]
/// (relative error 2.2·10⁻⁷ evaluated in float: a float's own rounding), 2^n applied by vscalefps.
/// Nine operations where a Cody–Waite e^x takes seventeen; t is kept ≥ −125 so no result is
/// subnormal (and −∞ gives 2⁻¹²⁵, not NaN).
__attribute__((target("avx512f")))
static inline __m512 exp2_nonpositive16(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-125.0f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3266970636323094e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.675459936261177e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550742521882057e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022121727466583e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469440460205e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(p, n);
}
#endif
#endif
