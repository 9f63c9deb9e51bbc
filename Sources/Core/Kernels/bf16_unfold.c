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

void xattn_bf16_pack_unfolded(const xattn_conv_geometry *g, int first_position, float *scratch, const xattn_bf16_packed *packed) {
    const int width = width_of(packed), lines = packed->lines, depth = packed->depth, panels = panel_count(lines, width);
    float *even_row = scratch, *odd_row = scratch + lines;
#if XATTN_X86
    const int vector = xattn_cpu_has_avx512_bf16();
#else
    const int vector = 0;
#endif
    for (int block = 0; block < block_count(packed); block++) {
        const int pairs = block_pairs(packed, block);
        uint32_t *base = packed->words + block_offset(packed, block);
        for (int p = 0; p < pairs; p++) {
            const int d = block * block_depth(packed) + 2 * p;
            const float *even = NULL, *odd = NULL;
            if (d < depth) { unfold_row(g, d, first_position, lines, even_row); even = even_row; }
            if (d + 1 < depth) { unfold_row(g, d + 1, first_position, lines, odd_row); odd = odd_row; }
            for (int panel = 0; panel < panels; panel++)
                pack_panel_pair(packed, base + (size_t)panel * width * pairs, pairs, p, panel, even, odd, 1, vector);
        }
    }
}
