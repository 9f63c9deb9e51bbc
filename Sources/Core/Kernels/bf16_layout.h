// The packed bf16 layout's arithmetic (include/xattn_kernels.h, xattn_bf16_packed), shared by the
// packing and product code in this directory. Private to the CKernels target.
#ifndef XATTN_BF16_LAYOUT_H
#define XATTN_BF16_LAYOUT_H

#include "xattn_kernels.h"
#include <stddef.h>
#include <stdint.h>
#if defined(__x86_64__)
#include <immintrin.h>
#ifndef XATTN_X86
#define XATTN_X86 1
#endif
#endif

/// Lines per panel (xattn_bf16_width), inline: packers ask it per panel and pair.
static inline int width_of(const xattn_bf16_packed *p) {
    return p->side == XATTN_BF16_COLUMNS ? 32 : p->kernel == XATTN_BF16_AMX ? 16 : 14;
}
static inline int panel_count(int lines, int width) { return (lines + width - 1) / width; }
static inline int pair_multiple(const xattn_bf16_packed *p) { return p->kernel == XATTN_BF16_AMX ? 16 : 1; }
/// AMX's rows: 16 pairs of one line are adjacent (a tile row), tiles of 16 lines one after another.
static inline int tiled_rows(const xattn_bf16_packed *p) { return p->kernel == XATTN_BF16_AMX && p->side == XATTN_BF16_ROWS; }

/// Depth per block (xattn_kernels.h): XATTN_BF16_KC for the vector kernel, XATTN_BF16_AMX_KC for AMX.
static inline int block_depth(const xattn_bf16_packed *p) { return p->kernel == XATTN_BF16_AMX ? XATTN_BF16_AMX_KC : XATTN_BF16_KC; }

static inline int block_pairs(const xattn_bf16_packed *p, int block) {
    const int kc = block_depth(p);
    const int rest = p->depth - block * kc;
    const int pairs = ((rest < kc ? rest : kc) + 1) / 2;
    const int multiple = pair_multiple(p);
    return (pairs + multiple - 1) / multiple * multiple;
}
/// First word of depth block `block`: every earlier block is full (kc/2 pairs per line, a multiple of 16).
static inline size_t block_offset(const xattn_bf16_packed *p, int block) {
    return (size_t)panel_count(p->lines, width_of(p)) * width_of(p) * (size_t)block * (block_depth(p) / 2);
}
static inline int block_count(const xattn_bf16_packed *p) { return (p->depth + block_depth(p) - 1) / block_depth(p); }


/// Where word (pair, line w of the panel) goes inside a panel of `pairs` pairs.
static inline size_t word_index(const xattn_bf16_packed *p, int pairs, int pair, int w) {
    return tiled_rows(p) ? ((size_t)(pair / 16) * width_of(p) + w) * 16 + pair % 16 : (size_t)pair * width_of(p) + w;
}

#if XATTN_X86
/// 16 lines at once when lines are contiguous (line_stride 1): two rows of depth converted by
/// vcvtne2ps2bf16 and interleaved into pairs.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline void pack_pairs16_avx512(const float *d0, const float *d1, uint32_t *out) {
    __m512 even = _mm512_loadu_ps(d0);
    __m512 odd = d1 ? _mm512_loadu_ps(d1) : _mm512_setzero_ps();
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // [0,16): even, [16,32): odd
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    _mm512_storeu_si512(out, _mm512_permutexvar_epi16(order, both));
}

/// One line whose depth is contiguous (depth_stride 1): `count` floats → count/2 words (pairs in
/// memory order are exactly the packed words), converted 32 at a time, zero up to a multiple of 16 words.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline void convert_run_avx512(const float *source, int count, uint32_t *words) {
    for (int d = 0; d < count; d += 32) {
        const int left = count - d;
        const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        const __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        const __m512 low = _mm512_maskz_loadu_ps(m0, source + d);
        const __m512 high = _mm512_maskz_loadu_ps(m1, source + d + 16);
        _mm512_storeu_si512(words + d / 2, (__m512i)_mm512_cvtne2ps_pbh(high, low));
    }
}
#endif


/// The words of pair `p` for the lines of one panel (`out`: the panel's first word in its block of
/// `pairs` pairs): line l's word holds even[l·stride] and odd[l·stride] (odd NULL: zero; even NULL:
/// a zero word), 16 lines at a time with AVX512-BF16 when `vector` and the lines are contiguous.
static inline void pack_panel_pair(const xattn_bf16_packed *packed, uint32_t *out, int pairs, int p, int panel,
                                   const float *even, const float *odd, ptrdiff_t stride, int vector) {
    const int width = width_of(packed), lines = packed->lines;
    for (int w = 0; w < width;) {
        const int line = panel * width + w;
#if XATTN_X86
        if (vector && stride == 1 && even && line + 16 <= lines && w + 16 <= width) {
            if (!tiled_rows(packed)) {
                // Pair-major: the 16 words are adjacent, one vector store.
                pack_pairs16_avx512(even + line, odd ? odd + line : NULL, out + word_index(packed, pairs, p, w));
            } else {
                uint32_t words[16];
                pack_pairs16_avx512(even + line, odd ? odd + line : NULL, words);
                for (int i = 0; i < 16; i++) out[word_index(packed, pairs, p, w + i)] = words[i];
            }
            w += 16;
            continue;
        }
#endif
        uint32_t word = 0;
        if (line < lines && even) {
            word = xattn_bf16_from_float(even[line * stride]);
            if (odd) word |= (uint32_t)xattn_bf16_from_float(odd[line * stride]) << 16;
        }
        out[word_index(packed, pairs, p, w)] = word;
        w++;
    }
    (void)vector;
}

#endif
