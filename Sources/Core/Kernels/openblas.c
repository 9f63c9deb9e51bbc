// OpenBLAS, opened at run time so that its kernel can be chosen first (docs/PERFORMANCE.md,
// "OpenBLAS's kernel"). Debian's 0.3.21 picks its kernel once, in a constructor, from the CPU's
// model number; on a CPU it does not know (seen: a virtualised Sapphire Rapids reporting
// "Intel(R) Xeon(R) Processor") it falls back to its SSE3 kernel, Prescott, three times slower.
// Opening it after setting OPENBLAS_CORETYPE from the CPU's features avoids that.
#include "xattn_kernels.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

static struct {
    sgemm_fn sgemm;
    void (*set_threads)(int);
    char *(*config)(void);
    char *(*corename)(void);
    char error[512];
    char chosen[32];
} blas;
static pthread_once_t once = PTHREAD_ONCE_INIT;

const char *xattn_blas_core_for_cpu(void) {
#if defined(__x86_64__)
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return NULL;
    const int intel = ebx == 0x756e6547 && edx == 0x49656e69 && ecx == 0x6c65746e;  // "GenuineIntel"
    if (!intel) return NULL;  // AMD's Zen family is known to it by family number
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return NULL;
    const int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return NULL;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x6) != 0x6) return NULL;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return NULL;
    const int avx2 = (ebx >> 5) & 1;
    const int avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);  // F DQ BW VL
    if (avx512 && (lo & 0xE6) == 0xE6) return "SkylakeX";
    if (avx2 && fma) return "Haswell";
#endif
    return NULL;
}

static void load(void) {
    if (!getenv("OPENBLAS_CORETYPE")) {
        const char *core = xattn_blas_core_for_cpu();
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 0);
            snprintf(blas.chosen, sizeof blas.chosen, "%s", core);
        }
    }
    void *handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!handle) handle = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(blas.error, sizeof blas.error, "cannot open OpenBLAS (libopenblas.so.0; Debian: apt install libopenblas0): %s", dlerror());
        return;
    }
    blas.sgemm = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    blas.set_threads = (void (*)(int))dlsym(handle, "openblas_set_num_threads");
    blas.config = (char *(*)(void))dlsym(handle, "openblas_get_config");
    blas.corename = (char *(*)(void))dlsym(handle, "openblas_get_corename");
    if (!blas.sgemm || !blas.set_threads) {
        snprintf(blas.error, sizeof blas.error, "OpenBLAS lacks cblas_sgemm or openblas_set_num_threads");
        blas.sgemm = NULL;
        return;
    }
    blas.set_threads(1);
}

const char *xattn_blas_open(void) {
    pthread_once(&once, load);
    return blas.sgemm ? NULL : blas.error;
}

void xattn_blas_set_threads(int threads) {
    if (xattn_blas_open() == NULL) blas.set_threads(threads);
}

void xattn_sgemm(int transposed_a, int transposed_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    if (xattn_blas_open() != NULL) abort();  // callers check xattn_blas_open() first
    enum { row_major = 101, no_transpose = 111, transpose = 112 };
    blas.sgemm(row_major, transposed_a ? transpose : no_transpose, transposed_b ? transpose : no_transpose,
               m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *xattn_blas_description(void) {
    static char text[512];
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    const char *error = xattn_blas_open();
    if (error) snprintf(text, sizeof text, "%s", error);
    else snprintf(text, sizeof text, "%s; kernel %s%s%s", blas.config ? blas.config() : "OpenBLAS",
                  blas.corename ? blas.corename() : "?", blas.chosen[0] ? ", chosen by xattn for this CPU (OPENBLAS_CORETYPE=" : "",
                  blas.chosen[0] ? blas.chosen : "");
    if (!error && blas.chosen[0]) strncat(text, ")", sizeof text - strlen(text) - 1);
    pthread_mutex_unlock(&lock);
    return text;
}

const char *xattn_blas_corename(void) {
    return xattn_blas_open() == NULL && blas.corename ? blas.corename() : "";
}
