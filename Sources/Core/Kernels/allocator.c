// The engine's transient buffers (layer outputs, im2col panels, Winograd's transformed operands)
// are megabytes each, freed and allocated again in every layer. glibc serves a request above its
// mmap threshold with a fresh mapping and unmaps it on free, so each such buffer is page-faulted
// in, and zeroed by the kernel, every time; its dynamic threshold does not help a request of the
// same size as the one just freed. Measured: 42 % of a 320-channel 64×64 Winograd convolution's
// time in page faults; with the threshold fixed, the convolution takes half the time
// (docs/PERFORMANCE.md, "Memory").
#include "xattn_kernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void xattn_tune_allocator(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest; fixing it also ends the dynamic adjustment
    mallopt(M_TRIM_THRESHOLD, 256 << 20); // freed memory kept for the next layer, up to 256 MiB at a heap's top
#endif
}

void xattn_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);  // every arena, and whole free pages inside a heap, not only its top
#endif
}
