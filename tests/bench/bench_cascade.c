/* Benchmark (not a test): the cost of LoRASC's boundary work (EMA, merge, noise,
 * re-initialisation, optimiser reset) against the training it interrupts.
 *  1. stories15M shape (dim 288, 6 layers, hidden 768, vocab 32000, seq 256, batch 4), LoRA
 *     r = 8 on q and v: boundary time over the time of one epoch of the paper's protocol
 *     (1000 examples / batch 4 = 250 steps) at one expert per epoch. Target: < 1%.
 *  2. one Llama-2-7B-shaped layer (dim 4096, 32 heads, hidden 11008), r = 8 on q and v:
 *     the time of one boundary on the CPU.
 * Usage: bench_cascade [--threads N] [--steps N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/model/finetune.h"
#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/train.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "bench_cascade: %s: %s\n", what, error_last());
    exit(1);
}

/* Median of n doubles (sorts in place). */
static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Times `boundaries` boundaries of a LoRASC cascade (alpha 0.8, lambda 1) on model m with
 * random adapters (B != 0, so the noise std is not 0). Returns the median seconds. */
static double time_boundaries(Llama *m, int boundaries) {
    Backend *be = m->be;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m->config, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters fast;
    if (lora_create(&fast, be, &lc, m->config.n_layers, in, out, 1) != LSC_OK) die("lora");
    llama_attach_lora(m, &fast);
    ParamGroup g = {.p = fast.params, .g = fast.grads, .n = fast.num_params, .lr_scale = 1};
    AdamW opt;
    AdamWConfig oc = adamw_default_config();
    if (adamw_create(&opt, be, &oc, &g, 1) != LSC_OK) die("adamw");
    CascadeConfig k;
    cascade_preset("lorasc", &k);
    k.n_experts = boundaries + 1;
    Cascade c;
    if (cascade_create(&c, finetune_model_llama(m).weight, m, &fast, &opt, &k, k.n_experts, 3) != LSC_OK) die("cascade");
    double times[64];
    Real *host = malloc(fast.num_params * sizeof(Real));
    for (int e = 0; e < boundaries; e++) {
        /* a trained-looking fast adapter: B != 0 */
        philox_uniform(host, fast.num_params, 5, (uint64_t)e, -0.01, 0.01);
        be->to_device(be, fast.params, host, fast.num_params * sizeof(Real));
        CascadeEvent ev;
        if (cascade_after_step(&c, cascade_expert_start(&c, e + 1) - 1, &ev) != 1) die("boundary"); /* 0: none, -1: error */
        times[e] = ev.boundary_seconds;
    }
    free(host);
    cascade_free(&c);
    adamw_free(&opt);
    llama_attach_lora(m, NULL);
    lora_free(&fast);
    return median(times, boundaries);
}

int main(int argc, char **argv) {
    int threads = 2, steps = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cascade [--threads N] [--steps N]\n");
            return 2;
        }
    }
    Backend *be = backend_cpu_create(threads);

    /* 1. stories15M shape: step time vs boundary time */
    const LlamaConfig s15 = {.dim = 288, .hidden_dim = 768, .n_layers = 6, .n_heads = 6,
                             .n_kv_heads = 6, .vocab_size = 32000, .seq_len = 256,
                             .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = 1,
                             .rope_style = ROPE_INTERLEAVED};
    const int B = 4, T = 256, steps_per_epoch = 250;
    Llama m;
    if (llama_create(&m, be, &s15) != LSC_OK) die("model");
    llama_init_random(&m, 1);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&s15, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters lora;
    if (lora_create(&lora, be, &lc, s15.n_layers, in, out, 1) != LSC_OK) die("lora");
    llama_attach_lora(&m, &lora);
    ParamGroup g = {.p = lora.params, .g = lora.grads, .n = lora.num_params, .lr_scale = 1};
    AdamW opt;
    AdamWConfig oc = adamw_default_config();
    if (adamw_create(&opt, be, &oc, &g, 1) != LSC_OK) die("adamw");
    int32_t *tokens = malloc(sizeof(int32_t) * B * T), *targets = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int32_t)(philox_u32(1, 1, (uint64_t)i) % 32000);
        targets[i] = (int32_t)(philox_u32(1, 2, (uint64_t)i) % 32000);
    }
    double step_times[64];
    train_step(&m, &opt, tokens, targets, B, T, 1e-4f, NULL); /* warm-up */
    for (int s = 0; s < steps; s++) {
        const double t0 = now();
        if (train_step(&m, &opt, tokens, targets, B, T, 1e-4f, NULL) != LSC_OK) die("step");
        step_times[s] = now() - t0;
    }
    const double step = median(step_times, steps);
    adamw_free(&opt);
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    const double boundary = time_boundaries(&m, 5);
    const double epoch = step * steps_per_epoch;
    printf("stories15M shape, LoRA r=8 on q,v, batch %d x %d, %d threads\n", B, T, threads);
    printf("  training step (median of %d)       %8.1f ms\n", steps, 1e3 * step);
    printf("  one epoch = %d steps               %8.2f s\n", steps_per_epoch, epoch);
    printf("  one boundary (median of 5)          %8.3f ms\n", 1e3 * boundary);
    printf("  boundary / epoch at 1 expert/epoch  %8.4f %%   (target < 1%%: %s)\n",
           100 * boundary / epoch, boundary / epoch < 0.01 ? "PASS" : "MISS");
    printf("  boundary / step at 1 expert/step    %8.2f %%   (Table 4's 1250-expert row)\n",
           100 * boundary / step);
    llama_free(&m);

    /* 2. one Llama-2-7B-shaped layer */
    const LlamaConfig l7 = {.dim = 4096, .hidden_dim = 11008, .n_layers = 1, .n_heads = 32,
                            .n_kv_heads = 32, .vocab_size = 32, .seq_len = 16,
                            .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = 1,
                            .rope_style = ROPE_INTERLEAVED};
    if (llama_create(&m, be, &l7) != LSC_OK) die("7B layer");
    llama_init_random(&m, 2);
    const double layer = time_boundaries(&m, 3);
    printf("Llama-2-7B layer (4096 x 4096 q and v), r=8: one boundary %8.1f ms (median of 3)\n",
           1e3 * layer);
    printf("  x 32 layers = %.2f s per boundary for the whole 7B model on this CPU\n", 32 * layer);
    llama_free(&m);
    free(tokens);
    free(targets);
    backend_cpu_destroy(be);
    return 0;
}
