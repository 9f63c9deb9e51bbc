// Hand-written compute kernels the engine needs and OpenBLAS lacks (Debian's 0.3.21 has no sbgemm).
// Compiled ahead of time for every x86-64; the AVX512-BF16 code sits behind function-level target
// attributes and runs only where xattn_cpu_has_avx512_bf16() says the CPU (and OS) support it.
#ifndef XATTN_KERNELS_H
#define XATTN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU executes AVX512F, AVX512BW and AVX512-BF16 and the OS saves the ZMM state.
int xattn_cpu_has_avx512_bf16(void);

/// Round-to-nearest-even float → bfloat16 (the bits), as vcvtne2ps2bf16 does; NaN stays NaN.
uint16_t xattn_bf16_from_float(float value);
float xattn_float_from_bf16(uint16_t bits);

/// The packed operand layout of the bf16 products (both sides use it, with different widths).
/// A matrix of `lines` lines (rows of A, or columns of B), each `depth` long (the shared k), is cut
/// into depth blocks of XATTN_BF16_KC and line panels of `width` (XATTN_BF16_MR for A, XATTN_BF16_NR
/// for B). Inside a block, panel by panel, for each pair of depths (2p, 2p+1) the `width` lines'
/// pairs follow one another as 32-bit words: low half = depth 2p, high half = depth 2p+1 (zero past
/// the end), lines past `lines` are zero. That word is what vdpbf16ps multiplies.
enum { XATTN_BF16_MR = 14, XATTN_BF16_NR = 32, XATTN_BF16_KC = 256 };

typedef struct {
    int lines;   // rows of A / columns of B
    int depth;   // k
    int width;   // XATTN_BF16_MR or XATTN_BF16_NR
    uint32_t *words;
} xattn_bf16_packed;

/// Words needed for a packed operand.
size_t xattn_bf16_packed_words(int lines, int depth, int width);

/// Packs element (line l, depth d) = source[l * line_stride + d * depth_stride] into `packed`
/// (whose lines, depth, width and words are set by the caller), lines first_line..<end_line only,
/// so threads can pack panels of one operand side by side (bounds multiples of `width`, or the end).
void xattn_bf16_pack(const float *source, ptrdiff_t line_stride, ptrdiff_t depth_stride,
                     const xattn_bf16_packed *packed, int first_line, int end_line);

/// C[i][j] (=|+=) Σ_k A[i][k]·B[k][j] over bf16 operands with float accumulation, for A's panels
/// a_panels and B's panels b_panels (half-open panel index ranges), C row-major with row stride ldc.
/// `accumulate` 0 overwrites C, 1 adds to it. Calls with disjoint panel ranges may run at once.
/// The AVX512-BF16 kernel; call only when xattn_cpu_has_avx512_bf16().
void xattn_bf16_gemm_avx512(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                            int a_first_panel, int a_end_panel, int b_first_panel, int b_end_panel,
                            float *c, ptrdiff_t ldc, int accumulate);

/// The same computation in portable C (each product of two bf16 values is exact in float, summed
/// pair by pair in float): the reference the AVX512 kernel is tested against, on any CPU.
void xattn_bf16_gemm_portable(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                              int a_first_panel, int a_end_panel, int b_first_panel, int b_end_panel,
                              float *c, ptrdiff_t ldc, int accumulate);

#ifdef __cplusplus
}
#endif
#endif
