// Attention's softmax for the bf16 products (Sources/Core/Tensor/AttentionBF16.swift), 16 lanes at a
// time: the Swift engine is compiled for x86-64-v3 (8 lanes), and these rows are the largest
// elementwise work of a UNet pass (4096 × 4096 scores per head at SD 1.5's first level).
#include "bf16_layout.h"
#include <string.h>
#if defined(__x86_64__)

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

/// 2^t for t ≤ 0, 16 lanes: t = n + f with n = round(t), 2^f by a degree-5 polynomial on [−½, ½]
/// (relative error 2.2·10⁻⁷ evaluated in float: a float's own rounding), 2^n applied by vscalefps.
/// Nine operations where exp16 takes seventeen; t is kept ≥ −125 so no result is subnormal.
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

/// Softmax over keys of up to 32 query lines (two vectors; `lanes` real) whose scores are stored by
/// key (column `line0` onwards of scores_t, row stride `ld`), written as bf16 pairs of keys straight
/// into B's packed columns at line w of `panel`: per pair, the lines' words are adjacent
/// (pair-major), so whole-vector stores. Both vectors in one sweep: each key's row is read once per
/// pass, not once per half.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void softmax_pack_lines32(const float *scores_t, ptrdiff_t ld, int keys, float scale, int lanes,
                                 const xattn_bf16_packed *packed, int panel, int w, float *inverse) {
    const int halves = lanes > 16 ? 2 : 1;
    __mmask16 k[2];
    for (int h = 0; h < 2; h++) {
        const int real = lanes - 16 * h;
        k[h] = real >= 16 ? 0xFFFF : real <= 0 ? 0 : (__mmask16)((1u << real) - 1);
    }
    __m512 m[2] = {_mm512_set1_ps(-__builtin_inff()), _mm512_set1_ps(-__builtin_inff())};
    for (int key = 0; key < keys; key++)
        for (int h = 0; h < halves; h++) m[h] = _mm512_max_ps(m[h], _mm512_maskz_loadu_ps(k[h], scores_t + key * ld + 16 * h));
    // exp(scale·(s − max)) = 2^(s·scale·log₂e − max·scale·log₂e): one FMA into exp2's argument.
    const __m512 factor = _mm512_set1_ps(scale * 1.44269504088896341f);
    const __m512 shift[2] = {_mm512_mul_ps(m[0], factor), _mm512_mul_ps(m[1], factor)};
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const int width = width_of(packed);
    __m512 sum[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int block = 0; block < block_count(packed); block++) {
        const int pairs = block_pairs(packed, block), first = block * block_depth(packed);
        uint32_t *out = packed->words + block_offset(packed, block) + (size_t)panel * width * pairs + w;
        for (int p = 0; p < pairs; p++) {
            const int key = first + 2 * p;
            for (int h = 0; h < halves; h++) {
                __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
                if (key < keys) {
                    const float *row = scores_t + key * ld + 16 * h;
                    even = _mm512_maskz_mov_ps(k[h], exp2_nonpositive16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k[h], row), factor, shift[h])));
                    if (key + 1 < keys)
                        odd = _mm512_maskz_mov_ps(k[h], exp2_nonpositive16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k[h], row + ld), factor, shift[h])));
                    sum[h] = _mm512_add_ps(sum[h], _mm512_add_ps(even, odd));
                }
                _mm512_storeu_si512(out + (size_t)p * width + 16 * h, _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(odd, even)));
            }
        }
    }
    float sums[32];
    _mm512_storeu_ps(sums, sum[0]);
    _mm512_storeu_ps(sums + 16, sum[1]);
    for (int l = 0; l < lanes; l++) inverse[l] = 1.0f / sums[l];
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

int xattn_softmax_pack_columns(const float *scores_t, ptrdiff_t ld, int keys, float scale, const xattn_bf16_packed *packed,
                               float *inverse) {
#if defined(__x86_64__)
    if (!xattn_cpu_has_avx512_bf16() || packed->side != XATTN_BF16_COLUMNS || packed->depth != keys) return 0;
    const int width = width_of(packed), lines = packed->lines;  // width 32: one call per panel
    for (int panel = 0; panel < panel_count(lines, width); panel++) {
        const int line = panel * width;
        const int lanes = lines - line >= 32 ? 32 : lines - line;
        softmax_pack_lines32(scores_t + line, ld, keys, scale, lanes, packed, panel, 0, inverse + line);
        if (lanes <= 16)  // the panel's second half: zero words (lines past the end)
            for (int block = 0; block < block_count(packed); block++) {
                const int pairs = block_pairs(packed, block);
                uint32_t *out = packed->words + block_offset(packed, block) + (size_t)panel * width * pairs + 16;
                for (int p = 0; p < pairs; p++) memset(out + (size_t)p * width, 0, 16 * sizeof(uint32_t));
            }
    }
    return 1;
#else
    (void)scores_t; (void)ld; (void)keys; (void)scale; (void)packed; (void)inverse;
    return 0;
#endif
}
