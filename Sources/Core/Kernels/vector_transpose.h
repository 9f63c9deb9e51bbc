// A 16×16 transpose of 32-bit words in AVX-512 registers, shared by the bf16 packer (bf16_gemm.c)
// and the float transpose (transpose.c). Private to CKernels.
#ifndef XATTN_VECTOR_TRANSPOSE_H
#define XATTN_VECTOR_TRANSPOSE_H
#if defined(__x86_64__)
#include <immintrin.h>

/// Transposes 16 rows of 16 words in place: r[j][i] ← r[i][j].
__attribute__((target("avx512f")))
static inline void transpose16x16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + k], 128-bit lane L: element 4L + k of rows 4i … 4i + 3.
    __m512i u[16];
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // Column 4L + k gathers lane L of u[k], u[4 + k], u[8 + k], u[12 + k].
    for (int k = 0; k < 4; k++) {
        const __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), v2 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xDD);
        const __m512i w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88), w2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[8 + k] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
        r[4 + k] = _mm512_shuffle_i32x4(v2, w2, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(v2, w2, 0xDD);
    }
}

#endif
#endif
