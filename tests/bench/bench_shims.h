/* The timing shims of bench_llama (tests/bench/bench_shims.c): every Backend op replaced by a
 * wrapper that calls the original and adds its wall time to (phase, category); matmuls are
 * also tallied per (M, N, K, trans) shape (tA = 2: a bf16 matmul). Nothing in core/ or
 * kernels/ changes. Not the benchmark itself (bench_llama.c). */
#ifndef LORASC_BENCH_SHIMS_H
#define LORASC_BENCH_SHIMS_H

#include <time.h>

#include "kernels/backend.h"

static inline double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { PH_FORWARD, PH_BACKWARD, PH_OPTIMIZER, N_PHASES };
extern const char *const phase_names[N_PHASES];

enum {
    CAT_MM_BASE, CAT_MM_CLS, CAT_MM_LORA, CAT_ATTENTION, CAT_CE, CAT_RMSNORM, CAT_ROPE,
    CAT_SWIGLU, CAT_RESIDUAL, CAT_EMBED, CAT_MEMORY, CAT_ADAMW, CAT_UNTRACKED, N_CATS
};
extern const char *const cat_names[N_CATS];
extern const char *const cat_keys[N_CATS];

typedef struct MatmulShape {
    int M, N, K, ta, tb, cat;
    long calls;
    double seconds;
    double isolated_gflops;
} MatmulShape;

#define MAX_MM_SHAPES 128

typedef struct BenchProf {
    Backend orig;
    int phase;
    int vocab;
    int lora_rank;
    double seconds[N_PHASES][N_CATS];
    MatmulShape mm[MAX_MM_SHAPES];
    int n_mm;
} BenchProf;
extern BenchProf prof;

/* Wraps be's ops (the originals kept in prof.orig) and clears the tallies; lora_rank tells the
 * adapters' GEMMs apart, vocab the classifier's. */
void shims_install(Backend *be, int vocab, int lora_rank);
/* Puts the original ops back. */
void shims_remove(Backend *be);

#endif
