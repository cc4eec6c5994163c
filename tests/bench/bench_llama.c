/* CPU benchmark of LoRA fine-tuning (q and v adapted, r = 8, alpha = 16, AdamW on the
 * adapters, base frozen) on the stories15M, stories110M and SmolLM2-135M shapes: tokens/s, GFLOP/s at 4N
 * FLOPs per token, and the fraction of this machine's GEMM peak measured in the same run (the
 * best f32 GEMM available: oneDNN's matmul, OpenBLAS sgemm for comparison; and oneDNN's
 * bf16 x bf16 -> f32 where the CPU has AVX512_BF16: tests/bench/gemm_peak.c).
 * A second pass wraps the Backend's function pointers in timing shims (nothing in core/ or
 * kernels/ changes) to say where the step's time goes: per op, per phase, per GEMM shape.
 * Not a test: it checks nothing and exits 0 unless something fails. The PyTorch reference
 * is tests/bench/bench_torch.py; tests/bench/run_bench.sh runs both and compares. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "core/base/error.h"
#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/model/adamw.h"
#include "core/base/philox.h"
#include "tests/bench/bench_shims.h"
#include "tests/bench/gemm_peak.h"
#include "tests/bench/bench_time.h"

/* ------------------------------------------------------------------------------------------
 * shapes and options */

typedef struct BenchShape {
    const char *name;
    LlamaConfig config;
    int B, T;
    int warmup, steps; /* defaults; --steps overrides steps */
} BenchShape;

static const BenchShape shapes[] = {
    {"small", {.dim = 288, .hidden_dim = 768, .n_layers = 6, .n_heads = 6, .n_kv_heads = 6,
               .vocab_size = 32000, .seq_len = 256, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
               .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED},
     4, 256, 2, 6},
    {"large", {.dim = 768, .hidden_dim = 2048, .n_layers = 12, .n_heads = 12, .n_kv_heads = 12,
               .vocab_size = 32000, .seq_len = 256, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
               .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED},
     2, 256, 1, 4},
    /* SmolLM2-135M: grouped-query attention, a 49,152-token vocabulary (tied) */
    {"smollm2", {.dim = 576, .hidden_dim = 1536, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3,
                 .vocab_size = 49152, .seq_len = 256, .rope_theta = 100000.0f, .norm_eps = 1e-5f,
                 .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED},
     2, 256, 1, 4},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

enum { LORA_RANK = 8 };
static const float LORA_ALPHA = 16.0f, LEARNING_RATE = 1e-3f;

typedef struct Options {
    int shape_mask; /* bit i: shapes[i] */
    int steps;      /* 0: the shape's default */
    int threads;
    int profile_steps;
    CpuGemm gemm; /* --gemm: the backend's GEMM library */
    int precisions; /* --precision: bit 0 fp32, bit 1 bf16 (a bf16 frozen base) */
    ModelPrecision activations; /* --activations: how the backward's activations are stored */
    const char *json;
} Options;

static const char *const gemm_names[] = {"auto", "openblas", "onednn"};

/* ------------------------------------------------------------------------------------------
 * one GEMM shape in isolation, through the backend's matmul */

static void fill_uniform(float *x, size_t n, uint64_t stream) {
    philox_uniform(x, n, 1234, stream, -1.0, 1.0);
}

/* Best GFLOP/s of `reps` runs of the backend's matmul with op(a) [M,K], op(b) [K,N]
 * (row-major), after one untimed run. */
static double sgemm_gflops(Backend *be, int M, int N, int K, int ta, int tb, int reps) {
    float *a = malloc((size_t)M * K * sizeof(float)), *b = malloc((size_t)K * N * sizeof(float));
    float *c = malloc((size_t)M * N * sizeof(float));
    LSC_ASSERT(a && b && c);
    fill_uniform(a, (size_t)M * K, 1);
    fill_uniform(b, (size_t)K * N, 2);
    memset(c, 0, (size_t)M * N * sizeof(float));
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now_s();
        be->matmul(be, c, a, b, M, N, K, ta, tb, 1.0f, 0.0f);
        const double dt = now_s() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / best * 1e-9;
}

/* Fraction of all CPUs kept busy by other processes over `seconds` (from /proc/stat, less
 * this process's own ticks: OpenBLAS starts spinning workers at load), or -1 where unknown.
 * Another process on the cores invalidates every timing, so the report states it. */
static int read_cpu_ticks(unsigned long long *busy, unsigned long long *total) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    const int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                             &v[3], &v[4], &v[5], &v[6], &v[7])
                    : 0;
    if (f) fclose(f);
    if (n != 8) return 0;
    *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle and iowait */
    *total = *busy + v[3] + v[4];
    /* our own utime + stime: fields 14 and 15 of /proc/self/stat, after the ")" of comm */
    char line[1024];
    f = fopen("/proc/self/stat", "r");
    const char *p = f && fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
    if (f) fclose(f);
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    *busy -= ut + st < *busy ? ut + st : *busy;
    return 1;
}

typedef struct BusyMark {
    unsigned long long busy, total;
    int ok;
} BusyMark;

static BusyMark busy_mark(void) {
    BusyMark m = {0, 0, 0};
    m.ok = read_cpu_ticks(&m.busy, &m.total);
    return m;
}

/* Fraction of the CPUs that other processes kept busy since `m`. */
static double busy_since(BusyMark m) {
    BusyMark n = busy_mark();
    if (!m.ok || !n.ok || n.total <= m.total) return -1.0;
    return n.busy > m.busy ? (double)(n.busy - m.busy) / (double)(n.total - m.total) : 0.0;
}

static double machine_busy_fraction(double seconds) {
    const BusyMark m = busy_mark();
    const struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    return busy_since(m);
}

/* ------------------------------------------------------------------------------------------
 * one shape: build, time, profile */

typedef struct ShapeResult {
    const BenchShape *shape;
    ModelPrecision precision;
    size_t n_params, n_lora;
    double flops_per_token; /* 4N */
    double step_median, step_min, step_max;
    int steps;
    double tokens_per_s, gflops, pct_peak, pct_bf16_peak;
    double onednn_calls, openblas_calls; /* per timed step: which library ran the matmuls */
    double phase_seconds[N_PHASES]; /* mean over profiled steps */
    double cat_seconds[N_PHASES][N_CATS];
    double profiled_step;
    double mm_flops_per_step;
    MatmulShape mm[MAX_MM_SHAPES];
    int n_mm;
    double loss_first, loss_last;
    ModelPrecision activations;
    size_t acts_bytes; /* the activations arena after the steps */
} ShapeResult;

typedef struct Trainer {
    Llama model;
    LoraAdapters lora;
    AdamW opt;
    int32_t *tokens, *targets;
    int B, T;
} Trainer;

static int trainer_build(Trainer *tr, Backend *be, const BenchShape *s, ModelPrecision p,
                         ModelPrecision acts) {
    memset(tr, 0, sizeof *tr);
    if (llama_create(&tr->model, be, &s->config) != LSC_OK) return LSC_ERR;
    llama_init_random(&tr->model, 42);
    if (llama_set_precision(&tr->model, p) != LSC_OK ||
        llama_set_activations(&tr->model, acts) != LSC_OK ||
        llama_ensure_masters(&tr->model, LORA_DEFAULT_TARGETS) != LSC_OK)
        return LSC_ERR;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&s->config, in, out);
    const LoraConfig lc = {.rank = LORA_RANK, .alpha = LORA_ALPHA, .targets = LORA_DEFAULT_TARGETS};
    if (lora_create(&tr->lora, be, &lc, s->config.n_layers, in, out, 7) != LSC_OK) return LSC_ERR;
    llama_attach_lora(&tr->model, &tr->lora);
    tr->model.backward_follows = 1; /* every forward here is a training step's (as finetune's) */
    AdamWConfig ac = adamw_default_config(); /* wd 0, clip 1.0: bench_torch.py does the same */
    const ParamGroup group = {.p = tr->lora.params, .g = tr->lora.grads, .n = tr->lora.num_params,
                              .lr_scale = 1.0f, .weight_decay = 0.0f};
    if (adamw_create(&tr->opt, be, &ac, &group, 1) != LSC_OK) return LSC_ERR;
    tr->B = s->B;
    tr->T = s->T;
    const size_t n = (size_t)s->B * (size_t)s->T;
    tr->tokens = malloc(n * sizeof(int32_t));
    tr->targets = malloc(n * sizeof(int32_t));
    if (!tr->tokens || !tr->targets) return error_set("Out of memory for a batch of %zu tokens.", n);
    const uint32_t V = (uint32_t)s->config.vocab_size;
    for (size_t i = 0; i < n; i++) {
        tr->tokens[i] = (int32_t)(philox_u32(5, 1, i) % V);
        tr->targets[i] = (int32_t)(philox_u32(5, 2, i) % V);
    }
    return LSC_OK;
}

static void trainer_free(Trainer *tr) {
    adamw_free(&tr->opt);
    lora_free(&tr->lora);
    llama_free(&tr->model);
    free(tr->tokens);
    free(tr->targets);
}

/* One training step; with `phases` != NULL, the wall time of each phase is added to it. */
static int trainer_step(Trainer *tr, double *phases) {
    double t0 = now_s(), t1, t2;
    prof.phase = PH_FORWARD;
    if (llama_forward(&tr->model, tr->tokens, tr->targets, tr->B, tr->T) != LSC_OK) return LSC_ERR;
    t1 = now_s();
    prof.phase = PH_BACKWARD;
    if (llama_backward(&tr->model) != LSC_OK) return LSC_ERR;
    t2 = now_s();
    prof.phase = PH_OPTIMIZER;
    adamw_step(&tr->opt, LEARNING_RATE);
    llama_zero_grad(&tr->model);
    if (phases) {
        phases[PH_FORWARD] += t1 - t0;
        phases[PH_BACKWARD] += t2 - t1;
        phases[PH_OPTIMIZER] += now_s() - t2;
    }
    return LSC_OK;
}

static int bench_shape(Backend *be, const BenchShape *s, ModelPrecision p, const Options *o,
                       ShapeResult *res) {
    int rc = LSC_OK;
    double *times = NULL;
    Trainer tr;
    memset(res, 0, sizeof *res);
    res->shape = s;
    res->precision = p;
    res->activations = o->activations;
    if (trainer_build(&tr, be, s, p, o->activations) != LSC_OK) {
        rc = LSC_ERR;
        goto done;
    }
    res->n_params = tr.model.num_params; /* tied: the embedding is counted once */
    res->n_lora = tr.lora.num_params;
    res->flops_per_token = 4.0 * (double)res->n_params;
    const int steps = o->steps > 0 ? o->steps : s->steps;
    const double tokens = (double)s->B * s->T;
    times = malloc((size_t)steps * sizeof *times);
    LSC_ASSERT(times != NULL);

    for (int i = 0; i < s->warmup; i++) {
        if ((rc = trainer_step(&tr, NULL)) != LSC_OK) goto done;
        if (i == 0) res->loss_first = tr.model.mean_loss;
    }
    CpuGemmStats st0, st1;
    backend_cpu_gemm_stats(be, &st0);
    for (int i = 0; i < steps; i++) {
        const double t0 = now_s();
        if ((rc = trainer_step(&tr, NULL)) != LSC_OK) goto done;
        times[i] = now_s() - t0;
    }
    backend_cpu_gemm_stats(be, &st1);
    res->onednn_calls = (double)(st1.onednn_calls - st0.onednn_calls) / steps;
    res->openblas_calls = (double)(st1.openblas_calls - st0.openblas_calls) / steps;
    res->loss_last = tr.model.mean_loss;
    res->acts_bytes = tr.model.acts_arena.capacity;
    res->steps = steps;
    res->step_median = median(times, steps); /* sorts times */
    res->step_min = times[0];
    res->step_max = times[steps - 1];
    res->tokens_per_s = tokens / res->step_median;
    res->gflops = res->tokens_per_s * res->flops_per_token * 1e-9;

    /* profiled pass: same steps with the shims in */
    if (o->profile_steps > 0) {
        shims_install(be, s->config.vocab_size, LORA_RANK);
        double phases[N_PHASES] = {0};
        for (int i = 0; i < o->profile_steps && rc == LSC_OK; i++) rc = trainer_step(&tr, phases);
        shims_remove(be);
        if (rc != LSC_OK) goto done;
        const double np = o->profile_steps;
        for (int p = 0; p < N_PHASES; p++) {
            double tracked = 0.0;
            for (int c = 0; c < N_CATS; c++) {
                res->cat_seconds[p][c] = prof.seconds[p][c] / np;
                tracked += res->cat_seconds[p][c];
            }
            res->phase_seconds[p] = phases[p] / np;
            res->cat_seconds[p][CAT_UNTRACKED] = res->phase_seconds[p] - tracked;
            res->profiled_step += res->phase_seconds[p];
        }
        res->n_mm = prof.n_mm;
        for (int i = 0; i < prof.n_mm; i++) {
            res->mm[i] = prof.mm[i];
            res->mm[i].calls = (long)(prof.mm[i].calls / o->profile_steps);
            res->mm[i].seconds /= np;
            res->mm_flops_per_step += 2.0 * res->mm[i].M * res->mm[i].N * res->mm[i].K * res->mm[i].calls;
        }
        /* the same shapes in isolation (hot cache, no neighbours), to separate shape
         * efficiency from in-situ effects; skip the tiny LoRA ones */
        for (int i = 0; i < res->n_mm; i++) {
            MatmulShape *m = &res->mm[i];
            m->isolated_gflops = m->cat == CAT_MM_LORA || m->ta >= 2
                                     ? 0.0 /* bf16 shapes: not measured alone */
                                     : sgemm_gflops(be, m->M, m->N, m->K, m->ta, m->tb, 4);
        }
    }
done:
    if (rc != LSC_OK) fprintf(stderr, "bench_llama: shape %s: %s\n", s->name, error_last());
    free(times);
    trainer_free(&tr);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * report */

static void print_result(const ShapeResult *r, double peak, double peak_bf16) {
    const BenchShape *s = r->shape;
    const LlamaConfig *c = &s->config;
    printf("\n== %s, %s base: dim %d, layers %d, heads %d, hidden %d, vocab %d, B %d x T %d ==\n",
           s->name, precision_name(r->precision), c->dim, c->n_layers, c->n_heads, c->hidden_dim,
           c->vocab_size, s->B, s->T);
    printf("activations arena %.1f MiB\n", (double)r->acts_bytes / (1 << 20));
    printf("params N = %zu (embedding counted once), LoRA params = %zu, 4N = %.1f MFLOP/token\n",
           r->n_params, r->n_lora, r->flops_per_token * 1e-6);
    printf("loss %.4f (first warm-up step) -> %.4f (last timed step)\n", r->loss_first, r->loss_last);
    printf("step: median %.1f ms, min %.1f ms, max %.1f ms over %d timed steps\n",
           1e3 * r->step_median, 1e3 * r->step_min, 1e3 * r->step_max, r->steps);
    printf("lorasc: %.1f tokens/s (median step), %.1f GFLOP/s at 4N, %.1f%% of the f32 GEMM peak "
           "%.1f", r->tokens_per_s, r->gflops, r->pct_peak, peak);
    if (peak_bf16 > 0) printf(", %.1f%% of the bf16 peak %.1f", r->pct_bf16_peak, peak_bf16);
    printf("\nmatmuls per step: %.0f through oneDNN, %.0f through OpenBLAS\n", r->onednn_calls,
           r->openblas_calls);
    if (r->profiled_step <= 0) return;

    printf("\nbreakdown (ms per step, shims in; profiled step %.1f ms vs clean median %.1f ms):\n",
           1e3 * r->profiled_step, 1e3 * r->step_median);
    printf("  %-24s %9s %9s %9s %9s %6s\n", "op", "forward", "backward", "optim", "total", "%");
    for (int ct = 0; ct < N_CATS; ct++) {
        double tot = 0.0;
        for (int p = 0; p < N_PHASES; p++) tot += r->cat_seconds[p][ct];
        if (fabs(tot) < 5e-5) continue;
        printf("  %-24s %9.1f %9.1f %9.1f %9.1f %6.1f\n", cat_names[ct], 1e3 * r->cat_seconds[0][ct],
               1e3 * r->cat_seconds[1][ct], 1e3 * r->cat_seconds[2][ct], 1e3 * tot,
               100.0 * tot / r->profiled_step);
    }
    printf("  %-24s %9.1f %9.1f %9.1f %9.1f %6.1f\n", "phase total", 1e3 * r->phase_seconds[0],
           1e3 * r->phase_seconds[1], 1e3 * r->phase_seconds[2], 1e3 * r->profiled_step, 100.0);

    double mm_s = 0.0;
    for (int i = 0; i < r->n_mm; i++) mm_s += r->mm[i].seconds;
    const double tokens = (double)s->B * s->T;
    printf("\nmatmul FLOPs per step %.2f GFLOP (4N x tokens = %.2f), %.1f GFLOP/s inside matmul "
           "(%.1f%% of peak); matmul is %.1f%% of the step\n",
           r->mm_flops_per_step * 1e-9, r->flops_per_token * tokens * 1e-9,
           r->mm_flops_per_step / mm_s * 1e-9, 100.0 * r->mm_flops_per_step / mm_s * 1e-9 / peak,
           100.0 * mm_s / r->profiled_step);
    printf("GEMM shapes (row-major C[M,N] = op(A)[M,K] op(B)[K,N]), by time:\n");
    printf("  %6s %6s %6s %3s %3s %6s %9s %9s %7s %9s  %s\n", "M", "N", "K", "tA", "tB", "calls",
           "ms/step", "GFLOP/s", "%peak", "isolated", "kind");
    int order[MAX_MM_SHAPES];
    for (int i = 0; i < r->n_mm; i++) order[i] = i;
    for (int i = 1; i < r->n_mm; i++) /* insertion sort by time, descending */
        for (int j = i; j > 0 && r->mm[order[j]].seconds > r->mm[order[j - 1]].seconds; j--) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int k = 0; k < r->n_mm; k++) {
        const MatmulShape *m = &r->mm[order[k]];
        const double gf = 2.0 * m->M * m->N * m->K * m->calls / m->seconds * 1e-9;
        printf("  %6d %6d %6d %3d %3d %6ld %9.2f %9.1f %6.1f%% %9.1f  %s\n", m->M, m->N, m->K, m->ta,
               m->tb, m->calls, 1e3 * m->seconds, gf, 100.0 * gf / peak, m->isolated_gflops,
               cat_keys[m->cat]);
    }
}

/* The machine's GEMM peaks, 2048^3: each measured at the start and at the end of the run. */
enum { PEAK_OPENBLAS, PEAK_ONEDNN_F32, PEAK_ONEDNN_BF16, N_PEAKS };
static const char *const peak_names[N_PEAKS] = {"OpenBLAS sgemm", "oneDNN f32",
                                                "oneDNN bf16 x bf16 -> f32"};
static const char *const peak_keys[N_PEAKS] = {"openblas_f32", "onednn_f32", "onednn_bf16"};

typedef struct RunInfo {
    int threads;
    CpuGemm gemm;
    double busy_before;            /* fraction of the CPUs busy just before the run */
    double busy_during;            /* ... kept busy by other processes during the run */
    GemmPeak start[N_PEAKS], end[N_PEAKS];
    double best[N_PEAKS];          /* the larger of start and end (a busy core only lowers it) */
    double peak;                   /* the best f32 GEMM: what "% of peak" is measured against */
    const char *peak_library;      /* whose it is */
} RunInfo;

static void peaks_measure(GemmPeak p[N_PEAKS], int threads) {
    p[PEAK_OPENBLAS] = gemm_peak_openblas(threads, 2048, 5);
    p[PEAK_ONEDNN_F32] = gemm_peak_onednn(threads, 2048, 5, 0);
    p[PEAK_ONEDNN_BF16] = gemm_peak_onednn(threads, 2048, 5, 1);
}

static void peaks_print(const GemmPeak p[N_PEAKS], const char *when) {
    for (int i = 0; i < N_PEAKS; i++)
        if (p[i].why)
            printf("%s (2048^3) at the %s: unavailable: %s\n", peak_names[i], when, p[i].why);
        else
            printf("%s (2048^3, best of 5) at the %s: %.1f GFLOP/s (%s, max error %.1e of "
                   "sum|a b|)\n", peak_names[i], when, p[i].gflops, p[i].impl, p[i].max_error);
}

static int write_json(const char *path, const ShapeResult *res, int n, const RunInfo *ri) {
    FILE *f = fopen(path, "w");
    if (!f) return error_set("Cannot open %s for writing the benchmark results.", path);
    fprintf(f, "{\n  \"engine\": \"lorasc\",\n  \"threads\": %d,\n  \"gemm\": \"%s\",\n"
               "  \"onednn\": \"%s\",\n  \"peak_f32_gflops\": %.3f,\n  \"peak_f32_library\": \"%s\",\n",
            ri->threads, gemm_names[ri->gemm], gemm_peak_onednn_info(), ri->peak, ri->peak_library);
    for (int i = 0; i < N_PEAKS; i++)
        fprintf(f, "  \"peak_%s\": {\"gflops\": %.3f, \"start\": %.3f, \"end\": %.3f, "
                   "\"impl\": \"%s\"},\n",
                peak_keys[i], ri->best[i], ri->start[i].gflops, ri->end[i].gflops, ri->start[i].impl);
    fprintf(f, "  \"busy_before\": %.3f,\n  \"busy_during\": %.3f,\n"
               "  \"timing\": \"median of timed steps after warm-up\",\n  \"shapes\": [\n",
            ri->busy_before, ri->busy_during);
    for (int i = 0; i < n; i++) {
        const ShapeResult *r = &res[i];
        const BenchShape *s = r->shape;
        fprintf(f, "    {\"name\": \"%s\", \"precision\": \"%s\", \"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, "
                   "\"hidden_dim\": %d, \"vocab_size\": %d, \"B\": %d, \"T\": %d,\n",
                s->name, precision_name(r->precision), s->config.dim, s->config.n_layers, s->config.n_heads, s->config.hidden_dim,
                s->config.vocab_size, s->B, s->T);
        fprintf(f, "     \"n_params\": %zu, \"n_lora_params\": %zu, \"flops_per_token\": %.0f, "
                   "\"steps\": %d, \"warmup\": %d,\n",
                r->n_params, r->n_lora, r->flops_per_token, r->steps, s->warmup);
        fprintf(f, "     \"activations\": \"%s\", \"acts_bytes\": %zu,\n",
                precision_name(r->activations), r->acts_bytes);
        fprintf(f, "     \"step_ms_median\": %.3f, \"step_ms_min\": %.3f, \"step_ms_max\": %.3f, "
                   "\"tokens_per_s\": %.2f, \"gflops\": %.3f, \"pct_peak\": %.2f, "
                   "\"pct_bf16_peak\": %.2f,\n",
                1e3 * r->step_median, 1e3 * r->step_min, 1e3 * r->step_max, r->tokens_per_s,
                r->gflops, r->pct_peak, r->pct_bf16_peak);
        fprintf(f, "     \"matmuls_onednn\": %.0f, \"matmuls_openblas\": %.0f,\n", r->onednn_calls,
                r->openblas_calls);
        fprintf(f, "     \"loss_first\": %.5f, \"loss_last\": %.5f,\n", r->loss_first, r->loss_last);
        fprintf(f, "     \"profile_ms\": {");
        for (int p = 0; p < N_PHASES; p++) {
            fprintf(f, "%s\"%s\": {\"total\": %.3f", p ? ", " : "", phase_names[p],
                    1e3 * r->phase_seconds[p]);
            for (int ct = 0; ct < N_CATS; ct++)
                fprintf(f, ", \"%s\": %.3f", cat_keys[ct], 1e3 * r->cat_seconds[p][ct]);
            fprintf(f, "}");
        }
        fprintf(f, "},\n     \"matmul_shapes\": [");
        for (int k = 0; k < r->n_mm; k++) {
            const MatmulShape *m = &r->mm[k];
            fprintf(f, "%s\n       {\"M\": %d, \"N\": %d, \"K\": %d, \"ta\": %d, \"tb\": %d, "
                       "\"kind\": \"%s\", \"calls\": %ld, \"ms\": %.3f, \"gflops\": %.2f, "
                       "\"isolated_gflops\": %.2f}",
                    k ? "," : "", m->M, m->N, m->K, m->ta, m->tb, cat_keys[m->cat], m->calls,
                    1e3 * m->seconds, 2.0 * m->M * m->N * m->K * m->calls / m->seconds * 1e-9,
                    m->isolated_gflops);
        }
        fprintf(f, "]}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) return error_set("Error writing %s.", path);
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * main */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_llama [--shape small|large|smollm2|all] [--steps N] [--threads N] "
               "[--profile-steps N] [--gemm auto|openblas|onednn] [--precision fp32|bf16|both]\n"
               "       [--activations fp32|bf16] [--json PATH]\n"
               "  LoRA (q,v; r=8) fine-tuning tokens/s on the stories15M / stories110M / SmolLM2-135M\n"
               "  shapes (all: the three),\n"
               "  GFLOP/s at 4N FLOPs/token and %% of the f32 GEMM peak (the best of oneDNN and\n"
               "  OpenBLAS, 2048^3) and of the bf16 peak, measured in the same run.\n"
               "  --profile-steps 0 skips the per-op breakdown (default 1).\n"
               "  --gemm picks the backend's GEMM library (default auto: oneDNN, OpenBLAS where\n"
               "  it measured faster).\n"
               "  --precision: the frozen base in fp32 (default), bf16 (matmul_bf16), or both\n"
               "  (each shape twice, and the bf16/fp32 tokens/s ratio).\n"
               "  --activations: the activations the backward reads stored in fp32 (default) or\n"
               "  bf16 between forward and backward (llama_set_activations).\n");
}

static int parse_options(int argc, char **argv, Options *o) {
    *o = (Options){.shape_mask = 7, .steps = 0, .threads = 2, .profile_steps = 1,
                   .gemm = CPU_GEMM_AUTO, .precisions = 1, .json = NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--shape") == 0 && has_value) {
            const char *v = argv[++i];
            if (strcmp(v, "all") == 0) o->shape_mask = 7;
            else if (strcmp(v, "small") == 0) o->shape_mask = 1;
            else if (strcmp(v, "large") == 0) o->shape_mask = 2;
            else if (strcmp(v, "smollm2") == 0) o->shape_mask = 4;
            else return error_set("--shape takes small, large, smollm2 or all, got '%s'.", v);
        } else if (strcmp(a, "--steps") == 0 && has_value) {
            o->steps = atoi(argv[++i]);
            if (o->steps <= 0) return error_set("--steps takes a positive integer, got '%s'.", argv[i]);
        } else if (strcmp(a, "--threads") == 0 && has_value) {
            o->threads = atoi(argv[++i]);
            if (o->threads <= 0) return error_set("--threads takes a positive integer, got '%s'.", argv[i]);
        } else if (strcmp(a, "--profile-steps") == 0 && has_value) {
            o->profile_steps = atoi(argv[++i]);
            if (o->profile_steps < 0) return error_set("--profile-steps takes an integer >= 0, got '%s'.", argv[i]);
        } else if (strcmp(a, "--gemm") == 0 && has_value) {
            const char *v = argv[++i];
            int k = 0;
            while (k < 3 && strcmp(v, gemm_names[k]) != 0) k++;
            if (k == 3) return error_set("--gemm takes auto, openblas or onednn, got '%s'.", v);
            o->gemm = (CpuGemm)k;
        } else if (strcmp(a, "--precision") == 0 && has_value) {
            const char *v = argv[++i];
            if (strcmp(v, "fp32") == 0) o->precisions = 1;
            else if (strcmp(v, "bf16") == 0) o->precisions = 2;
            else if (strcmp(v, "both") == 0) o->precisions = 3;
            else return error_set("--precision takes fp32, bf16 or both, got '%s'.", v);
        } else if (strcmp(a, "--activations") == 0 && has_value) {
            const int v = precision_parse(argv[++i]);
            if (v < 0) return error_set("--activations takes fp32 or bf16, got '%s'.", argv[i]);
            o->activations = (ModelPrecision)v;
        } else if (strcmp(a, "--json") == 0 && has_value) {
            o->json = argv[++i];
        } else {
            return error_set("Unknown or incomplete option '%s' (see --help).", a);
        }
    }
    return LSC_OK;
}

int main(int argc, char **argv) {
    Options o;
    if (parse_options(argc, argv, &o) != LSC_OK) {
        fprintf(stderr, "bench_llama: %s\n", error_last());
        usage(stderr);
        return 2;
    }
    RunInfo ri = {.threads = o.threads, .gemm = o.gemm};
    ri.busy_before = machine_busy_fraction(0.5); /* before our own thread pools start */
    const BusyMark run_start = busy_mark();
    Backend *be = backend_cpu_create(o.threads);
    if (!be) {
        fprintf(stderr, "bench_llama: cannot create the CPU backend\n");
        return 1;
    }
    if (backend_cpu_set_gemm(be, o.gemm) != 0) {
        fprintf(stderr, "bench_llama: --gemm onednn: this build has no oneDNN (install "
                        "libdnnl-dev and reconfigure), use auto or openblas\n");
        backend_cpu_destroy(be);
        return 2;
    }
    int rc = 0;
    ShapeResult *res = calloc(2 * N_SHAPES, sizeof *res);
    LSC_ASSERT(res != NULL);
    static const char *const blas_threading[] = {"sequential", "pthreads", "OpenMP"};
    const int par = openblas_get_parallel();
    printf("lorasc bench_llama: %d threads; GEMM %s; %s (%s build); %s\n", o.threads,
           gemm_names[o.gemm], openblas_get_config(),
           par >= 0 && par <= 2 ? blas_threading[par] : "?", gemm_peak_onednn_info());
    printf("CPUs busy in the half second before the run: %.0f%%%s\n", 100.0 * ri.busy_before,
           ri.busy_before > 0.15 ? " (WARNING: other processes are running; timings are unreliable)"
                                 : "");
    peaks_measure(ri.start, o.threads);
    peaks_print(ri.start, "start");
    fflush(stdout);

    int n = 0;
    for (int i = 0; i < N_SHAPES && rc == 0; i++) {
        if (!(o.shape_mask & (1 << i))) continue;
        for (int p = 0; p < 2 && rc == 0; p++) {
            if (!(o.precisions & (1 << p))) continue;
            printf("running %s (%s base) ...\n", shapes[i].name, precision_name(p));
            fflush(stdout);
            if (bench_shape(be, &shapes[i], (ModelPrecision)p, &o, &res[n]) != LSC_OK) rc = 1;
            else n++;
        }
    }
    if (rc == 0) {
        peaks_measure(ri.end, o.threads);
        ri.busy_during = busy_since(run_start);
        peaks_print(ri.end, "end");
        int unsteady = 0;
        for (int k = 0; k < N_PEAKS; k++) {
            ri.best[k] = fmax(ri.start[k].gflops, ri.end[k].gflops);
            unsteady |= fabs(ri.end[k].gflops - ri.start[k].gflops) > 0.1 * ri.best[k];
        }
        const int dnn = ri.best[PEAK_ONEDNN_F32] > ri.best[PEAK_OPENBLAS];
        ri.peak = ri.best[dnn ? PEAK_ONEDNN_F32 : PEAK_OPENBLAS];
        ri.peak_library = dnn ? "onednn" : "openblas";
        printf("f32 peak = %.1f GFLOP/s (%s); bf16 peak = %.1f GFLOP/s%s\n", ri.peak,
               peak_names[dnn ? PEAK_ONEDNN_F32 : PEAK_OPENBLAS], ri.best[PEAK_ONEDNN_BF16],
               unsteady ? " (WARNING: start and end more than 10% apart; the machine was not quiet)"
                        : "");
        for (int i = 0; i < n; i++) {
            res[i].pct_peak = 100.0 * res[i].gflops / ri.peak;
            res[i].pct_bf16_peak = ri.best[PEAK_ONEDNN_BF16] > 0
                                       ? 100.0 * res[i].gflops / ri.best[PEAK_ONEDNN_BF16]
                                       : 0.0;
            print_result(&res[i], ri.peak, ri.best[PEAK_ONEDNN_BF16]);
        }
        for (int i = 0; i + 1 < n; i++)
            if (res[i].shape == res[i + 1].shape && res[i].precision == PRECISION_FP32 &&
                res[i + 1].precision == PRECISION_BF16)
                printf("\n%s: bf16 base %.1f tokens/s, fp32 %.1f tokens/s: ratio %.2f\n",
                       res[i].shape->name, res[i + 1].tokens_per_s, res[i].tokens_per_s,
                       res[i + 1].tokens_per_s / res[i].tokens_per_s);
        printf("\nother processes kept %.0f%% of the CPUs busy during the run%s\n",
               100.0 * ri.busy_during,
               ri.busy_during > 0.05 ? " (WARNING: timings are unreliable)" : "");
    }
    if (rc == 0 && o.json && write_json(o.json, res, n, &ri) != LSC_OK) {
        fprintf(stderr, "bench_llama: %s\n", error_last());
        rc = 1;
    }
    free(res);
    backend_cpu_destroy(be);
    return rc;
}
