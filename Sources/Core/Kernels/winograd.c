// Winograd F(4×4, 3×3) transforms for stride-1, padding-1 3×3 convolutions (docs/PERFORMANCE.md,
// "Winograd"). A 6×6 input tile d and a 3×3 filter g give a 4×4 output tile Y = Aᵀ[(G g Gᵀ) ⊙
// (Bᵀ d B)]A: 36 multiplications per channel pair instead of 144, done as 36 matrix products over
// channels. The matrices are Lavin & Gray's (points 0, ±1, ±2, ∞).
#include "xattn_kernels.h"
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define XATTN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define XATTN_VECTOR_CLONES
#endif

/// Bᵀx for one 6-vector given as six arrays, over `n` lanes.
#define BT_ROWS(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5, n)       \
    for (int k = 0; k < (n); k++) {                                     \
        const float a0 = (x0)[k], a1 = (x1)[k], a2 = (x2)[k];            \
        const float a3 = (x3)[k], a4 = (x4)[k], a5 = (x5)[k];            \
        (o0)[k] = 4 * a0 - 5 * a2 + a4;                                  \
        (o1)[k] = -4 * a1 - 4 * a2 + a3 + a4;                            \
        (o2)[k] = 4 * a1 - 4 * a2 - a3 + a4;                             \
        (o3)[k] = -2 * a1 - a2 + 2 * a3 + a4;                            \
        (o4)[k] = 2 * a1 - a2 - 2 * a3 + a4;                             \
        (o5)[k] = 4 * a1 - 5 * a3 + a5;                                  \
    }

XATTN_VECTOR_CLONES
void xattn_winograd_input(const float *plane, int h, int w, int first_row, int end_row,
                          float *v, ptrdiff_t xi_stride, float *scratch) {
    const int tw = (w + 3) / 4;
    const int lanes = tw + 1;
    // rows[i][r][k] = input row (4·ty − 1 + i), column 4k + r − 1 (0 outside the image), so a
    // tile k's six columns are rows[i][0..3][k], rows[i][0..1][k + 1]: unit-stride over k.
    float *rows = scratch;                       // 6 × 4 × lanes
    float *e = scratch + 6 * 4 * lanes;          // 6 × 6 × tw: each row transformed along x
    for (int ty = first_row; ty < end_row; ty++) {
        for (int i = 0; i < 6; i++) {
            const int y = 4 * ty - 1 + i;
            float *r0 = rows + (i * 4) * lanes;
            if (y < 0 || y >= h) {
                memset(r0, 0, sizeof(float) * 4 * lanes);
                continue;
            }
            const float *source = plane + (ptrdiff_t)y * w;
            for (int r = 0; r < 4; r++) {
                float *out = r0 + r * lanes;
                for (int k = 0; k < lanes; k++) {
                    const int x = 4 * k + r - 1;
                    out[k] = x >= 0 && x < w ? source[x] : 0;
                }
            }
        }
        for (int i = 0; i < 6; i++) {
            const float *r = rows + i * 4 * lanes;
            float *o = e + i * 6 * tw;
            BT_ROWS(r, r + lanes, r + 2 * lanes, r + 3 * lanes, r + 1, r + lanes + 1,
                    o, o + tw, o + 2 * tw, o + 3 * tw, o + 4 * tw, o + 5 * tw, tw)
        }
        float *column = v + (ptrdiff_t)(ty - first_row) * tw;
        for (int b = 0; b < 6; b++) {
            // Along y: V[a][b] = Σ_i Bᵀ[a][i] e[i][b].
            const float *x0 = e + (0 * 6 + b) * tw, *x1 = e + (1 * 6 + b) * tw, *x2 = e + (2 * 6 + b) * tw;
            const float *x3 = e + (3 * 6 + b) * tw, *x4 = e + (4 * 6 + b) * tw, *x5 = e + (5 * 6 + b) * tw;
            BT_ROWS(x0, x1, x2, x3, x4, x5,
                    column + (0 * 6 + b) * xi_stride, column + (1 * 6 + b) * xi_stride,
                    column + (2 * 6 + b) * xi_stride, column + (3 * 6 + b) * xi_stride,
                    column + (4 * 6 + b) * xi_stride, column + (5 * 6 + b) * xi_stride, tw)
        }
    }
}

/// Aᵀm for one 6-vector given as six arrays, four outputs, over `n` lanes.
#define AT_ROWS(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3, n)               \
    for (int k = 0; k < (n); k++) {                                     \
        const float a0 = (m0)[k], a1 = (m1)[k], a2 = (m2)[k];            \
        const float a3 = (m3)[k], a4 = (m4)[k], a5 = (m5)[k];            \
        const float s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4; \
        (o0)[k] = a0 + s12 + s34;                                        \
        (o1)[k] = d12 + 2 * d34;                                         \
        (o2)[k] = s12 + 4 * s34;                                         \
        (o3)[k] = d12 + 8 * d34 + a5;                                    \
    }

XATTN_VECTOR_CLONES
void xattn_winograd_output(const float *m, ptrdiff_t xi_stride, int h, int w, int first_row, int end_row,
                           float bias, float *plane, float *scratch) {
    const int tw = (w + 3) / 4;
    float *f = scratch;                  // 4 × 6 × tw: Aᵀ applied along y
    float *out = scratch + 4 * 6 * tw;   // 4 × 4 × tw: rows of the tile row, by x mod 4
    for (int ty = first_row; ty < end_row; ty++) {
        const float *column = m + (ptrdiff_t)(ty - first_row) * tw;
        for (int b = 0; b < 6; b++) {
            AT_ROWS(column + (0 * 6 + b) * xi_stride, column + (1 * 6 + b) * xi_stride,
                    column + (2 * 6 + b) * xi_stride, column + (3 * 6 + b) * xi_stride,
                    column + (4 * 6 + b) * xi_stride, column + (5 * 6 + b) * xi_stride,
                    f + (0 * 6 + b) * tw, f + (1 * 6 + b) * tw, f + (2 * 6 + b) * tw, f + (3 * 6 + b) * tw, tw)
        }
        for (int a = 0; a < 4; a++) {
            const float *g = f + a * 6 * tw;
            float *o = out + a * 4 * tw;
            AT_ROWS(g, g + tw, g + 2 * tw, g + 3 * tw, g + 4 * tw, g + 5 * tw, o, o + tw, o + 2 * tw, o + 3 * tw, tw)
        }
        for (int a = 0; a < 4; a++) {
            const int y = 4 * ty + a;
            if (y >= h) break;
            float *row = plane + (ptrdiff_t)y * w;
            const float *o = out + a * 4 * tw;
            for (int x = 0; x < w; x++) row[x] = o[(x & 3) * tw + (x >> 2)] + bias;
        }
    }
}

XATTN_VECTOR_CLONES
void xattn_winograd_weights(const float *g, int pairs, float *u, ptrdiff_t xi_stride) {
    enum { block = 64 };
    float taps[9][block], t[6][3][block];
    for (int p0 = 0; p0 < pairs; p0 += block) {
        const int n = pairs - p0 < block ? pairs - p0 : block;
        for (int k = 0; k < n; k++)
            for (int q = 0; q < 9; q++) taps[q][k] = g[(ptrdiff_t)(p0 + k) * 9 + q];
        // G g: rows of G against the filter's three rows, per filter column q.
        for (int q = 0; q < 3; q++) {
            for (int k = 0; k < n; k++) {
                const float g0 = taps[q][k], g1 = taps[3 + q][k], g2 = taps[6 + q][k];
                t[0][q][k] = g0 * (1.0f / 4);
                t[1][q][k] = -(g0 + g1 + g2) * (1.0f / 6);
                t[2][q][k] = -(g0 - g1 + g2) * (1.0f / 6);
                t[3][q][k] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
                t[4][q][k] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
                t[5][q][k] = g2;
            }
        }
        // (G g) Gᵀ along the filter's columns.
        for (int r = 0; r < 6; r++) {
            float *o = u + (ptrdiff_t)(r * 6) * xi_stride + p0;
            for (int k = 0; k < n; k++) {
                const float g0 = t[r][0][k], g1 = t[r][1][k], g2 = t[r][2][k];
                o[0 * xi_stride + k] = g0 * (1.0f / 4);
                o[1 * xi_stride + k] = -(g0 + g1 + g2) * (1.0f / 6);
                o[2 * xi_stride + k] = -(g0 - g1 + g2) * (1.0f / 6);
                o[3 * xi_stride + k] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
                o[4 * xi_stride + k] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
                o[5 * xi_stride + k] = g2;
            }
        }
    }
}
