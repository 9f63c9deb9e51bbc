// Fused float attention for query rows no hook reads (docs/PERFORMANCE.md, "Attention"): the
// scores of 32 query rows against a block of keys, their exponentials and the product with the
// block's values, with the running maximum and sum of each row carried from block to block (the
// online softmax of FlashAttention). The scores never leave L1: the unfused path writes a
// [rows, keys] block, reads it back for the softmax and again for the product with V, and OpenBLAS
// re-packs K and zeroes the block in every call (d = 40 is a shallow product for sgemm).
//
// Lanes are query rows: 32 rows are two vectors, so the maximum, the exponentials, the sums and
// the rescaling of the output are all lane-wise, with no horizontal reduction inside the loops.
#include "xattn_kernels.h"
#include "vector_exp.h"
#include <string.h>

enum {
    LANES = 32,       // query rows per group: two 16-float vectors
    KEY_STEP = 12,    // keys per scores step: 24 accumulators
    KEY_BLOCK = 96,   // keys per online-softmax block: its scores are 12 KiB
    VALUE_STEP = 10,  // output columns per values step: 20 accumulators
    ALIGN = 16,       // floats: scratch is rounded up to 64 bytes
};

size_t xattn_attention_f32_scratch(int d) {
    return (size_t)LANES * KEY_BLOCK + 2 * (size_t)XATTN_ATTENTION_F32_ROWS * d + ALIGN;
}

#if defined(__x86_64__)

/// Scores of the group against keys key[0..<count], stored by key (st[j·32 + lane]), in the base-2
/// domain (qt is pre-scaled by scale·log₂e); the maximum per lane goes into mx.
__attribute__((target("avx512f"), always_inline))
static inline void scores_step(const float *qt, int d, const float *key, ptrdiff_t k_ld, int count,
                               float *st, __m512 mx[2]) {
    __m512 lo[KEY_STEP], hi[KEY_STEP];
    for (int j = 0; j < count; j++) lo[j] = hi[j] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++) {
        const __m512 a0 = _mm512_loadu_ps(qt + c * LANES), a1 = _mm512_loadu_ps(qt + c * LANES + 16);
        for (int j = 0; j < count; j++) {
            const __m512 b = _mm512_set1_ps(key[j * k_ld + c]);
            lo[j] = _mm512_fmadd_ps(a0, b, lo[j]);
            hi[j] = _mm512_fmadd_ps(a1, b, hi[j]);
        }
    }
    for (int j = 0; j < count; j++) {
        _mm512_storeu_ps(st + j * LANES, lo[j]);
        _mm512_storeu_ps(st + j * LANES + 16, hi[j]);
        mx[0] = _mm512_max_ps(mx[0], lo[j]);
        mx[1] = _mm512_max_ps(mx[1], hi[j]);
    }
}

/// ot[c·32 + lane] += Σ_j st[j·32 + lane] · value[j][c] for columns c0..<c0+count.
__attribute__((target("avx512f"), always_inline))
static inline void values_step(const float *st, int keys, const float *value, ptrdiff_t v_ld, int c0, int count, float *ot) {
    __m512 lo[VALUE_STEP], hi[VALUE_STEP];
    for (int c = 0; c < count; c++) {
        lo[c] = _mm512_loadu_ps(ot + (c0 + c) * LANES);
        hi[c] = _mm512_loadu_ps(ot + (c0 + c) * LANES + 16);
    }
    for (int j = 0; j < keys; j++) {
        const __m512 p0 = _mm512_loadu_ps(st + j * LANES), p1 = _mm512_loadu_ps(st + j * LANES + 16);
        const float *row = value + j * v_ld + c0;
        for (int c = 0; c < count; c++) {
            const __m512 b = _mm512_set1_ps(row[c]);
            lo[c] = _mm512_fmadd_ps(p0, b, lo[c]);
            hi[c] = _mm512_fmadd_ps(p1, b, hi[c]);
        }
    }
    for (int c = 0; c < count; c++) {
        _mm512_storeu_ps(ot + (c0 + c) * LANES, lo[c]);
        _mm512_storeu_ps(ot + (c0 + c) * LANES + 16, hi[c]);
    }
}

/// The values step for a run of columns shorter than VALUE_STEP, with the count a constant in each
/// case so the accumulators stay in registers.
__attribute__((target("avx512f")))
static void values_tail(const float *st, int keys, const float *value, ptrdiff_t v_ld, int c0, int count, float *ot) {
    switch (count) {
    case 1: values_step(st, keys, value, v_ld, c0, 1, ot); break;
    case 2: values_step(st, keys, value, v_ld, c0, 2, ot); break;
    case 3: values_step(st, keys, value, v_ld, c0, 3, ot); break;
    case 4: values_step(st, keys, value, v_ld, c0, 4, ot); break;
    case 5: values_step(st, keys, value, v_ld, c0, 5, ot); break;
    case 6: values_step(st, keys, value, v_ld, c0, 6, ot); break;
    case 7: values_step(st, keys, value, v_ld, c0, 7, ot); break;
    case 8: values_step(st, keys, value, v_ld, c0, 8, ot); break;
    default: values_step(st, keys, value, v_ld, c0, 9, ot); break;
    }
}

/// Per group of 32 query rows: Q transposed to lanes (times scale·log₂e, so the scores come out as
/// exponents of 2), the output so far (transposed, unnormalised), each lane's maximum and sum.
typedef struct {
    float *qt, *ot;
    __m512 m[2], l[2];
} group_state;

/// Query rows (up to XATTN_ATTENTION_F32_ROWS) against all keys, block of keys by block of keys,
/// every group in turn per block: a block's keys and values are read from memory once for all the
/// groups, not once per group.
__attribute__((target("avx512f")))
static void attend(const float *q, ptrdiff_t q_ld, const float *k, ptrdiff_t k_ld, const float *v, ptrdiff_t v_ld,
                   float *o, ptrdiff_t o_ld, int rows, int keys, int d, float scale, float *scratch) {
    enum { GROUPS = XATTN_ATTENTION_F32_ROWS / LANES };
    const int groups = (rows + LANES - 1) / LANES;
    group_state state[GROUPS];
    float *st = scratch, *next = st + LANES * KEY_BLOCK;
    const float factor = scale * 1.44269504088896341f;
    for (int g = 0; g < groups; g++) {
        group_state *s = &state[g];
        s->qt = next;
        s->ot = next + LANES * d;
        next += 2 * LANES * d;
        const int lanes = rows - g * LANES < LANES ? rows - g * LANES : LANES;
        const float *qg = q + g * LANES * q_ld;
        for (int c = 0; c < d; c++)
            for (int i = 0; i < LANES; i++) s->qt[c * LANES + i] = i < lanes ? qg[i * q_ld + c] * factor : 0;
        memset(s->ot, 0, sizeof(float) * LANES * d);
        s->m[0] = s->m[1] = _mm512_set1_ps(-__builtin_inff());
        s->l[0] = s->l[1] = _mm512_setzero_ps();
    }
    for (int first = 0; first < keys; first += KEY_BLOCK) {
        const int count = keys - first < KEY_BLOCK ? keys - first : KEY_BLOCK;
        const float *key = k + first * k_ld, *value = v + first * v_ld;
        for (int g = 0; g < groups; g++) {
            group_state *s = &state[g];
            __m512 mx[2] = {s->m[0], s->m[1]};
            int j = 0;
            for (; j + KEY_STEP <= count; j += KEY_STEP) scores_step(s->qt, d, key + j * k_ld, k_ld, KEY_STEP, st + j * LANES, mx);
            for (; j < count; j++) scores_step(s->qt, d, key + j * k_ld, k_ld, 1, st + j * LANES, mx);
            // A larger maximum rescales what the earlier blocks added: by 2^(old − new) (2⁻¹²⁵ at
            // the first block, where the sum and the output are still 0).
            for (int h = 0; h < 2; h++) {
                const __m512 alpha = exp2_nonpositive16(_mm512_sub_ps(s->m[h], mx[h]));
                if (_mm512_cmp_ps_mask(alpha, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ)) {
                    s->l[h] = _mm512_mul_ps(s->l[h], alpha);
                    for (int c = 0; c < d; c++) {
                        float *out = s->ot + c * LANES + 16 * h;
                        _mm512_storeu_ps(out, _mm512_mul_ps(alpha, _mm512_loadu_ps(out)));
                    }
                }
                s->m[h] = mx[h];
            }
            for (int j = 0; j < count; j++)
                for (int h = 0; h < 2; h++) {
                    const __m512 p = exp2_nonpositive16(_mm512_sub_ps(_mm512_loadu_ps(st + j * LANES + 16 * h), s->m[h]));
                    _mm512_storeu_ps(st + j * LANES + 16 * h, p);
                    s->l[h] = _mm512_add_ps(s->l[h], p);
                }
            int c0 = 0;
            for (; c0 + VALUE_STEP <= d; c0 += VALUE_STEP) values_step(st, count, value, v_ld, c0, VALUE_STEP, s->ot);
            if (c0 < d) values_tail(st, count, value, v_ld, c0, d - c0, s->ot);
        }
    }
    for (int g = 0; g < groups; g++) {
        float inverse[LANES];
        _mm512_storeu_ps(inverse, _mm512_div_ps(_mm512_set1_ps(1.0f), state[g].l[0]));
        _mm512_storeu_ps(inverse + 16, _mm512_div_ps(_mm512_set1_ps(1.0f), state[g].l[1]));
        const int lanes = rows - g * LANES < LANES ? rows - g * LANES : LANES;
        float *og = o + g * LANES * o_ld;
        for (int i = 0; i < lanes; i++)
            for (int c = 0; c < d; c++) og[i * o_ld + c] = state[g].ot[c * LANES + i] * inverse[i];
    }
}
#endif

int xattn_attention_f32(const float *q, ptrdiff_t q_ld, const float *k, ptrdiff_t k_ld, const float *v, ptrdiff_t v_ld,
                        float *o, ptrdiff_t o_ld, int rows, int keys, int d, float scale, float *scratch) {
#if defined(__x86_64__)
    if (!xattn_cpu_has_avx512() || keys < 1 || d < 1) return 0;
    float *aligned = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    for (int first = 0; first < rows; first += XATTN_ATTENTION_F32_ROWS) {
        const int count = rows - first < XATTN_ATTENTION_F32_ROWS ? rows - first : XATTN_ATTENTION_F32_ROWS;
        attend(q + first * q_ld, q_ld, k, k_ld, v, v_ld, o + first * o_ld, o_ld, count, keys, d, scale, aligned);
    }
    return 1;
#else
    (void)q; (void)q_ld; (void)k; (void)k_ld; (void)v; (void)v_ld; (void)o; (void)o_ld;
    (void)rows; (void)keys; (void)d; (void)scale; (void)scratch;
    return 0;
#endif
}
