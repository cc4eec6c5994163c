/* Benchmark (not a test): the CPU backend's matmul through OpenBLAS and through oneDNN on every
 * GEMM shape of bench_llama's LoRA training step (stories15M, stories110M, SmolLM2-135M:
 * frozen base forward and input gradients, classifier, the r = 8 LoRA branch), with the
 * machine's GEMM peaks. Its table is how kernels/cpu/matmul.c's AUTO rule was chosen.
 * Usage: bench_gemm [--threads N] [--rounds N] [--shape small|large|smollm2|all] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/philox.h"
#include "kernels/backend.h"
#include "tests/bench/gemm_peak.h"

typedef struct ModelDims {
    const char *name;
    int BT, C, H, KV, V; /* rows (B*T), dim, hidden, kv dim, vocab */
} ModelDims;

static const ModelDims models[] = {
    {"small", 1024, 288, 768, 288, 32000},
    {"large", 512, 768, 2048, 768, 32000},
    {"smollm2", 512, 576, 1536, 192, 49152},
};
enum { N_MODELS = 3, RANK = 8, MAX_GEMMS = 32 };

typedef struct Gemm {
    int M, N, K, ta, tb;
    float alpha, beta;
    const char *role;
} Gemm;

/* The step's GEMMs (llama.c, lora.c): y = x W^T is (rows, out, in, 0, 1); its input gradient
 * dx = dy W is (rows, in, out, 0, 0); LoRA on q and v with scaling 16 / 8 = 2. */
static int model_gemms(const ModelDims *d, Gemm *g) {
    int n = 0;
    const int outs[4] = {d->C, d->KV, d->H, d->C}, ins[4] = {d->C, d->C, d->C, d->H};
    static const char *const names[4] = {"q/o", "k/v", "gate/up", "down"};
    for (int w = 0; w < 4; w++) {
        g[n++] = (Gemm){d->BT, outs[w], ins[w], 0, 1, 1, 0, names[w]};
        g[n++] = (Gemm){d->BT, ins[w], outs[w], 0, 0, 1, 0, names[w]};
    }
    g[n++] = (Gemm){d->BT, d->V, d->C, 0, 1, 1, 0, "logits"};
    g[n++] = (Gemm){d->BT, d->C, d->V, 0, 0, 1, 0, "dx classifier"};
    const int lora_out[2] = {d->C, d->KV};
    for (int t = 0; t < 2; t++) {
        const int in = d->C, out = lora_out[t];
        g[n++] = (Gemm){d->BT, RANK, in, 0, 1, 1, 0, "lora xa = x A^T"};
        g[n++] = (Gemm){d->BT, out, RANK, 0, 1, 2, 1, "lora y += s xa B^T"};
        g[n++] = (Gemm){out, RANK, d->BT, 1, 0, 2, 1, "lora dB += s dy^T xa"};
        g[n++] = (Gemm){d->BT, RANK, out, 0, 0, 2, 0, "lora dxa = s dy B"};
        g[n++] = (Gemm){RANK, in, d->BT, 1, 0, 1, 1, "lora dA += dxa^T x"};
        g[n++] = (Gemm){d->BT, in, RANK, 0, 0, 1, 1, "lora dx += dxa A"};
    }
    /* k/v share a shape with q/o where KV = C: drop repeats */
    int m = 0;
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < m; j++)
            dup |= g[j].M == g[i].M && g[j].N == g[i].N && g[j].K == g[i].K &&
                   g[j].ta == g[i].ta && g[j].tb == g[i].tb;
        if (!dup) g[m++] = g[i];
    }
    return m;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds per call: the fastest of `calls` timed calls after a warm-up one. The fastest, not
 * the median: on a shared 2-core machine a call whose second thread was descheduled takes
 * 10-40 ms, and the fastest call is what the library does when it has the cores. */
static double time_gemm(Backend *be, CpuGemm lib, const Gemm *g, float *a, float *b, float *c,
                        int calls) {
    backend_cpu_set_gemm(be, lib);
    be->matmul(be, c, a, b, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta); /* warm-up */
    double best = 1e30;
    for (int k = 0; k < calls; k++) {
        const double t0 = now_s();
        be->matmul(be, c, a, b, g->M, g->N, g->K, g->ta, g->tb, g->alpha, g->beta);
        const double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

static void print_peak(const char *what, GemmPeak p) {
    if (p.why)
        printf("  %-28s unavailable: %s\n", what, p.why);
    else
        printf("  %-28s %7.1f GFLOP/s  (%s; max error %.1e of sum|a b|)\n", what, p.gflops, p.impl,
               p.max_error);
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 3, mask = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            mask = strcmp(v, "small") == 0 ? 1 : strcmp(v, "large") == 0 ? 2
                 : strcmp(v, "smollm2") == 0 ? 4 : strcmp(v, "all") == 0 ? 7 : 0;
        } else mask = 0;
        if (threads <= 0 || rounds <= 0 || mask == 0) {
            fprintf(stderr, "usage: bench_gemm [--threads N] [--rounds N] "
                            "[--shape small|large|smollm2|all]\n");
            return 2;
        }
    }
    Backend *be = backend_cpu_create(threads);
    if (!be) return 1;
    printf("bench_gemm: %d threads; %s\npeak, 2048^3, best of 5:\n", threads,
           gemm_peak_onednn_info());
    print_peak("OpenBLAS sgemm", gemm_peak_openblas(threads, 2048, 5));
    print_peak("oneDNN f32", gemm_peak_onednn(threads, 2048, 5, 0));
    print_peak("oneDNN bf16 x bf16 -> f32", gemm_peak_onednn(threads, 2048, 5, 1));
    if (!backend_cpu_has_onednn()) {
        printf("no oneDNN in this build: nothing to compare\n");
        backend_cpu_destroy(be);
        return 0;
    }
    size_t cap = 0; /* the largest operand of any GEMM measured */
    for (int m = 0; m < N_MODELS; m++) {
        Gemm g[MAX_GEMMS];
        const int n = model_gemms(&models[m], g);
        for (int i = 0; i < n; i++) {
            const size_t sizes[3] = {(size_t)g[i].M * g[i].K, (size_t)g[i].K * g[i].N,
                                     (size_t)g[i].M * g[i].N};
            for (int k = 0; k < 3; k++) cap = sizes[k] > cap ? sizes[k] : cap;
        }
    }
    float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b), *c = malloc(cap * sizeof *c);
    if (!a || !b || !c) return 1;
    philox_uniform(a, cap, 1, 1, -1.0, 1.0);
    philox_uniform(b, cap, 1, 2, -1.0, 1.0);
    philox_uniform(c, cap, 1, 3, -1.0, 1.0);
    for (int m = 0; m < N_MODELS; m++) {
        if (!(mask & (1 << m))) continue;
        Gemm g[MAX_GEMMS];
        const int n = model_gemms(&models[m], g);
        printf("\n%s (rows %d): GFLOP/s of the fastest call, %d rounds alternating the "
               "libraries\n", models[m].name, models[m].BT, rounds);
        printf("  %6s %6s %6s %2s %2s %9s %9s %7s %9s  %s\n", "M", "N", "K", "tA", "tB",
               "openblas", "onednn", "dnn/ob", "auto", "role");
        for (int i = 0; i < n; i++) {
            const double fl = 2.0 * g[i].M * g[i].N * g[i].K * 1e-9;
            /* about 0.1 s of calls per library and round, at least 3, at most 200 */
            const int calls = fl > 30 ? 3 : fl < 0.005 ? 200 : (int)(0.6 / fl) + 3;
            double t_ob = 1e30, t_dn = 1e30;
            for (int r = 0; r < rounds; r++) { /* alternate, so both see the same machine */
                t_ob = fmin(t_ob, time_gemm(be, CPU_GEMM_OPENBLAS, &g[i], a, b, c, calls));
                t_dn = fmin(t_dn, time_gemm(be, CPU_GEMM_ONEDNN, &g[i], a, b, c, calls));
            }
            CpuGemmStats s0, s1; /* which library AUTO picks: the one whose counter moves */
            backend_cpu_set_gemm(be, CPU_GEMM_AUTO);
            backend_cpu_gemm_stats(be, &s0);
            be->matmul(be, c, a, b, g[i].M, g[i].N, g[i].K, g[i].ta, g[i].tb, g[i].alpha,
                       g[i].beta);
            backend_cpu_gemm_stats(be, &s1);
            printf("  %6d %6d %6d %2d %2d %9.1f %9.1f %7.2f %9s  %s\n", g[i].M, g[i].N, g[i].K,
                   g[i].ta, g[i].tb, fl / t_ob, fl / t_dn, t_ob / t_dn,
                   s1.onednn_calls > s0.onednn_calls ? "onednn" : "openblas", g[i].role);
        }
    }
    free(a), free(b), free(c);
    backend_cpu_destroy(be);
    return 0;
}
