/* The machine's GEMM peak for the benchmarks: C = A B on n^3 square matrices through
 * OpenBLAS sgemm, oneDNN's f32 matmul and oneDNN's bf16 x bf16 -> f32 matmul, each the best of
 * several timed runs at a given thread count, with a spot check of the result against double.
 * Not the engine's matmul (kernels/cpu/matmul.c); bench_llama and bench_gemm share it. */
#ifndef LORASC_BENCH_GEMM_PEAK_H
#define LORASC_BENCH_GEMM_PEAK_H

typedef struct GemmPeak {
    double gflops;     /* best of the timed runs; 0 when unavailable */
    double max_error;  /* largest |C - C_double| / sum_p |a_ip b_pj| over sampled elements */
    char impl[64];     /* oneDNN's implementation name ("brg:avx512_core", ...), or "openblas" */
    const char *why;   /* when unavailable: one sentence why; else NULL */
} GemmPeak;

/* OpenBLAS sgemm with `threads` threads (its own threading; the thread count it had is put
 * back afterwards). */
GemmPeak gemm_peak_openblas(int threads, int n, int reps);
/* oneDNN's matmul with `threads` OpenMP threads: f32, or (bf16 = 1) bf16 inputs with f32
 * accumulation and output, only where the CPU has AVX512_BF16 (else unavailable, rather than
 * timing oneDNN's reference loops). Unavailable in builds without oneDNN. */
GemmPeak gemm_peak_onednn(int threads, int n, int reps, int bf16);
/* oneDNN's version and the instruction set it runs here, e.g. "oneDNN 2.6.3, isa avx512_core_bf16";
 * "no oneDNN in this build" otherwise. */
const char *gemm_peak_onednn_info(void);

#endif
