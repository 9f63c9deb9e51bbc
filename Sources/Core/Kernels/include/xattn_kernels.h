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
/// 1 when the CPU executes AVX512F and AVX512BW and the OS saves the ZMM state.
int xattn_cpu_has_avx512(void);

/// Fused float attention of one head for query rows no hook reads: o[i][c] = Σ_j p_ij·v[j][c] with
/// p_i = softmax_j(scale·q[i]·k[j]), rows × d from q (row stride q_ld), keys × d from k and v, the
/// softmax computed online over blocks of keys (attention_f32.c); up to XATTN_ATTENTION_F32_ROWS
/// rows share each block's keys and values while it is in cache. `scratch`:
/// xattn_attention_f32_scratch(d) floats, any alignment. Returns 0, doing nothing, where
/// xattn_cpu_has_avx512() is 0.
int xattn_attention_f32(const float *q, ptrdiff_t q_ld, const float *k, ptrdiff_t k_ld, const float *v, ptrdiff_t v_ld,
                        float *o, ptrdiff_t o_ld, int rows, int keys, int d, float scale, float *scratch);
size_t xattn_attention_f32_scratch(int d);

/// GEGLU's gate: out[i] = hidden[i] · gelu(gate[i]), i < count (geglu.c), with the erf of
/// Sources/Core/Tensor/VectorMath.swift's verf. Returns 0, doing nothing, without AVX-512 here.
int xattn_geglu(const float *hidden, const float *gate, float *out, int count);

/// dst[c·rows + r] = src[r·cols + c] for rows first_row..<end_row and every column (transpose.c).
/// Returns 0, doing nothing, without AVX-512 here.
int xattn_transpose_f32(const float *src, int rows, int cols, float *dst, int first_row, int end_row);
enum { XATTN_ATTENTION_F32_ROWS = 128 };

/// Round-to-nearest-even float → bfloat16 (the bits), as vcvtne2ps2bf16 does; NaN stays NaN.
uint16_t xattn_bf16_from_float(float value);
float xattn_float_from_bf16(uint16_t bits);

/// The bf16 kernels: AMX tiles (Sapphire Rapids and later: 16×16 tiles, 16 pairs per step), the
/// AVX512-BF16 vector kernel (vdpbf16ps: Zen 4, Cooper Lake), and a portable one computing the
/// vector kernel's sums in its order (tests; any CPU).
enum { XATTN_BF16_PORTABLE = 0, XATTN_BF16_AVX512 = 1, XATTN_BF16_AMX = 2 };
enum { XATTN_BF16_ROWS = 0, XATTN_BF16_COLUMNS = 1 };
/// Depth per block: the vector kernel's (a B panel of 16 KiB stays in L1) and AMX's (docs/PERFORMANCE.md,
/// "Precision": its C tiles go through memory once per block, which costs more than operands from L2).
enum { XATTN_BF16_KC = 256, XATTN_BF16_AMX_KC = 1536 };

/// The best kernel this CPU and OS run: AMX when the CPU has AMX-BF16 and the kernel grants the
/// process the tile state (arch_prctl), else AVX512-BF16 when present, else XATTN_BF16_PORTABLE
/// (meaning: no bf16 here). XATTN_BF16_KERNEL=avx512 in the environment passes over AMX.
int xattn_bf16_kernel(void);

/// 1 when bf16 products run faster than float ones here: AMX, or AVX512-BF16 on a CPU that issues
/// it as often as a float FMA (AMD Zen 4; Intel server cores issue two FMAs per cycle, one vdpbf16ps).
int xattn_bf16_is_faster(void);

/// The packed operand layout. A matrix of `lines` lines (rows of A, or columns of B), each `depth`
/// long (the shared k), is cut into depth blocks of XATTN_BF16_KC (AMX: XATTN_BF16_AMX_KC) and line panels of
/// xattn_bf16_width(kernel, side) lines (lines past `lines` are zero). A 32-bit word holds a pair of
/// depths (2p, 2p+1) of one line as bf16, low half first (zero past the end). Inside a block, panel by
/// panel, words go pair by pair (each pair: the panel's lines in order), except AMX's rows, which go
/// in tiles: for each 16 pairs, the panel's 16 lines one after another (each line: its 16 pairs), the
/// contiguous KiB one tile load reads. For AMX, a block's pairs are rounded up to 16 with zeros.
typedef struct {
    int lines;
    int depth;
    int side;     // XATTN_BF16_ROWS (A) or XATTN_BF16_COLUMNS (B)
    int kernel;   // the kernel the layout is for
    uint32_t *words;
} xattn_bf16_packed;

/// Lines per panel: 14 rows (AVX512, portable) or 16 (AMX); 32 columns.
int xattn_bf16_width(int kernel, int side);

/// Words needed for a packed operand.
size_t xattn_bf16_packed_words(const xattn_bf16_packed *layout);

/// Attention's softmax, unnormalised, for scores stored by key —
/// scores_t[key·ld + line], as the product K·Qᵀ leaves them — written straight into `packed` (side
/// XATTN_BF16_COLUMNS, lines = query lines, depth = keys) as bf16 pairs of keys, with inverse[line] ← 1 / Σ over the unrounded exponentials: one
/// pass for the maxima, one that exponentiates, sums and packs (no float probabilities written).
/// Returns 0, doing nothing, where xattn_cpu_has_avx512_bf16() is 0.
int xattn_softmax_pack_columns(const float *scores_t, ptrdiff_t ld, int keys, float scale, const xattn_bf16_packed *packed,
                               float *inverse);

/// Packs element (line l, depth d) = source[l * line_stride + d * depth_stride] into `packed`
/// (whose fields are set by the caller), lines first_line..<end_line only, so threads can pack
/// panels of one operand side by side (bounds multiples of the width, or the end).
void xattn_bf16_pack(const float *source, ptrdiff_t line_stride, ptrdiff_t depth_stride,
                     const xattn_bf16_packed *packed, int first_line, int end_line);

/// A convolution's input and geometry, for packing its unfolded matrix (im2col) directly.
typedef struct {
    const float *image;   // one image [channels, height, width]
    int channels, height, width;
    int kernel_h, kernel_w, stride, pad_top, pad_left;
    int out_width;        // output columns (positions run row by row)
} xattn_conv_geometry;

/// Packs the unfolded input's columns first_position..<first_position + packed->lines (lines = output
/// positions, side XATTN_BF16_COLUMNS) and its depths first_depth..<first_depth + packed->depth
/// (depth d = (channel·kernel_h + ky)·kernel_w + kx) into `packed`: the same words as unfolding into
/// floats and calling xattn_bf16_pack. `scratch` holds xattn_bf16_unfold_scratch(lines) floats
/// (XATTN_BF16_UNFOLD_PAIRS pairs of unfolded rows).
enum { XATTN_BF16_UNFOLD_PAIRS = 8 };
size_t xattn_bf16_unfold_scratch(int lines);
void xattn_bf16_pack_unfolded(const xattn_conv_geometry *geometry, int first_position, int first_depth, float *scratch,
                              const xattn_bf16_packed *packed);

/// A packed operand's depth blocks: how many, the depth of a full one for `kernel` (XATTN_BF16_KC,
/// AMX twice that), and block `block` alone as an operand of its own (its words inside `packed`'s),
/// so that products and packing can go one depth block at a time.
int xattn_bf16_depth_blocks(const xattn_bf16_packed *packed);
int xattn_bf16_block_depth(int kernel);
xattn_bf16_packed xattn_bf16_depth_block(const xattn_bf16_packed *packed, int block);

/// C[i][j] (=|+=) Σ_k A[i][k]·B[k][j] over bf16 operands with float accumulation, for A's panels
/// a_panels and B's panels b_panels (half-open panel index ranges), C row-major with row stride ldc;
/// `c` points at the block's first element, C[a_first_panel·width][b_first_panel·width].
/// `accumulate` 0 overwrites C, 1 adds to it. Calls with disjoint panel ranges may run at once.
/// Runs the kernel both layouts were made for (they must agree).
void xattn_bf16_gemm(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                     int a_first_panel, int a_end_panel, int b_first_panel, int b_end_panel,
                     float *c, ptrdiff_t ldc, int accumulate);

/// The same sums in portable C, for layouts of any kernel: per pair, the odd product then the even
/// one added to the float accumulator (exact products of 8-bit significands), as vdpbf16ps does.
void xattn_bf16_gemm_portable(const xattn_bf16_packed *a, const xattn_bf16_packed *b,
                              int a_first_panel, int a_end_panel, int b_first_panel, int b_end_panel,
                              float *c, ptrdiff_t ldc, int accumulate);

/// Winograd F(4×4, 3×3) for stride-1, padding-1 3×3 convolutions (winograd.c). Tiles are 4×4
/// output pixels; a plane of h×w has (h+3)/4 tile rows of (w+3)/4 tiles. Transformed data is laid
/// out [36][channel][tile] with `xi_stride` floats between the 36 planes.

/// Bᵀ d B of one input channel's tiles in tile rows first_row..<end_row, written to v[ξ·xi_stride +
/// (ty − first_row)·tw + tx]. `scratch`: 60·(w/4 + 2) floats.
void xattn_winograd_input(const float *plane, int h, int w, int first_row, int end_row,
                          float *v, ptrdiff_t xi_stride, float *scratch);

/// Aᵀ M A + bias of one output channel's tiles first_row..<end_row (read as the input transform
/// writes them) into the h×w plane. `scratch`: 40·(w/4 + 1) floats.
void xattn_winograd_output(const float *m, ptrdiff_t xi_stride, int h, int w, int first_row, int end_row,
                           float bias, float *plane, float *scratch);

/// G g Gᵀ of `pairs` 3×3 filters g[pair][9] (PyTorch's [out][in][3][3] is [out·in][9]) into
/// u[ξ·xi_stride + pair].
void xattn_winograd_weights(const float *g, int pairs, float *u, ptrdiff_t xi_stride);

/// Sets glibc's allocator up for the engine's many-megabyte transient buffers (allocator.c): served
/// from the heap and kept there when freed, instead of mapped and page-faulted in anew each time.
/// Call once at start; does nothing on other C libraries.
void xattn_tune_allocator(void);
/// Gives the memory freed since back to the kernel (malloc_trim): between jobs, so a resident
/// service holds its model, not the buffers of its last job.
void xattn_release_free_memory(void);

/// OpenBLAS, opened on first use after choosing its kernel (openblas.c). NULL when it is open,
/// else why it could not be opened. Call it once early, before other threads start: it may set
/// OPENBLAS_CORETYPE in the environment.
const char *xattn_blas_open(void);
/// The OpenBLAS kernel xattn asks for on this CPU ("SkylakeX", "Haswell"), or NULL to let OpenBLAS
/// choose (AMD CPUs, which it knows by family; CPUs without AVX2).
const char *xattn_blas_core_for_cpu(void);
/// OpenBLAS's configuration and kernel, or the reason it could not be opened.
const char *xattn_blas_description(void);
/// The kernel OpenBLAS runs ("Haswell", "SkylakeX", "Prescott", …); "" when not open.
const char *xattn_blas_corename(void);
void xattn_blas_set_threads(int threads);
/// Row-major cblas_sgemm; xattn_blas_open() must have succeeded.
void xattn_sgemm(int transposed_a, int transposed_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

#ifdef __cplusplus
}
#endif
#endif
