// bf16 products with float accumulation (docs/PERFORMANCE.md, "Precision"): packing, and three
// kernels: AMX tiles, AVX512-BF16 (vdpbf16ps), and a portable one that computes vdpbf16ps's sums.
#include "xattn_kernels.h"
#include <string.h>

#include <stdlib.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define XATTN_X86 1
#endif

/// 0: no AVX-512 here; 1: AVX512F and AVX512BW with the ZMM state saved by the OS; 2: also AVX512-BF16.
static int probe_avx512(void) {
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
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return 1;
    return (eax >> 5) & 1 ? 2 : 1;  // AVX512_BF16
#else
    return 0;
#endif
}

static int avx512_level(void) {
    static int known = -1;  // -1: not probed yet; a race only probes twice
    int value = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (value < 0) {
        value = probe_avx512();
        __atomic_store_n(&known, value, __ATOMIC_RELAXED);
    }
    return value;
}

int xattn_cpu_has_avx512(void) { return avx512_level() >= 1; }

int xattn_cpu_has_avx512_bf16(void) { return avx512_level() >= 2; }

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


/// AMX: CPUID.7.0:EDX bits 22 (AMX-BF16) and 24 (AMX-TILE), the OS's tile state in XCR0 (bits 17,
/// 18), and Linux's per-process permission for the tile data (arch_prctl ARCH_REQ_XCOMP_PERM).
static int probe_amx(void) {
#if XATTN_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    if (!((edx >> 22) & 1) || !((edx >> 24) & 1)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) return 0;
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

int xattn_bf16_kernel(void) {
    static int known = -1;
    int value = __atomic_load_n(&known, __ATOMIC_ACQUIRE);
    if (value < 0) {
        const char *asked = getenv("XATTN_BF16_KERNEL");
        const int avx512_only = asked && strcmp(asked, "avx512") == 0;
        value = !avx512_only && xattn_cpu_has_avx512_bf16() && probe_amx() ? XATTN_BF16_AMX
              : xattn_cpu_has_avx512_bf16() ? XATTN_BF16_AVX512 : XATTN_BF16_PORTABLE;
        __atomic_store_n(&known, value, __ATOMIC_RELEASE);
    }
    return value;
}

int xattn_bf16_is_faster(void) {
    const int kernel = xattn_bf16_kernel();
    if (kernel == XATTN_BF16_AMX) return 1;
    if (kernel != XATTN_BF16_AVX512) return 0;
#if XATTN_X86
    // Intel cores issue two float FMAs per cycle but one vdpbf16ps: no gain there. AMD's Zen 4
    // issues one of each, so bf16 doubles the rate.
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return 0;
    return !(ebx == 0x756e6547 && edx == 0x49656e69 && ecx == 0x6c65746e);  // not "GenuineIntel"
#else
    return 0;
#endif
}

#include "bf16_layout.h"
#include "vector_transpose.h"

int xattn_bf16_width(int kernel, int side) {
    const xattn_bf16_packed shape = {.side = side, .kernel = kernel};
    return width_of(&shape);
}

int xattn_bf16_depth_blocks(const xattn_bf16_packed *packed) { return block_count(packed); }

int xattn_bf16_block_depth(int kernel) {
    const xattn_bf16_packed shape = {.kernel = kernel};
    return block_depth(&shape);
}

xattn_bf16_packed xattn_bf16_depth_block(const xattn_bf16_packed *packed, int block) {
    xattn_bf16_packed part = *packed;
    const int rest = packed->depth - block * block_depth(packed);
    part.depth = rest < block_depth(packed) ? rest : block_depth(packed);
    part.words = packed->words + block_offset(packed, block);
    return part;
}

size_t xattn_bf16_packed_words(const xattn_bf16_packed *p) {
    const int blocks = block_count(p);
    if (blocks == 0) return 0;
    return block_offset(p, blocks - 1) + (size_t)panel_count(p->lines, width_of(p)) * width_of(p) * block_pairs(p, blocks - 1);
}

#if XATTN_X86
/// One panel of depth-contiguous lines into a pair-major layout (the columns of B: word (pair,
/// line) at pair·width + line): 16 lines × 16 pairs converted, transposed in registers and stored
/// as 16 whole vectors, instead of 256 words stored one by one `width` words apart (attention's
/// probabilities, every call). `run`: the panel's lines from the block's first depth on.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void pack_panel_transposed(const float *run, ptrdiff_t line_stride, int panel_lines, int count, int pairs,
                                  int width, uint32_t *out) {
    for (int group = 0; group < width; group += 16) {
        for (int p0 = 0; p0 < pairs; p0 += 16) {
            const int left = count - 2 * p0;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            const __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                if (group + i >= panel_lines) { r[i] = _mm512_setzero_si512(); continue; }
                const float *line = run + (group + i) * line_stride + 2 * p0;
                r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, line + 16), _mm512_maskz_loadu_ps(m0, line));
            }
            transpose16x16(r);
            const int n = pairs - p0 < 16 ? pairs - p0 : 16;
            for (int j = 0; j < n; j++) _mm512_storeu_si512(out + (size_t)(p0 + j) * width + group, r[j]);
        }
    }
}
#endif

/// Depth-contiguous lines (rows of A, or Bᵀ stored by rows): each line's run of a depth block is
/// converted at once into a small buffer, then its words are spread to their places in the panel.
static int pack_depth_contiguous(const float *source, ptrdiff_t line_stride, const xattn_bf16_packed *packed,
                                 int first_panel, int end_panel) {
#if XATTN_X86
    if (!xattn_cpu_has_avx512_bf16()) return 0;
    const int width = width_of(packed), lines = packed->lines, depth = packed->depth;
    const int transposed = !tiled_rows(packed) && width % 16 == 0;
    uint32_t run[(XATTN_BF16_AMX_KC > XATTN_BF16_KC ? XATTN_BF16_AMX_KC : XATTN_BF16_KC) / 2 + 16];  // a block's pairs
    const int kc = block_depth(packed);
    for (int block = 0; block < block_count(packed); block++) {
        const int pairs = block_pairs(packed, block);
        const int start = block * kc;
        const int count = depth - start < kc ? depth - start : kc;
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int panel = first_panel; panel < end_panel; panel++) {
            uint32_t *out = base + (size_t)panel * width * pairs;
            if (transposed) {
                const int panel_lines = lines - panel * width < width ? lines - panel * width : width;
                pack_panel_transposed(source + panel * width * line_stride + start, line_stride, panel_lines, count, pairs, width, out);
                continue;
            }
            for (int w = 0; w < width; w++) {
                const int line = panel * width + w;
                if (line < lines) convert_run_avx512(source + line * line_stride + start, count, run);
                else memset(run, 0, sizeof run);
                if (tiled_rows(packed)) {
                    for (int q = 0; q < pairs; q += 16) memcpy(out + word_index(packed, pairs, q, w), run + q, 16 * sizeof(uint32_t));
                }
                else for (int p = 0; p < pairs; p++) out[p * width + w] = run[p];
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
    const int width = width_of(packed), depth = packed->depth;
    const int first_panel = first_line / width, end_panel = panel_count(end_line, width);
    if (depth_stride == 1 && line_stride != 1 &&
        pack_depth_contiguous(source, line_stride, packed, first_panel, end_panel)) return;
#if XATTN_X86
    const int vector = line_stride == 1 && xattn_cpu_has_avx512_bf16();
#else
    const int vector = 0;
#endif
    for (int block = 0; block < block_count(packed); block++) {
        const int pairs = block_pairs(packed, block);
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int panel = first_panel; panel < end_panel; panel++) {
            uint32_t *out = base + (size_t)panel * width * pairs;
            for (int p = 0; p < pairs; p++) {
                const int d = block * block_depth(packed) + 2 * p;
                const float *even = d < depth ? source + d * depth_stride : NULL;
                const float *odd = d + 1 < depth ? source + (d + 1) * depth_stride : NULL;
                pack_panel_pair(packed, out, pairs, p, panel, even, odd, line_stride, vector);
            }
        }
    }
    (void)vector;
}

/// Zeroes C's part (for products with an empty depth).
static void clear(const xattn_bf16_packed *a, const xattn_bf16_packed *b, int a_first, int a_end, int b_first, int b_end,
                  float *c, ptrdiff_t ldc) {
    const int aw = width_of(a), bw = width_of(b);
    int j0 = b_first * bw, j1 = b_end * bw;
    if (j1 > b->lines) j1 = b->lines;
    for (int i = a_first * aw; i < a->lines && i < a_end * aw; i++)
        if (j1 > j0) memset(c + (i - a_first * aw) * ldc, 0, (size_t)(j1 - j0) * sizeof(float));
}

#if XATTN_X86
/// One 14×32 tile over one depth block: 28 accumulators, two B vectors, A's pair broadcast.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void tile_avx512(int pairs, const uint32_t *a, const uint32_t *b, float *c, ptrdiff_t ldc,
                        int rows, int cols, int accumulate) {
    enum { MR = 14, NR = 32 };
    __m512 low[MR], high[MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) low[i] = high[i] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++, a += MR, b += NR) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            low[i] = _mm512_dpbf16_ps(low[i], ai, b0);
            high[i] = _mm512_dpbf16_ps(high[i], ai, b1);
        }
    }
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
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

static void gemm_avx512(const xattn_bf16_packed *a, const xattn_bf16_packed *b, int a_first, int a_end, int b_first, int b_end,
                        float *c, ptrdiff_t ldc, int accumulate) {
    // B panel outermost within a block: its 16 KiB stay in L1 while A's panels stream past.
    for (int block = 0; block < block_count(a); block++) {
        const int pairs = block_pairs(a, block);
        const uint32_t *a_block = a->words + block_offset(a, block), *b_block = b->words + block_offset(b, block);
        for (int bp = b_first; bp < b_end; bp++) {
            const int left = b->lines - bp * 32, cols = left < 32 ? left : 32;
            for (int ap = a_first; ap < a_end; ap++) {
                const int above = a->lines - ap * 14, rows = above < 14 ? above : 14;
                tile_avx512(pairs, a_block + (size_t)ap * 14 * pairs, b_block + (size_t)bp * 32 * pairs,
                            c + (ptrdiff_t)(ap - a_first) * 14 * ldc + (bp - b_first) * 32, ldc, rows, cols, accumulate || block > 0);
            }
        }
    }
}

/// AMX tile configuration, palette 1: tiles 0–3 hold C (16 rows × 16 floats), 4–5 two A panels
/// (16 rows × 16 pairs), 6–7 the two halves of a B panel (16 pairs × 16 columns).
typedef struct __attribute__((packed)) {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} tile_config;

/// One 32×32 corner of C (two A panels × one B panel, fewer at the edges) over one depth block:
/// four C tiles, A's two panels and B's two halves in the other four. A C tile that is partial or
/// must be read goes through a 16×16 buffer; whole tiles that start from zero go straight to C.
__attribute__((target("amx-tile,amx-bf16,avx512f")))
static inline void amx_corner(const uint32_t *a0, int a_rows, const uint32_t *b_panel, int b_cols, int pairs,
                              float *corner, ptrdiff_t ldc, int first, float buffer[4][16 * 16]) {
    const int two = a_rows > 16;
    const int rows[2] = {a_rows < 16 ? a_rows : 16, a_rows - 16 < 0 ? 0 : a_rows - 16 < 16 ? a_rows - 16 : 16};
    const int cols[2] = {b_cols < 16 ? b_cols : 16, b_cols - 16 < 0 ? 0 : b_cols - 16 < 16 ? b_cols - 16 : 16};
    const uint32_t *a1 = a0 + (size_t)16 * pairs;
#define XATTN_TILE_IN(t, r, h)                                                                          \
    do {                                                                                                \
        float *origin = corner + (ptrdiff_t)(r) * 16 * ldc + (h) * 16;                                    \
        if (first || rows[r] == 0 || cols[h] == 0) _tile_zero(t);                                         \
        else if (rows[r] == 16 && cols[h] == 16) _tile_loadd(t, origin, ldc * 4);                         \
        else {                                                                                          \
            memset(buffer[t], 0, sizeof buffer[t]);                                                      \
            for (int i = 0; i < rows[r]; i++) memcpy(buffer[t] + i * 16, origin + i * ldc, sizeof(float) * cols[h]); \
            _tile_loadd(t, buffer[t], 64);                                                               \
        }                                                                                               \
    } while (0)
#define XATTN_TILE_OUT(t, r, h)                                                                         \
    do {                                                                                                \
        float *origin = corner + (ptrdiff_t)(r) * 16 * ldc + (h) * 16;                                    \
        if (rows[r] == 16 && cols[h] == 16) _tile_stored(t, origin, ldc * 4);                            \
        else if (rows[r] > 0 && cols[h] > 0) {                                                           \
            _tile_stored(t, buffer[t], 64);                                                              \
            for (int i = 0; i < rows[r]; i++) memcpy(origin + i * ldc, buffer[t] + i * 16, sizeof(float) * cols[h]); \
        }                                                                                               \
    } while (0)
    XATTN_TILE_IN(0, 0, 0); XATTN_TILE_IN(1, 0, 1);
    if (two) { XATTN_TILE_IN(2, 1, 0); XATTN_TILE_IN(3, 1, 1); }
    // A's panels hold 16×16-word tiles one after another (bf16_layout.h): one contiguous KiB each.
    for (int p = 0; p < pairs; p += 16) {
        _tile_loadd(4, a0 + (size_t)p * 16, 64);
        _tile_loadd(6, b_panel + (size_t)p * 32, 128);
        _tile_loadd(7, b_panel + (size_t)p * 32 + 16, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (two) {
            _tile_loadd(5, a1 + (size_t)p * 16, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    XATTN_TILE_OUT(0, 0, 0); XATTN_TILE_OUT(1, 0, 1);
    if (two) { XATTN_TILE_OUT(2, 1, 0); XATTN_TILE_OUT(3, 1, 1); }
#undef XATTN_TILE_IN
#undef XATTN_TILE_OUT
}

/// The corner of C at A's panels ap, ap + 1 (when below a_end) and B's panel bp, in one depth block;
/// c is C's element at A's panel a_first and B's panel b_first.
__attribute__((target("amx-tile,amx-bf16,avx512f")))
static inline void amx_corner_at(const xattn_bf16_packed *a, const xattn_bf16_packed *b, const uint32_t *a_block,
                                 const uint32_t *b_block, int pairs, int a_first, int ap, int a_end, int b_first, int bp,
                                 float *c, ptrdiff_t ldc,
                                 int first, float buffer[4][16 * 16]) {
    const int below = a->lines - ap * 16;
    const int a_rows = ap + 1 < a_end ? below : below < 16 ? below : 16;
    amx_corner(a_block + (size_t)ap * 16 * pairs, a_rows, b_block + (size_t)bp * 32 * pairs, b->lines - bp * 32, pairs,
               c + (ptrdiff_t)(ap - a_first) * 16 * ldc + (bp - b_first) * 32, ldc, first, buffer);
}

/// Per depth block, the operand whose block is larger is walked once, panel by panel, in the outer
/// loop (its panel stays in L1 while the inner loop runs); the smaller block is walked in the inner
/// loop once per outer panel and stays in L2.
__attribute__((target("amx-tile,amx-bf16,avx512f")))
static void gemm_amx(const xattn_bf16_packed *a, const xattn_bf16_packed *b, int a_first, int a_end, int b_first, int b_end,
                     float *c, ptrdiff_t ldc, int accumulate) {
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) { config.rows[t] = 16; config.bytes_per_row[t] = 64; }
    _tile_loadconfig(&config);
    float buffer[4][16 * 16];
    const int a_outer = (a_end - a_first) * 16 > (b_end - b_first) * 32;
    for (int block = 0; block < block_count(a); block++) {
        const int pairs = block_pairs(a, block);
        const int first = block == 0 && !accumulate;
        const uint32_t *a_block = a->words + block_offset(a, block), *b_block = b->words + block_offset(b, block);
        if (a_outer) {
            for (int ap = a_first; ap < a_end; ap += 2)
                for (int bp = b_first; bp < b_end; bp++)
                    amx_corner_at(a, b, a_block, b_block, pairs, a_first, ap, a_end, b_first, bp, c, ldc, first, buffer);
        } else {
            for (int bp = b_first; bp < b_end; bp++)
                for (int ap = a_first; ap < a_end; ap += 2)
                    amx_corner_at(a, b, a_block, b_block, pairs, a_first, ap, a_end, b_first, bp, c, ldc, first, buffer);
        }
    }
    _tile_release();
}
#endif

void xattn_bf16_gemm(const xattn_bf16_packed *a, const xattn_bf16_packed *b, int a_first, int a_end,
                     int b_first, int b_end, float *c, ptrdiff_t ldc, int accumulate) {
    if (block_count(a) == 0) {
        if (!accumulate) clear(a, b, a_first, a_end, b_first, b_end, c, ldc);
        return;
    }
#if XATTN_X86
    if (a->kernel == XATTN_BF16_AMX && b->kernel == XATTN_BF16_AMX) {
        gemm_amx(a, b, a_first, a_end, b_first, b_end, c, ldc, accumulate);
        return;
    }
    if (a->kernel == XATTN_BF16_AVX512 && b->kernel == XATTN_BF16_AVX512) {
        gemm_avx512(a, b, a_first, a_end, b_first, b_end, c, ldc, accumulate);
        return;
    }
#endif
    xattn_bf16_gemm_portable(a, b, a_first, a_end, b_first, b_end, c, ldc, accumulate);
}

void xattn_bf16_gemm_portable(const xattn_bf16_packed *a, const xattn_bf16_packed *b, int a_first, int a_end,
                              int b_first, int b_end, float *c, ptrdiff_t ldc, int accumulate) {
    const int aw = width_of(a), bw = width_of(b);
    if (block_count(a) == 0) {
        if (!accumulate) clear(a, b, a_first, a_end, b_first, b_end, c, ldc);
        return;
    }
    for (int block = 0; block < block_count(a); block++) {
        const int pairs = block_pairs(a, block);  // both sides were laid out alike
        const uint32_t *a_block = a->words + block_offset(a, block), *b_block = b->words + block_offset(b, block);
        for (int i = a_first * aw; i < a_end * aw && i < a->lines; i++) {
            const uint32_t *a_panel = a_block + (size_t)(i / aw) * aw * pairs;
            for (int j = b_first * bw; j < b_end * bw && j < b->lines; j++) {
                const uint32_t *b_panel = b_block + (size_t)(j / bw) * bw * pairs;
                float sum = 0;
                for (int p = 0; p < pairs; p++) {
                    const uint32_t x = a_panel[word_index(a, pairs, p, i % aw)], y = b_panel[word_index(b, pairs, p, j % bw)];
                    sum += xattn_float_from_bf16((uint16_t)(x >> 16)) * xattn_float_from_bf16((uint16_t)(y >> 16));
                    sum += xattn_float_from_bf16((uint16_t)x) * xattn_float_from_bf16((uint16_t)y);
                }
                float *out = c + (i - a_first * aw) * ldc + (j - b_first * bw);
                *out = accumulate || block > 0 ? *out + sum : sum;
            }
        }
    }
}
