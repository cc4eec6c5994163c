/* The training-step benchmark of issue 11 on one device: a Llama-2-7B-shaped model (dim 4096,
 * 32 layers, 32 heads, hidden 11008, vocabulary 32000; random weights made on the device), LoRA
 * r = 8 (alpha 16) on q and v, sequence 1024, the batch as large as fits (or --batch): tokens/s,
 * MFU against the bf16 GEMM peak measured in the same run (cuBLAS, 8192^3, random data), the
 * fraction of the peak of the GEMM the model runs (the backend's matmul: fp32 today), peak
 * device memory, and the LoRASC expert boundary's cost as a fraction of a step and of an epoch.
 * Prints a table and one JSON line ({"bench": "lorasc_train_step", ...}; --json FILE writes it
 * too). tests/bench/peft_gpu.py is the same model and step in PyTorch + PEFT;
 * tests/gpu/check.sh runs both. Not a test: it checks nothing but that the losses are finite.
 *
 * FLOPs per token (PaLM's MFU convention, Chowdhery et al. 2022, appendix B, for a frozen
 * base): 4 N (the frozen matmuls, forward 2N and the activation gradients 2N; no weight
 * gradients) + 6 N_lora (the trained adapters: forward, activation and weight gradients)
 * + 12 L T d (attention scores and values, forward 4 L T d and backward 8 L T d, the full
 * T x T counted, causal masking not discounted). N = L (2 d^2 + 2 d d_kv + 3 d h) + d V (the
 * classifier; embedding lookups are not FLOPs); N_lora = L r (2 d + d + d_kv) per adapted
 * pair. MFU = tokens/s x FLOPs per token / the measured bf16 GEMM peak.
 *
 * Usage: bench_train_device [--device cuda|cpu] [--precision fp32|bf16] [--activations fp32|bf16]
 *   [--shape llama2-7b|tiny|vit-b16|vit-tiny] [--batch B (0: as large as fits)] [--seq T] [--steps N]
 *   [--boundaries N] [--epoch-seqs N] [--json FILE]. --activations bf16 keeps the activations
 *   a backward reads in bf16 between forward and backward (llama_set_activations), as PEFT's
 *   bf16 model does; default fp32. --precision bf16: the frozen base in bf16 with fp32 masters
 *   of the adapted targets (llama_set_precision, vit_set_precision).
 * bench_train_device_cuda_emu is this program on the emulated device (kernels/cuda/emu): a dry
 * run of its device path on a CPU machine (no cuBLAS peak and no memory query there). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/device.h"
#include "core/model/finetune.h"
#include "lorasc_config.h"
#include "tests/bench/bench_time.h"

#include "core/model/precision.h"

#if LORASC_HAVE_CUDA && !defined(LORASC_CUDA_EMU)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

typedef struct Options {
    const char *device, *precision, *activations, *shape, *json;
    int batch, seq, steps, boundaries, epoch_seqs;
    ModelPrecision prec, acts; /* --precision and --activations, parsed */
} Options;

static Backend *be;

static void die(const char *what) {
    const char *e = error_last();
    fprintf(stderr, "bench_train_device: %s: %s\n", what,
            be && be->error(be) ? be->error(be) : e && e[0] ? e : "failed");
    exit(1);
}

static void ok(int rc, const char *what) {
    if (rc != LSC_OK) die(what);
}

/* ---- the backend's allocations, tracked (the peak comparable to torch's
 * max_memory_allocated; the device's own total use comes from cudaMemGetInfo) ---- */

enum { MAX_LIVE = 8192 };
static struct {
    void *p;
    size_t bytes;
} g_live[MAX_LIVE];
static size_t g_live_bytes, g_peak_bytes;
static void *(*g_alloc)(Backend *, size_t);
static void (*g_free)(Backend *, void *);

static void *tracked_alloc(Backend *b, size_t bytes) {
    void *p = g_alloc(b, bytes);
    if (!p) return NULL;
    for (int i = 0; i < MAX_LIVE; i++)
        if (!g_live[i].p) {
            g_live[i].p = p, g_live[i].bytes = bytes;
            g_live_bytes += bytes;
            if (g_live_bytes > g_peak_bytes) g_peak_bytes = g_live_bytes;
            break;
        }
    return p;
}

static void tracked_free(Backend *b, void *p) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (g_live[i].p == p) {
            g_live_bytes -= g_live[i].bytes;
            g_live[i].p = NULL;
            break;
        }
    g_free(b, p);
}

/* bytes in use on the device (everything: other allocations, the CUDA context), or -1 */
static double device_used_bytes(void) {
#if LORASC_HAVE_CUDA && !defined(LORASC_CUDA_EMU)
    size_t free_b = 0, total_b = 0;
    if (strcmp(be->name, "cuda") == 0 && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return (double)(total_b - free_b);
#endif
    return -1;
}

static double device_free_bytes(void) {
#if LORASC_HAVE_CUDA && !defined(LORASC_CUDA_EMU)
    size_t free_b = 0, total_b = 0;
    if (strcmp(be->name, "cuda") == 0 && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return (double)free_b;
#endif
    return -1;
}

/* ---- GEMM peaks ---- */

/* The backend's own matmul (what the model runs; fp32 today) on n^3, median of reps. */
static double backend_gemm_tflops(int n, int reps) {
    const size_t nn = (size_t)n * n;
    Real *a = be->alloc(be, nn * sizeof(Real)), *b = be->alloc(be, nn * sizeof(Real));
    Real *c = be->alloc(be, nn * sizeof(Real));
    if (!a || !b || !c) die("alloc for the GEMM peak");
    be->add_uniform_noise(be, a, nn, 5, 1, 2.0f);
    be->add_uniform_noise(be, b, nn, 5, 2, 2.0f);
    double t[16];
    be->matmul(be, c, a, b, n, n, n, 0, 0, 1, 0);
    ok(device_sync(be), "GEMM warm-up");
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        be->matmul(be, c, a, b, n, n, n, 0, 0, 1, 0);
        ok(device_sync(be), "GEMM");
        t[r] = now_s() - t0;
    }
    be->free(be, a), be->free(be, b), be->free(be, c);
    return 2.0 * n * (double)n * n / median(t, reps) / 1e12;
}

#if LORASC_HAVE_CUDA && !defined(LORASC_CUDA_EMU)
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static double from_bf16(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* cuBLAS bf16 x bf16 -> bf16 with fp32 accumulation on n^3 random matrices (what PyTorch's
 * bf16 matmul runs), median of reps timed with events; *err = the largest relative error of
 * 16 sampled elements against double. 0 when anything fails (*why says what). */
static double bf16_gemm_tflops(int n, int reps, double *err, const char **why) {
    const size_t nn = (size_t)n * n;
    uint16_t *h = malloc(2 * nn * sizeof *h), *c16 = malloc(nn * sizeof *c16);
    float *tmp = malloc(nn * sizeof *tmp);
    void *A = NULL, *B = NULL, *C = NULL;
    cublasHandle_t blas = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double tflops = 0, t[16];
    *err = NAN;
    *why = "out of host memory";
    if (!h || !c16 || !tmp) goto done;
    for (int m = 0; m < 2; m++) {
        philox_uniform(tmp, nn, 77, (uint64_t)m, -1.0, 1.0);
        for (size_t i = 0; i < nn; i++) h[m * nn + i] = to_bf16(tmp[i]);
    }
    *why = "a CUDA or cuBLAS call failed";
    if (cudaMalloc(&A, nn * 2) || cudaMalloc(&B, nn * 2) || cudaMalloc(&C, nn * 2) ||
        cudaMemcpy(A, h, nn * 2, cudaMemcpyHostToDevice) ||
        cudaMemcpy(B, h + nn, nn * 2, cudaMemcpyHostToDevice) || cublasCreate(&blas) ||
        cudaEventCreate(&e0) || cudaEventCreate(&e1))
        goto done;
    const float alpha = 1.0f, beta = 0.0f;
    for (int r = -2; r < reps; r++) { /* two warm-ups */
        cudaEventRecord(e0, 0);
        if (cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B,
                         CUDA_R_16BF, n, &beta, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            goto done;
        cudaEventRecord(e1, 0);
        float ms = 0;
        if (cudaEventSynchronize(e1) || cudaEventElapsedTime(&ms, e0, e1)) goto done;
        if (r >= 0) t[r] = ms / 1e3;
    }
    if (cudaMemcpy(c16, C, nn * 2, cudaMemcpyDeviceToHost)) goto done;
    *err = 0; /* column-major C[i, j] = sum_p A[i, p] B[p, j] */
    for (int s = 0; s < 16; s++) {
        const size_t i = philox_u32(78, 1, (uint64_t)s) % (uint32_t)n;
        const size_t j = philox_u32(78, 2, (uint64_t)s) % (uint32_t)n;
        double dot = 0, mag = 0;
        for (size_t p = 0; p < (size_t)n; p++) {
            const double x = from_bf16(h[p * n + i]) * from_bf16(h[nn + j * n + p]);
            dot += x, mag += fabs(x);
        }
        const double e = fabs(from_bf16(c16[j * n + i]) - dot) / (mag > 0 ? mag : 1);
        if (e > *err) *err = e;
    }
    tflops = 2.0 * n * (double)n * n / median(t, reps) / 1e12;
    *why = NULL;
done:
    if (blas) cublasDestroy(blas);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(A), cudaFree(B), cudaFree(C);
    free(h), free(c16), free(tmp);
    return tflops;
}
#endif

/* ---- the model ---- */

static LlamaConfig shape_config(const char *shape, int seq) {
    if (strcmp(shape, "llama2-7b") == 0)
        return (LlamaConfig){.dim = 4096, .hidden_dim = 11008, .n_layers = 32, .n_heads = 32,
                             .n_kv_heads = 32, .vocab_size = 32000, .seq_len = seq,
                             .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = 0,
                             .rope_style = ROPE_HALF};
    if (strcmp(shape, "tiny") == 0) /* a CPU dry run of the same code */
        return (LlamaConfig){.dim = 64, .hidden_dim = 172, .n_layers = 2, .n_heads = 4,
                             .n_kv_heads = 4, .vocab_size = 512, .seq_len = seq,
                             .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = 0,
                             .rope_style = ROPE_HALF};
    fprintf(stderr, "bench_train_device: unknown --shape %s (llama2-7b, tiny, vit-b16 or "
                    "vit-tiny)\n", shape);
    exit(2);
}

/* Random weights made on the device (Philox, so nothing 7B-sized crosses from the host):
 * matrices uniform with std 0.02 (Llama's init), norm weights 1. */
static void randomize(Llama *m) {
    const double scale = 0.02 * sqrt(12.0);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        const size_t n = m->param_sizes[i];
        Real *w = m->w.tensors[i];
        if (!n || !w) continue;
        if (i == LLAMA_RMS_ATT || i == LLAMA_RMS_FFN || i == LLAMA_RMS_FINAL) {
            Real *ones = malloc(n * sizeof *ones);
            if (!ones) die("host memory for the norm weights");
            for (size_t j = 0; j < n; j++) ones[j] = 1;
            be->to_device(be, w, ones, n * sizeof *ones);
            free(ones);
        } else {
            be->zero(be, w, n * sizeof(Real));
            be->add_uniform_noise(be, w, n, 2024, (uint64_t)i, (float)scale);
        }
    }
    ok(device_sync(be), "random weights");
}

static FinetuneConfig run_config(const char *method, long steps, int experts, int B, int T) {
    FinetuneConfig cfg = {.total_steps = steps, .batch = B, .seq = T,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-4f},
                          .adamw = adamw_default_config(), .lora_plus_ratio = 1.0f, .seed = 1};
    ok(cascade_preset(method, &cfg.cascade), "cascade_preset");
    if (experts) cfg.cascade.n_experts = experts;
    return cfg;
}

/* The largest batch that fits: one step at batch 1 (batch1: a LlamaBatch or VitBatch of one
 * sequence or image) measures the memory an item needs (activations, logits, scratch: all
 * linear in the batch), then the device's free memory, less a margin, is divided by it, up to
 * max_b. Without a way to ask the device: 2. */
static int fit_batch(const FinetuneModel *fm, LoraAdapters *lora, const void *batch1, int T,
                     int max_b, const char *item) {
    const double free0 = device_free_bytes();
    if (free0 < 0) return 2;
    FinetuneConfig cfg = run_config("lora", 1, 0, 1, T);
    Finetune ft;
    ok(finetune_begin(&ft, fm, lora, &cfg), "finetune_begin (batch probe)");
    const double free1 = device_free_bytes();
    ok(finetune_step(&ft, batch1, NULL, NULL), "a step at batch 1");
    ok(device_sync(be), "a step at batch 1");
    const double free2 = device_free_bytes(), per_item = free1 - free2;
    finetune_end(&ft);
    const double margin = 0.05 * (free0 + device_used_bytes()) + 2.0 * (1 << 30);
    int B = per_item > 0 ? (int)floor((free2 + per_item - margin) / per_item) : 1;
    B = B < 1 ? 1 : B > max_b ? max_b : B;
    printf("batch probe: %.3f GiB per %s, %.1f GiB free after batch 1: batch %d\n",
           per_item / (1 << 30), item, free2 / (1 << 30), B);
    return B;
}

/* One warm-up step, then `steps` back to back (results left on the device), one wait: the
 * seconds per step, the device's memory in use after them (-1 where unknown) and the first
 * and last losses (every step's loss and norm checked finite). */
typedef struct Timed {
    double step_s, used, loss_first, loss_last;
} Timed;

static Timed time_steps(const FinetuneModel *fm, LoraAdapters *lora, const void *batch, int B,
                        int T, int steps) {
    Finetune ft;
    FinetuneConfig cfg = run_config("lora", 1 + steps, 0, B, T);
    ok(finetune_begin(&ft, fm, lora, &cfg), "finetune_begin");
    ok(finetune_step(&ft, batch, NULL, NULL), "the warm-up step");
    ok(device_sync(be), "the warm-up step");
    const double t0 = now_s();
    for (int s = 0; s < steps; s++) ok(finetune_step(&ft, batch, NULL, NULL), "a step");
    ok(device_sync(be), "the timed steps");
    Timed t = {.step_s = (now_s() - t0) / steps, .used = device_used_bytes()};
    StepResult res[64];
    const int n_res = finetune_pending(&ft);
    ok(finetune_take_results(&ft, res), "reading the losses");
    for (int i = 0; i < n_res; i++)
        if (!isfinite(res[i].loss) || !isfinite(res[i].grad_norm)) {
            fprintf(stderr, "bench_train_device: step %d: loss %g, norm %g\n", i, res[i].loss,
                    res[i].grad_norm);
            exit(1);
        }
    finetune_end(&ft);
    t.loss_first = res[0].loss, t.loss_last = res[n_res - 1].loss;
    return t;
}

/* line (at characters of it written, an opening JSON object) gets the numbers (null where
 * not finite) and its closing brace, is printed, and written to path when there is one. */
typedef struct Num {
    const char *key;
    double v;
} Num;

static int emit_json(char *line, size_t cap, size_t at, const Num *nums, size_t n,
                     const char *path) {
    for (size_t i = 0; i < n && at < cap; i++)
        at += (size_t)(isfinite(nums[i].v)
                           ? snprintf(line + at, cap - at, ",\"%s\":%.6g", nums[i].key, nums[i].v)
                           : snprintf(line + at, cap - at, ",\"%s\":null", nums[i].key));
    if (at < cap) snprintf(line + at, cap - at, "}");
    printf("%s\n", line);
    if (path) {
        FILE *f = fopen(path, "w");
        if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench_train_device: cannot write %s\n", path);
            return 1;
        }
    }
    return 0;
}

/* ---- a ViT: CLIP ViT-B/16's vision tower (the paper's Table 3 family) at 224 x 224, RGB,
 * 1,000 classes; LoRA r 8 on q and v, the head trained in full (PEFT's modules_to_save);
 * random weights and images. FLOPs per token 4N + 6N_lora + 12 L T d as for the Llama, with
 * N = L (4 d^2 + 2 d m) + C P^2 d + d K / T (the encoder, the patch embedding per token, the
 * head per image spread over its T tokens) and N_lora = L r (2 d + 2 d). ---- */

static int vit_shape(const char *shape, ViTConfig *c) {
    if (!strcmp(shape, "vit-b16")) {
        *c = (ViTConfig){.image_size = 224, .patch_size = 16, .channels = 3, .dim = 768,
                         .n_layers = 12, .n_heads = 12, .mlp_dim = 3072, .n_classes = 1000,
                         .norm_eps = 1e-5f, .gelu = GELU_QUICK, .pre_norm = 1, .patch_bias = 0};
        return 1;
    }
    if (!strcmp(shape, "vit-tiny")) { /* a CPU dry run of the same code */
        *c = (ViTConfig){.image_size = 32, .patch_size = 8, .channels = 3, .dim = 64,
                         .n_layers = 2, .n_heads = 4, .mlp_dim = 128, .n_classes = 10,
                         .norm_eps = 1e-5f, .gelu = GELU_QUICK, .pre_norm = 1, .patch_bias = 0};
        return 1;
    }
    return 0;
}

static int run_vit(const Options *o, const ViTConfig *c, const char *desc, double peak_be,
                   double peak_bf16, double bf16_err) {
    ViT m;
    ok(vit_create(&m, be, c), "vit_create");
    vit_init_random(&m, 42);
    const unsigned targets = LORA_BIT(LORA_Q) | LORA_BIT(LORA_V);
    ok(vit_set_precision(&m, o->prec), "vit_set_precision");
    ok(vit_ensure_masters(&m, targets), "vit_ensure_masters");
    ok(vit_set_activations(&m, o->acts), "vit_set_activations");
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(c, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16.0f, .targets = targets};
    LoraAdapters lora;
    ok(lora_create(&lora, be, &lc, c->n_layers, in, out, 7), "lora_create");
    ok(vit_attach_lora(&m, &lora), "vit_attach_lora");
    enum { MAX_IMAGES = 256 };
    const size_t pixels = (size_t)c->channels * c->image_size * c->image_size;
    Real *images = malloc(MAX_IMAGES * pixels * sizeof *images);
    int32_t labels[MAX_IMAGES];
    if (!images) die("host memory for the images");
    philox_uniform(images, MAX_IMAGES * pixels, 3, 1, -1.0, 1.0);
    for (int i = 0; i < MAX_IMAGES; i++)
        labels[i] = (int32_t)(philox_u32(3, 2, (uint64_t)i) % (uint32_t)c->n_classes);
    const FinetuneModel fm = finetune_model_vit(&m);
    const VitBatch one = {.images = images, .labels = labels, .B = 1};
    const int B = o->batch > 0 ? (o->batch > MAX_IMAGES ? MAX_IMAGES : o->batch)
                               : fit_batch(&fm, &lora, &one, 1, MAX_IMAGES, "image");
    const VitBatch batch = {.images = images, .labels = labels, .B = B};
    const Timed tm = time_steps(&fm, &lora, &batch, B, 1, o->steps);

    const int T = vit_seq_len(c);
    const double L = c->n_layers, d = c->dim, mlp = c->mlp_dim, K = c->n_classes, r = lc.rank;
    const double N = L * (4 * d * d + 2 * d * mlp) +
                     (double)c->channels * c->patch_size * c->patch_size * d + d * K / T;
    const double N_lora = L * r * (2 * d + 2 * d);
    const double flops = 4 * N + 6 * N_lora + 12 * L * T * d;
    const double images_s = B / tm.step_s, tokens_s = images_s * T;
    const double achieved = tokens_s * flops / 1e12, mfu = peak_bf16 > 0 ? achieved / peak_bf16 : NAN;
    printf("%s %s (activations %s), batch %d images of %d tokens, LoRA r 8 on q,v + head: %.4f "
           "s/step, %.0f images/s, %.0f tokens/s, %.1f TFLOP/s\n", o->shape, o->precision,
           o->activations, B, T, tm.step_s, images_s, tokens_s, achieved);
    if (peak_bf16 > 0) printf("  MFU %.1f%% of the bf16 GEMM peak\n", 100 * mfu);
    printf("  memory: peak of lorasc's allocations %.2f GiB\n", g_peak_bytes / 1073741824.0);
    printf("  losses: first %.4f last %.4f\n", tm.loss_first, tm.loss_last);
    char line[4096];
    const size_t at = (size_t)snprintf(
        line, sizeof line,
        "{\"bench\":\"lorasc_train_step\",\"model\":\"vit\",\"device\":%s,"
        "\"precision\":\"%s\",\"activations\":\"%s\",\"shape\":\"%s\",\"image_size\":%d,"
        "\"patch\":%d,\"dim\":%d,\"layers\":%d,\"heads\":%d,\"mlp\":%d,\"classes\":%d,"
        "\"seq\":%d,\"batch\":%d,\"lora_rank\":8,\"lora_targets\":\"q,v\",\"steps\":%d,"
        "\"flops_formula\":\"4N + 6N_lora + 12 L T d\"",
        desc, o->precision, o->activations, o->shape, c->image_size, c->patch_size, c->dim,
        c->n_layers, c->n_heads, c->mlp_dim, c->n_classes, T, B, o->steps);
    const Num nums[] = {{"step_seconds", tm.step_s}, {"images_per_s", images_s},
                        {"tokens_per_s", tokens_s}, {"flops_per_token", flops},
                        {"n_frozen", N}, {"n_lora", N_lora}, {"achieved_tflops", achieved},
                        {"gemm_bf16_tflops", peak_bf16 > 0 ? peak_bf16 : NAN},
                        {"gemm_bf16_error", bf16_err}, {"gemm_backend_tflops", peak_be},
                        {"mfu_bf16", mfu}, {"peak_alloc_bytes", (double)g_peak_bytes},
                        {"device_used_bytes", tm.used >= 0 ? tm.used : NAN},
                        {"loss_first", tm.loss_first}, {"loss_last", tm.loss_last}};
    const int failed = emit_json(line, sizeof line, at, nums, sizeof nums / sizeof nums[0], o->json);
    vit_attach_lora(&m, NULL);
    lora_free(&lora);
    vit_free(&m);
    free(images);
    backend_destroy(be);
    return failed;
}

static const char *arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_train_device: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    Options o = {.device = "cuda", .precision = "fp32", .activations = "fp32", .shape = "llama2-7b", .seq = 1024,
                 .steps = 4, .boundaries = 3, .epoch_seqs = 1000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--device")) o.device = arg_value(argc, argv, &i);
        else if (!strcmp(a, "--precision")) o.precision = arg_value(argc, argv, &i);
        else if (!strcmp(a, "--activations")) o.activations = arg_value(argc, argv, &i);
        else if (!strcmp(a, "--shape")) o.shape = arg_value(argc, argv, &i);
        else if (!strcmp(a, "--json")) o.json = arg_value(argc, argv, &i);
        else if (!strcmp(a, "--batch")) o.batch = atoi(arg_value(argc, argv, &i));
        else if (!strcmp(a, "--seq")) o.seq = atoi(arg_value(argc, argv, &i));
        else if (!strcmp(a, "--steps")) o.steps = atoi(arg_value(argc, argv, &i));
        else if (!strcmp(a, "--boundaries")) o.boundaries = atoi(arg_value(argc, argv, &i));
        else if (!strcmp(a, "--epoch-seqs")) o.epoch_seqs = atoi(arg_value(argc, argv, &i));
        else {
            fprintf(stderr, "bench_train_device: unknown argument %s (see the file's header)\n", a);
            return 2;
        }
    }
    const int prec = precision_parse(o.precision), acts = precision_parse(o.activations);
    if (prec < 0 || acts < 0) {
        fprintf(stderr, "bench_train_device: --precision and --activations take fp32 or bf16, "
                        "got %s and %s\n", o.precision, o.activations);
        return 2;
    }
    o.prec = (ModelPrecision)prec, o.acts = (ModelPrecision)acts;
    if (o.steps < 1 || o.steps > 32 || o.seq < 2 || o.boundaries < 0 || o.boundaries > 16) {
        fprintf(stderr, "bench_train_device: --steps 1..32, --seq >= 2, --boundaries 0..16\n");
        return 2;
    }
    char err[512];
    be = backend_create(o.device, 0, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_train_device: %s\n", err);
        return 1;
    }
    g_alloc = be->alloc, g_free = be->free;
    be->alloc = tracked_alloc, be->free = tracked_free;
    char desc[1024];
    be->describe(be, desc, sizeof desc);
    printf("device: %s\n", desc);
    ViTConfig vc;
    const int vit = vit_shape(o.shape, &vc);
    const int small = strcmp(o.shape, "tiny") == 0 || strcmp(o.shape, "vit-tiny") == 0;
    const LlamaConfig c = vit ? (LlamaConfig){0} : shape_config(o.shape, o.seq);

    /* the ceilings, measured before the model takes the memory */
    const double peak_be = backend_gemm_tflops(small ? 256 : 8192, 5);
    double peak_bf16 = 0, bf16_err = NAN;
#ifdef LORASC_CUDA_EMU
    const char *bf16_why = "not measured on the emulated device";
#else
    const char *bf16_why = "this build has no CUDA";
#endif
#if LORASC_HAVE_CUDA && !defined(LORASC_CUDA_EMU)
    bf16_why = "the device is not CUDA";
    if (!strcmp(be->name, "cuda"))
        peak_bf16 = bf16_gemm_tflops(small ? 1024 : 8192, 10, &bf16_err, &bf16_why);
#endif
    printf("GEMM peaks: backend matmul (%s) %.1f TFLOP/s; cuBLAS bf16 %s\n", REAL_NAME, peak_be,
           peak_bf16 > 0 ? "measured" : bf16_why);
    if (peak_bf16 > 0) printf("  bf16 %.1f TFLOP/s (spot error %.2e)\n", peak_bf16, bf16_err);

    if (vit) return run_vit(&o, &vc, desc, peak_be, peak_bf16, bf16_err);

    Llama m;
    ok(llama_create(&m, be, &c), "llama_create");
    randomize(&m);
    const unsigned targets = LORA_BIT(LORA_Q) | LORA_BIT(LORA_V);
    ok(llama_set_precision(&m, o.prec), "llama_set_precision");
    ok(llama_ensure_masters(&m, targets), "llama_ensure_masters");
    ok(llama_set_activations(&m, o.acts), "llama_set_activations");
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16.0f, .targets = targets};
    LoraAdapters lora;
    ok(lora_create(&lora, be, &lc, c.n_layers, in, out, 7), "lora_create");
    const int T = o.seq;
    const size_t rows = 64 * (size_t)T; /* room for the largest batch */
    int32_t *tok = malloc(rows * sizeof *tok), *tgt = malloc(rows * sizeof *tgt);
    if (!tok || !tgt) die("host memory for the batch");
    for (size_t i = 0; i < rows; i++) {
        tok[i] = (int32_t)(philox_u32(3, 1, i) % (uint32_t)c.vocab_size);
        tgt[i] = (int32_t)(philox_u32(3, 2, i) % (uint32_t)c.vocab_size);
    }
    const FinetuneModel fm = finetune_model_llama(&m);
    const LlamaBatch one = {.tokens = tok, .targets = tgt, .B = 1, .T = T};
    const int B = o.batch > 0 ? (o.batch > 64 ? 64 : o.batch)
                              : fit_batch(&fm, &lora, &one, T, 64, "sequence");
    const LlamaBatch batch = {.tokens = tok, .targets = tgt, .B = B, .T = T};

    const Timed tm = time_steps(&fm, &lora, &batch, B, T, o.steps);
    const double step_s = tm.step_s, used = tm.used;

    /* LoRASC boundaries: an expert per step, each boundary timed alone */
    double bt[16], boundary_s = NAN, boundary_max = NAN;
    if (o.boundaries > 0) {
        Finetune ft;
        const FinetuneConfig cfg = run_config("lorasc", o.boundaries, o.boundaries, B, T);
        ok(finetune_begin(&ft, &fm, &lora, &cfg), "finetune_begin (lorasc)");
        boundary_max = 0;
        for (int r = 0; r < o.boundaries; r++) {
            CascadeEvent ev;
            ok(finetune_step(&ft, &batch, NULL, NULL), "a lorasc step");
            ok(device_sync(be), "a lorasc step");
            const double b0 = now_s();
            if (finetune_after_step(&ft, &ev) != 1) die("an expert boundary");
            ok(device_sync(be), "an expert boundary");
            bt[r] = now_s() - b0;
            if (bt[r] > boundary_max) boundary_max = bt[r];
        }
        finetune_end(&ft);
        boundary_s = median(bt, o.boundaries);
    }

    /* FLOPs per token (the header's formula) and the ratios */
    const double L = c.n_layers, d = c.dim, h = c.hidden_dim, V = c.vocab_size;
    const double dkv = (double)c.n_kv_heads * (c.dim / c.n_heads), r = lc.rank;
    const double N = L * (2 * d * d + 2 * d * dkv + 3 * d * h) + d * V;
    const double N_lora = L * r * ((d + d) + (d + dkv));
    const double flops = 4 * N + 6 * N_lora + 12 * L * T * d;
    const double tokens_s = (double)B * T / step_s, achieved = tokens_s * flops / 1e12;
    const double mfu = peak_bf16 > 0 ? achieved / peak_bf16 : NAN;
    const double epoch_s = (double)o.epoch_seqs * T / tokens_s;
    printf("%s %s (activations %s), batch %d x %d, LoRA r 8 on q,v: %.4f s/step, %.0f tokens/s, "
           "%.1f TFLOP/s (%.3g GFLOP/token)\n", o.shape, o.precision, o.activations, B, T, step_s,
           tokens_s, achieved, flops / 1e9);
    if (peak_bf16 > 0) printf("  MFU %.1f%% of the bf16 GEMM peak\n", 100 * mfu);
    printf("  %.1f%% of the backend matmul's peak (%s)\n", 100 * achieved / peak_be, REAL_NAME);
    printf("  memory: peak of lorasc's allocations %.2f GiB", g_peak_bytes / 1073741824.0);
    if (used >= 0) printf(", device in use %.2f GiB (CUDA context included)", used / 1073741824.0);
    printf("\n");
    printf("  losses: first %.4f last %.4f\n", tm.loss_first, tm.loss_last);
    if (o.boundaries > 0)
        printf("  LoRASC boundary: median %.4f s (max %.4f) = %.3f steps = %.4f%% of an epoch of "
               "%d sequences (%.1f s)\n", boundary_s, boundary_max, boundary_s / step_s,
               100 * boundary_s / epoch_s, o.epoch_seqs, epoch_s);
    char line[4096];
    size_t at = (size_t)snprintf(
        line, sizeof line,
        "{\"bench\":\"lorasc_train_step\",\"device\":%s,\"precision\":\"%s\","
        "\"activations\":\"%s\",\"shape\":\"%s\","
        "\"dim\":%d,\"layers\":%d,\"heads\":%d,\"kv_heads\":%d,\"hidden\":%d,\"vocab\":%d,"
        "\"seq\":%d,\"batch\":%d,\"lora_rank\":8,\"lora_targets\":\"q,v\",\"steps\":%d,"
        "\"epoch_seqs\":%d,\"flops_formula\":\"4N + 6N_lora + 12 L T d\"",
        desc, o.precision, o.activations, o.shape, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim,
        c.vocab_size, T, B, o.steps, o.epoch_seqs);
    const Num nums[] = {{"step_seconds", step_s}, {"tokens_per_s", tokens_s}, {"flops_per_token", flops},
                {"n_frozen", N}, {"n_lora", N_lora}, {"achieved_tflops", achieved},
                {"gemm_bf16_tflops", peak_bf16 > 0 ? peak_bf16 : NAN},
                {"gemm_bf16_error", bf16_err}, {"gemm_backend_tflops", peak_be},
                {"mfu_bf16", mfu}, {"frac_backend_peak", achieved / peak_be},
                {"peak_alloc_bytes", (double)g_peak_bytes},
                {"device_used_bytes", used >= 0 ? used : NAN}, {"loss_first", tm.loss_first},
                {"loss_last", tm.loss_last}, {"boundary_seconds", boundary_s},
                {"boundary_seconds_max", boundary_max},
                {"boundary_frac_epoch", boundary_s / epoch_s},
                {"boundary_frac_step", boundary_s / step_s}};
    const int failed = emit_json(line, sizeof line, at, nums, sizeof nums / sizeof nums[0], o.json);
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    llama_free(&m);
    free(tok), free(tgt);
    backend_destroy(be);
    return failed;
}
