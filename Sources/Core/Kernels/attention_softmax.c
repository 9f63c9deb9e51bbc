// Attention's softmax for the bf16 products (Sources/Core/Tensor/AttentionBF16.swift), 16 lanes at a
// time: the Swift engine is compiled for x86-64-v3 (8 lanes), and these rows are the largest
// elementwise work of a UNet pass (4096 × 4096 scores per head at SD 1.5's first level).
#include "bf16_layout.h"
#include "vector_exp.h"
#include <string.h>
#if defined(__x86_64__)

/// Softmax over keys of up to 32 query lines (two vectors; `lanes` real) whose scores are stored by
/// key (column `line0` onwards of scores_t, row stride `ld`), written as bf16 pairs of keys straight
/// into B's packed columns at line w of `panel`: per pair, the lines' words are adjacent
/// (pair-major), so whole-vector stores. Both vectors in one sweep: each key's row is read once per
/// pass, not once per half.
/// `halves` is a constant at each call (softmax_pack_lines32): the loop over halves unrolls and the
/// sums stay in registers. With it a run-time count, the sums lived on the stack, and each key
/// pair's add waited on the last one's store (measured 2× slower).
__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline))
static inline void softmax_pack_halves(const float *scores_t, ptrdiff_t ld, int keys, float scale, int lanes, const int halves,
                                       const xattn_bf16_packed *packed, int panel, int w, float *inverse) {
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

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void softmax_pack_lines32(const float *scores_t, ptrdiff_t ld, int keys, float scale, int lanes,
                                 const xattn_bf16_packed *packed, int panel, int w, float *inverse) {
    if (lanes > 16) softmax_pack_halves(scores_t, ld, keys, scale, lanes, 2, packed, panel, w, inverse);
    else softmax_pack_halves(scores_t, ld, keys, scale, lanes, 1, packed, panel, w, inverse);
}
#endif

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
