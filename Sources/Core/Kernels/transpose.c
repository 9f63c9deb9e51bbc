// The float transpose of Sources/Core/Tensor/Layout.swift (feature maps to token sequences and
// back, around every transformer): 16×16 blocks transposed in registers, so that both sides are
// read and written as whole vectors instead of one strided float at a time.
#include "xattn_kernels.h"
#include "vector_transpose.h"

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void transpose_avx512(const float *src, int rows, int cols, float *dst, int first_row, int end_row) {
    for (int r = first_row; r < end_row; r += 16) {
        const int nr = end_row - r < 16 ? end_row - r : 16;
        const __mmask16 row_mask = nr == 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
        for (int c = 0; c < cols; c += 16) {
            const int nc = cols - c < 16 ? cols - c : 16;
            const __mmask16 column_mask = nc == 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
            __m512i block[16];
            for (int i = 0; i < 16; i++)
                block[i] = i < nr ? _mm512_castps_si512(_mm512_maskz_loadu_ps(column_mask, src + (size_t)(r + i) * cols + c))
                                  : _mm512_setzero_si512();
            transpose16x16(block);
            for (int j = 0; j < nc; j++) _mm512_mask_storeu_ps(dst + (size_t)(c + j) * rows + r, row_mask, _mm512_castsi512_ps(block[j]));
        }
    }
}
#endif

int xattn_transpose_f32(const float *src, int rows, int cols, float *dst, int first_row, int end_row) {
#if defined(__x86_64__)
    if (!xattn_cpu_has_avx512()) return 0;
    transpose_avx512(src, rows, cols, dst, first_row, end_row);
    return 1;
#else
    (void)src; (void)rows; (void)cols; (void)dst; (void)first_row; (void)end_row;
    return 0;
#endif
}
