// A convolution's unfolded input (im2col) packed straight into the bf16 columns layout, without
// the float matrix in between (docs/PERFORMANCE.md, "Precision"): the unfolded matrix is read once
// per depth pair from two rows computed into a small buffer, instead of being written whole (4 bytes
// per element) and read back by the packer.
#include "bf16_layout.h"
#include <string.h>

/// Row d = (c·kh + ky)·kw + kx of the unfolded input for output positions first..first+count:
/// input pixel (oy·s − top + ky, ox·s − left + kx) of channel c, or 0 in the padding.
static void unfold_row(const xattn_conv_geometry *g, int d, int first, int count, float *row) {
    const int kx = d % g->kernel_w, ky = (d / g->kernel_w) % g->kernel_h, c = d / (g->kernel_w * g->kernel_h);
    const float *plane = g->image + (size_t)c * g->height * g->width;
    int oy = first / g->out_width, ox = first % g->out_width;
    for (int i = 0; i < count;) {
        // One output row's run at a time: inside it the input advances by `stride` per position.
        const int run = g->out_width - ox < count - i ? g->out_width - ox : count - i;
        const int iy = oy * g->stride - g->pad_top + ky;
        if (iy < 0 || iy >= g->height) {
            memset(row + i, 0, (size_t)run * sizeof(float));
        } else {
            const float *line = plane + (size_t)iy * g->width;
            int ix = ox * g->stride - g->pad_left + kx;
            if (g->stride == 1) {
                // Zeros left of the image, one copy of the part inside it, zeros right of it.
                int lead = ix < 0 ? -ix : 0;
                if (lead > run) lead = run;
                int inside = g->width - (ix + lead);
                if (inside > run - lead) inside = run - lead;
                if (inside < 0) inside = 0;
                if (lead) memset(row + i, 0, (size_t)lead * sizeof(float));
                if (inside) memcpy(row + i + lead, line + ix + lead, (size_t)inside * sizeof(float));
                if (run - lead - inside) memset(row + i + lead + inside, 0, (size_t)(run - lead - inside) * sizeof(float));
            } else {
                for (int j = 0; j < run; j++, ix += g->stride) row[i + j] = ix >= 0 && ix < g->width ? line[ix] : 0;
            }
        }
        i += run;
        ox = 0;
        oy++;
    }
}

size_t xattn_bf16_unfold_scratch(int lines) { return (size_t)2 * XATTN_BF16_UNFOLD_PAIRS * (lines > 0 ? lines : 0); }

void xattn_bf16_pack_unfolded(const xattn_conv_geometry *g, int first_position, int first_depth, float *scratch,
                              const xattn_bf16_packed *packed) {
    const int width = width_of(packed), lines = packed->lines, depth = packed->depth, panels = panel_count(lines, width);
#if XATTN_X86
    const int vector = xattn_cpu_has_avx512_bf16();
#else
    const int vector = 0;
#endif
    // A group of pairs is unfolded first (2·XATTN_BF16_UNFOLD_PAIRS rows, ~22 KB for a 352-line
    // item), then written panel by panel: each panel receives one contiguous run of the group's
    // pairs. Pair by pair across all panels instead, the stores went to lines a panel (tens of KiB)
    // apart, the same few L1 sets, and each pair's store missed.
    for (int block = 0; block < block_count(packed); block++) {
        const int pairs = block_pairs(packed, block);
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int p0 = 0; p0 < pairs; p0 += XATTN_BF16_UNFOLD_PAIRS) {
            const int group = pairs - p0 < XATTN_BF16_UNFOLD_PAIRS ? pairs - p0 : XATTN_BF16_UNFOLD_PAIRS;
            const float *rows[2 * XATTN_BF16_UNFOLD_PAIRS];
            for (int r = 0; r < 2 * group; r++) {
                const int d = block * block_depth(packed) + 2 * p0 + r;
                rows[r] = NULL;
                if (d < depth) {
                    float *row = scratch + (size_t)r * lines;
                    unfold_row(g, first_depth + d, first_position, lines, row);
                    rows[r] = row;
                }
            }
            for (int panel = 0; panel < panels; panel++)
                for (int q = 0; q < group; q++)
                    pack_panel_pair(packed, base + (size_t)panel * width * pairs, pairs, p0 + q, panel,
                                    rows[2 * q], rows[2 * q + 1], 1, vector);
        }
    }
}
