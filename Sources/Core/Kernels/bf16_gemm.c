// bf16 products with float accumulation (docs/PERFORMANCE.md, "bf16"): packing and two kernels
// with one layout, the AVX512-BF16 one (vdpbf16ps) and a portable one that computes the same sums.
#include "xattn_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define XATTN_X86 1
#endif

static int probe_avx512_bf16(void) {
#if XATTN_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int osxsave = (ecx >> 27) & 1;
    if (!osxsave) return 0;
    // XCR0: SSE (1), AVX (2), opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7) state saved by the OS.
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int avx512f = (ebx >> 16) & 1, avx512bw = (ebx >> 30) & 1;
    if (!avx512f || !avx512bw) return 0;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return 0;
    return (eax >> 5) & 1;  // AVX512_BF16
#else
    return 0;
#endif
}

int xattn_cpu_has_avx512_bf16(void) {
    static int known = -1;  // -1: not probed yet; a race only probes twice
    int value = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (value < 0) {
        value = probe_avx512_bf16();
        __atomic_store_n(&known, value, __ATOMIC_RELAXED);
    }
    return value;
}

uint16_t xattn_bf16_from_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // quiet NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float xattn_float_from_bf16(uint16_t bits) {
    uint32_t wide = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &wide, 4);
    return value;
}

static int panel_count(int lines, int width) { return (lines + width - 1) / width; }
static int block_pairs(int depth, int block) {
    int rest = depth - block * XATTN_BF16_KC;
    return ((rest < XATTN_BF16_KC ? rest : XATTN_BF16_KC) + 1) / 2;
}
/// First word of depth block `block`: every earlier block is full (KC/2 pairs per line).
static size_t block_offset(const xattn_bf16_packed *p, int block) {
    return (size_t)panel_count(p->lines, p->width) * p->width * (size_t)block * (XATTN_BF16_KC / 2);
}

size_t xattn_bf16_packed_words(int lines, int depth, int width) {
    return (size_t)panel_count(lines, width) * width * (size_t)((depth + 1) / 2);
}

#if XATTN_X86
/// 16 lines at once when lines are contiguous (line_stride 1): two rows of depth converted by
/// vcvtne2ps2bf16 and interleaved into pairs.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void pack_pairs16_avx512(const float *d0, const float *d1, uint32_t *out) {
    __m512 even = _mm512_loadu_ps(d0);
    __m512 odd = d1 ? _mm512_loadu_ps(d1) : _mm512_setzero_ps();
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // [0,16): even, [16,32): odd
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    _mm512_storeu_si512(out, _mm512_permutexvar_epi16(order, both));
}

/// One line whose depth is contiguous (depth_stride 1): `count` floats → count/2 words (pairs in
/// memory order are exactly the packed words), converted 32 at a time, zero past `count`.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void convert_run_avx512(const float *source, int count, uint32_t *words) {
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

/// Depth-contiguous lines (rows of A, or Bᵀ stored by rows): each line's run of a depth block is
/// converted at once into a small buffer, then its words are spread to their places in the panel.
static int pack_depth_contiguous(const float *source, ptrdiff_t line_stride, const xattn_bf16_packed *packed,
                                 int first_panel, int end_panel) {
#if XATTN_X86
    if (!xattn_cpu_has_avx512_bf16()) return 0;
    const int width = packed->width, lines = packed->lines, depth = packed->depth;
    const int blocks = (depth + XATTN_BF16_KC - 1) / XATTN_BF16_KC;
    uint32_t run[XATTN_BF16_KC / 2 + 16];
    for (int block = 0; block < blocks; block++) {
        const int pairs = block_pairs(depth, block);
        const int start = block * XATTN_BF16_KC;
        const int count = depth - start < XATTN_BF16_KC ? depth - start : XATTN_BF16_KC;
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int panel = first_panel; panel < end_panel; panel++) {
            uint32_t *out = base + (size_t)panel * width * pairs;
            for (int w = 0; w < width; w++) {
                const int line = panel * width + w;
                if (line < lines) {
                    convert_run_avx512(source + line * line_stride + start, count, run);
                    for (int p = 0; p < pairs; p++) out[p * width + w] = run[p];
                } else {
                    for (int p = 0; p < pairs; p++) out[p * width + w] = 0;
                }
            }
        }
    }
    return 1;
#else
    (void)source; (void)line_stride; (void)packed; (void)first_panel; (void)end_panel;
    return 0;
#endif
}

void xattn_bf16_pack(const float *source, ptrdiff_t line_stride, ptrdiff_t depth_stride,
                     const xattn_bf16_packed *packed, int first_line, int end_line) {
    const int width = packed->width, lines = packed->lines, depth = packed->depth;
    const int blocks = (depth + XATTN_BF16_KC - 1) / XATTN_BF16_KC;
    const int first_panel = first_line / width, end_panel = panel_count(end_line, width);
    if (depth_stride == 1 && line_stride != 1 &&
        pack_depth_contiguous(source, line_stride, packed, first_panel, end_panel)) return;
#if XATTN_X86
    const int vector = line_stride == 1 && width % 16 == 0 && xattn_cpu_has_avx512_bf16();
#else
    const int vector = 0;
#endif
    for (int block = 0; block < blocks; block++) {
        const int pairs = block_pairs(depth, block);
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int panel = first_panel; panel < end_panel; panel++) {
            uint32_t *out = base + (size_t)panel * width * pairs;
            for (int p = 0; p < pairs; p++, out += width) {
                const int d = block * XATTN_BF16_KC + 2 * p;
                const float *even = source + d * depth_stride;
                const float *odd = d + 1 < depth ? even + depth_stride : NULL;
                for (int w = 0; w < width;) {
                    const int line = panel * width + w;
#if XATTN_X86
                    if (vector && line + 16 <= lines) {
                        pack_pairs16_avx512(even + line, odd ? odd + line : NULL, out + w);
                        w += 16;
                        continue;
                    }
#endif
                    uint32_t word = 0;
                    if (line < lines) {
                        word = xattn_bf16_from_float(even[line * line_stride]);
                        if (odd) word |= (uint32_t)xattn_bf16_from_float(odd[line * line_stride]) << 16;
                    }
                    out[w++] = word;
                }
            }
        }
    }
    (void)vector;
}

/// Calls `tile` for every (A panel, B panel) of every depth block, B panel outermost within a
/// block so that B's panel (KC/2 × NR words, 16 KiB) stays in L1 while A's panels stream by.
#define XATTN_FOR_EACH_TILE(tile)                                                                  \
    const int blocks = (a->depth + XATTN_BF16_KC - 1) / XATTN_BF16_KC;                              \
    if (blocks == 0 && !accumulate) {                                                               \
        for (int ap = a_first; ap < a_end; ap++)                                                    \
            for (int i = ap * XATTN_BF16_MR; i < a->lines && i < (ap + 1) * XATTN_BF16_MR; i++) {   \
                int j0 = b_first * XATTN_BF16_NR, j1 = b_end * XATTN_BF16_NR;                       \
                if (j1 > b->lines) j1 = b->lines;                                                   \
                if (j1 > j0) memset(c + i * ldc + j0, 0, (size_t)(j1 - j0) * sizeof(float));        \
            }                                                                                       \
    }                                                                                               \
    for (int block = 0; block < blocks; block++) {                                                  \
        const int pairs = block_pairs(a->depth, block);                                             \
        const uint32_t *a_block = a->words + block_offset(a, block);                                \
        const uint32_t *b_block = b->words + block_offset(b, block);                                \
        for (int bp = b_first; bp < b_end; bp++) {                                                  \
            const uint32_t *b_panel = b_block + (size_t)bp * XATTN_BF16_NR * pairs;                 \
            const int left = b->lines - bp * XATTN_BF16_NR;                                         \
            const int cols = left < XATTN_BF16_NR ? left : XATTN_BF16_NR;                           \
            for (int ap = a_first; ap < a_end; ap++) {                                              \
                const uint32_t *a_panel = a_block + (size_t)ap * XATTN_BF16_MR * pairs;             \
                const int above = a->lines - ap * XATTN_BF16_MR;                                    \
                const int rows = above < XATTN_BF16_MR ? above : XATTN_BF16_MR;                     \
                tile(pairs, a_panel, b_panel, c + (ptrdiff_t)ap * XATTN_BF16_MR * ldc +             \
                     bp * XATTN_BF16_NR, ldc, rows, cols, accumulate || block > 0);                 \
            }                                                                                       \
        }                                                                                           \
    }

#if XATTN_X86
/// One MR×NR tile over one depth block: 28 accumulators, two B vectors, A's pair broadcast.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void tile_avx512(int pairs, const uint32_t *a, const uint32_t *b, float *c, ptrdiff_t ldc,
                        int rows, int cols, int accumulate) {
    __m512 low[XATTN_BF16_MR], high[XATTN_BF16_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < XATTN_BF16_MR; i++) low[i] = high[i] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++, a += XATTN_BF16_MR, b += XATTN_BF16_NR) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < XATTN_BF16_MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            low[i] = _mm512_dpbf16_ps(low[i], ai, b0);
            high[i] = _mm512_dpbf16_ps(high[i], ai, b1);
        }
    }
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
#pragma clang loop unroll(full)
    for (int i = 0; i < XATTN_BF16_MR; i++) {
        if (i >= rows) break;
        float *row = c + i * ldc;
        __m512 v0 = low[i], v1 = high[i];
        if (accumulate) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row + 16), v1);
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row + 16, m1, v1);
    }
}
#endif

void xattn_bf16_gemm_avx512(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                            int a_first, int a_end, int b_first, int b_end,
                            float *c, ptrdiff_t ldc, int accumulate) {
#if XATTN_X86
    XATTN_FOR_EACH_TILE(tile_avx512)
#else
    xattn_bf16_gemm_portable(a, b, a_first, a_end, b_first, b_end, c, ldc, accumulate);
#endif
}

/// The sums vdpbf16ps forms, in its order: per pair, the odd product then the even one, each added
/// to the float accumulator (both products are exact in float: 8-bit by 8-bit significands).
static void tile_portable(int pairs, const uint32_t *a, const uint32_t *b, float *c, ptrdiff_t ldc,
                          int rows, int cols, int accumulate) {
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            float sum = 0;
            for (int p = 0; p < pairs; p++) {
                const uint32_t x = a[p * XATTN_BF16_MR + i], y = b[p * XATTN_BF16_NR + j];
                sum += xattn_float_from_bf16((uint16_t)(x >> 16)) * xattn_float_from_bf16((uint16_t)(y >> 16));
                sum += xattn_float_from_bf16((uint16_t)x) * xattn_float_from_bf16((uint16_t)y);
            }
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
        }
    }
}

void xattn_bf16_gemm_portable(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                              int a_first, int a_end, int b_first, int b_end,
                              float *c, ptrdiff_t ldc, int accumulate) {
    XATTN_FOR_EACH_TILE(tile_portable)
}
