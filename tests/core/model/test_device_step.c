/* Whole fine-tuning runs, CPU against CUDA (issue 11): a tiny Llama and a tiny ViT, each
 * trained with LoRA, DoRA, LoRASC (noise, 2 experts) and in full, for a few steps on "cpu"
 * and on "cuda" from the same weights and batches. Compared within fp32 tolerances: every
 * step's loss and gradient norm, the boundary events, the trained (fast) and slow adapters,
 * the whole model after the run (the merged base), inference logits and the key/value-cache
 * decoder's; a checkpoint saved from the device reads back bit for bit; the Philox noise at
 * the cascade's streams and slot sizes is bit-identical; an op that fails on the device
 * ends the step with the backend's sentence (op, file, line), never an abort.
 * Runs as test device_step (the engine as built: with -Dcuda and a GPU, a real device; else
 * skipped with the reason, exit 77) and as device_step_cuda_emu (core linked with the CUDA
 * kernels run in the CPU emulation, kernels/cuda/emu, whose guard makes host reads of device
 * memory fault). LORASC_REQUIRE_CUDA=1 turns the skip into a failure. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/formats/checkpoint.h"
#include "core/formats/vit_checkpoint.h"
#include "core/model/device.h"
#include "core/model/finetune.h"
#include "tests/model_fixture.h"

enum { STEPS = 4, B = 3, T = 8, VB = 4, DECODE_PROMPT = 5 };
#define LR 1e-2f

/* fp32 tolerances against the CPU, relative to each tensor's scale (|ref| + max|ref|): the
 * two backends sum in different orders (OpenBLAS sgemm against cuBLAS, or the emulation's
 * double-accumulated GEMM), which a few AdamW steps carry into the weights. The emulation
 * stays below 1e-6 on all three; the margin is for a GPU's own exp and rsqrt. */
#define RTOL_STEP 1e-5    /* losses, gradient norms, boundary statistics */
#define RTOL_WEIGHTS 5e-5 /* adapters and the merged base after STEPS updates */
#define RTOL_LOGITS 5e-5  /* inference after the run */

static Backend *g_cpu, *g_cuda;

typedef struct Method {
    const char *name;
    const char *preset; /* cascade_preset's method; NULL: full training, no adapters */
    int dora, experts;
} Method;
static const Method k_methods[] = {
    {"lora", "lora", 0, 1},
    {"dora", "lora", 1, 1},
    {"lorasc", "lorasc", 0, 2},
    {"full", NULL, 0, 0},
};
enum { N_METHODS = sizeof k_methods / sizeof k_methods[0] };

/* What a run leaves, read back to the host. */
typedef struct Outcome {
    double loss[STEPS], grad_norm[STEPS];
    CascadeEvent events[STEPS];
    int n_events;
    Real *init;   /* the whole model before the run */
    Real *params; /* the whole model after the run (the merged base) */
    size_t n_params;
    size_t flat_at, flat_n; /* a range of params whose loss gradient is zero up to rounding */
    Real *fast;             /* the trained adapter after the last update, before its boundary */
    Real *slow;             /* the slow adapter after the run (what the cascade merged last) */
    size_t n_lora;
    Real *logits; /* inference on a fresh batch after the run */
    size_t n_logits;
    Real *decode; /* Llama: the decoder's logits of the last token fed */
    size_t n_decode;
} Outcome;

static void outcome_free(Outcome *o) {
    free(o->init), free(o->params), free(o->fast), free(o->slow), free(o->logits), free(o->decode);
    memset(o, 0, sizeof *o);
}

static void ok(int rc) {
    if (rc != LSC_OK) fail_msg("%s", error_last());
}

/* n device Reals of be, on the host (the sync point checked). */
static Real *host_copy(Backend *be, const Real *src, size_t n) {
    Real *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    be->to_host(be, h, src, n * sizeof(Real));
    ok(device_sync(be));
    return h;
}

static FinetuneConfig run_config(const Method *meth, LoraConfig *lc, unsigned targets) {
    FinetuneConfig cfg = {.total_steps = STEPS, .batch = B, .seq = T,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = LR},
                          .adamw = adamw_default_config(), .weight_decay = 0.01f,
                          .lora_plus_ratio = 1.0f, .seed = 5};
    if (meth->preset) {
        ok(cascade_preset(meth->preset, &cfg.cascade));
        cfg.cascade.n_experts = meth->experts;
        cfg.cascade.noise = meth->experts > 1 ? 2.0f : cfg.cascade.noise;
    }
    *lc = (LoraConfig){.rank = 2, .alpha = 4.0f, .targets = targets, .use_dora = meth->dora};
    return cfg;
}

/* Deferred results (test_deferred_reads): finetune_steps leaves each step's loss and norm on
 * the device and takes them every DEFER_READ_EVERY steps and at the end, counting the host's
 * reads (be->to_host, wrapped) and, in the emulation, every device-to-host copy and stream
 * wait made inside finetune_step. */
enum { DEFER_READ_EVERY = 3 };
static int g_defer;
static long g_to_host_calls, g_step_reads, g_step_emu_reads, g_step_emu_waits, g_takes;
static void (*g_to_host_real)(Backend *, void *, const void *, size_t);
static void counting_to_host(Backend *be, void *dst, const void *src, size_t bytes) {
    g_to_host_calls++;
    g_to_host_real(be, dst, src, bytes);
}
#ifdef LORASC_CUDA_EMU
long cuda_emu_reads_to_host(void);
long cuda_emu_waits(void);
#else
static long cuda_emu_reads_to_host(void) { return 0; }
static long cuda_emu_waits(void) { return 0; }
#endif

/* The fine-tuning loop shared by both models: STEPS updates on batch(step), the fast adapter
 * kept after the last update, the events and the slow adapter. */
typedef const void *(*BatchFn)(void *ctx, long step);

/* One step, its results read at once, or left on the device and taken in batches (g_defer). */
static void one_step(Finetune *ft, const void *batch, long s, Outcome *o) {
    if (!g_defer) {
        StepResult r;
        ok(finetune_step(ft, batch, &r, NULL));
        o->loss[s] = r.loss;
        o->grad_norm[s] = r.grad_norm;
        return;
    }
    const long calls = g_to_host_calls, reads = cuda_emu_reads_to_host(), waits = cuda_emu_waits();
    ok(finetune_step(ft, batch, NULL, NULL));
    g_step_reads += g_to_host_calls - calls;
    g_step_emu_reads += cuda_emu_reads_to_host() - reads;
    g_step_emu_waits += cuda_emu_waits() - waits;
    if ((s + 1) % DEFER_READ_EVERY && s != STEPS - 1) return;
    StepResult r[STEPS];
    const int n = finetune_pending(ft);
    assert_int_equal(n, s % DEFER_READ_EVERY + 1);
    const long before = g_to_host_calls;
    ok(finetune_take_results(ft, r));
    assert_int_equal(g_to_host_calls - before, 1); /* all of them in one read */
    assert_int_equal(finetune_pending(ft), 0);
    g_takes++;
    for (int i = 0; i < n; i++) {
        o->loss[s - n + 1 + i] = r[i].loss;
        o->grad_norm[s - n + 1 + i] = r[i].grad_norm;
    }
}

static void finetune_steps(Finetune *ft, LoraAdapters *lora, BatchFn batch, void *ctx, Outcome *o) {
    Backend *be = lora->be;
    for (long s = 0; s < STEPS; s++) {
        one_step(ft, batch(ctx, s), s, o);
        if (s == STEPS - 1) o->fast = host_copy(be, lora->params, lora->num_params);
        CascadeEvent ev;
        const int k = finetune_after_step(ft, &ev);
        if (k < 0) fail_msg("boundary: %s", error_last());
        if (k) o->events[o->n_events++] = ev;
    }
    o->n_lora = lora->num_params;
    o->slow = host_copy(be, ft->cascade.slow.params, ft->cascade.slow.num_params);
}

/* ------------------------------------------------------------------------------------------
 * the Llama */

typedef struct LlamaData {
    int32_t tokens[B * T], targets[B * T];
    LlamaBatch batch;
    int V;
} LlamaData;

static const void *llama_batch(void *ctx, long step) {
    LlamaData *d = ctx;
    fixture_batch(d->tokens, d->targets, B, T, d->V, 100 + (uint64_t)step);
    d->batch = (LlamaBatch){.tokens = d->tokens, .targets = d->targets, .B = B, .T = T};
    return &d->batch;
}

static void run_llama(Backend *be, const Method *meth, Outcome *o) {
    memset(o, 0, sizeof *o);
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0); /* GQA, untied classifier */
    Llama m;
    ok(llama_create(&m, be, &c));
    fixture_randomize(&m, 11, 0.5);
    if (be == g_cuda) m.head_chunk = 5; /* the device's head in chunks (llama_head.c), the CPU's whole */
    o->init = host_copy(be, m.params, m.num_params);
    LlamaData data = {.V = c.vocab_size};
    LoraConfig lc;
    FinetuneConfig cfg = run_config(meth, &lc, LORA_DEFAULT_TARGETS);
    if (meth->preset) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(&c, in, out);
        LoraAdapters lora;
        ok(lora_create(&lora, be, &lc, c.n_layers, in, out, 21));
        Finetune ft;
        const FinetuneModel fm = finetune_model_llama(&m);
        ok(finetune_begin(&ft, &fm, &lora, &cfg));
        finetune_steps(&ft, &lora, llama_batch, &data, o);
        finetune_end(&ft);
        llama_attach_lora(&m, NULL);
        lora_free(&lora);
    } else { /* full training: every weight's gradient, one AdamW group */
        ok(llama_enable_full_grads(&m));
        ParamGroup g;
        assert_int_equal(train_param_groups(&m, cfg.weight_decay, &g), 1);
        AdamW opt;
        ok(adamw_create(&opt, be, &cfg.adamw, &g, 1));
        StepLog log; /* deferred (g_defer): pretraining as the Lua trainer runs it on a GPU */
        ok(step_log_init(&log, be));
        for (long s = 0; s < STEPS; s++) {
            const LlamaBatch *b = llama_batch(&data, s);
            StepResult r;
            if (!g_defer) {
                ok(train_step(&m, &opt, b->tokens, b->targets, B, T, cfg.schedule.peak_lr, &r));
                o->loss[s] = r.loss;
                o->grad_norm[s] = r.grad_norm;
                continue;
            }
            const long calls = g_to_host_calls, reads = cuda_emu_reads_to_host(),
                       waits = cuda_emu_waits();
            double *slot = step_log_slot(&log);
            assert_non_null(slot);
            ok(train_step_dev(&m, &opt, b->tokens, b->targets, B, T, cfg.schedule.peak_lr, slot));
            step_log_commit(&log);
            g_step_reads += g_to_host_calls - calls;
            g_step_emu_reads += cuda_emu_reads_to_host() - reads;
            g_step_emu_waits += cuda_emu_waits() - waits;
            if ((s + 1) % DEFER_READ_EVERY && s != STEPS - 1) continue;
            StepResult got[STEPS];
            const int n = step_log_pending(&log);
            ok(step_log_take(&log, got));
            g_takes++;
            for (int i = 0; i < n; i++) {
                o->loss[s - n + 1 + i] = got[i].loss;
                o->grad_norm[s - n + 1 + i] = got[i].grad_norm;
            }
        }
        step_log_free(&log);
        adamw_free(&opt);
    }
    o->n_params = m.num_params;
    o->params = host_copy(be, m.params, m.num_params);

    /* inference: every position's logits, then the cached decoder's */
    fixture_batch(data.tokens, data.targets, B, T, c.vocab_size, 999);
    ok(llama_forward(&m, data.tokens, NULL, B, T));
    o->n_logits = (size_t)B * T * c.vocab_size;
    o->logits = host_copy(be, m.acts.logits, o->n_logits);
    LlamaDecoder d;
    ok(llama_decoder_create(&d, &m, 0));
    o->n_decode = (size_t)c.vocab_size;
    o->decode = malloc(o->n_decode * sizeof(Real));
    ok(llama_decoder_feed(&d, data.tokens, DECODE_PROMPT, o->decode));
    ok(llama_decoder_feed(&d, data.tokens + DECODE_PROMPT, 1, o->decode));
    llama_decoder_free(&d);

    /* a checkpoint written from this device reads back (on the CPU) bit for bit */
    char path[] = "/tmp/lorasc_device_step_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ok(checkpoint_save(path, &m, NULL, NULL, 0));
    Llama back;
    ok(checkpoint_load_model(path, &back, g_cpu));
    Real *h = host_copy(g_cpu, back.params, back.num_params);
    assert_int_equal(back.num_params, o->n_params);
    if (memcmp(h, o->params, o->n_params * sizeof(Real)) != 0)
        fail_msg("llama checkpoint saved from %s does not read back bit for bit", be->name);
    free(h);
    llama_free(&back);
    unlink(path);
    llama_free(&m);
}

/* ------------------------------------------------------------------------------------------
 * the ViT */

static const ViTConfig k_vit = {.image_size = 8, .patch_size = 4, .channels = 2, .dim = 8,
                                .n_layers = 2, .n_heads = 2, .mlp_dim = 16, .n_classes = 3,
                                .norm_eps = 1e-5f, .gelu = GELU_ERF, .pre_norm = 1,
                                .patch_bias = 1};

typedef struct VitData {
    Real images[VB * 2 * 8 * 8];
    int32_t labels[VB];
    VitBatch batch;
} VitData;

static const void *vit_batch(void *ctx, long step) {
    VitData *d = ctx;
    philox_uniform(d->images, sizeof d->images / sizeof d->images[0], 31, 200 + (uint64_t)step,
                   -1.0, 1.0);
    for (int b = 0; b < VB; b++) d->labels[b] = (int32_t)((b + step) % k_vit.n_classes);
    d->labels[1] = -1; /* one image left out of the loss */
    d->batch = (VitBatch){.images = d->images, .labels = d->labels, .B = VB};
    return &d->batch;
}

/* Every weight uniform in [-0.4, 0.4) but LayerNorm weights in [0.8, 1.2). */
static void vit_randomize(ViT *m) {
    Real *h = malloc(m->num_params * sizeof(Real)), *p = h;
    assert_non_null(h);
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        const int ln = i == VIT_LN_PRE_W || i == VIT_LN1_W || i == VIT_LN2_W || i == VIT_LNF_W;
        philox_uniform(p, m->param_sizes[i], 13, 300 + (uint64_t)i, ln ? 0.8 : -0.4,
                       ln ? 1.2 : 0.4);
        p += m->param_sizes[i];
    }
    m->be->to_device(m->be, m->params, h, m->num_params * sizeof(Real));
    free(h);
    ok(device_sync(m->be));
}

static void run_vit(Backend *be, const Method *meth, Outcome *o) {
    memset(o, 0, sizeof *o);
    ViT m;
    ok(vit_create(&m, be, &k_vit));
    vit_randomize(&m);
    o->init = host_copy(be, m.params, m.num_params);
    VitData data;
    LoraConfig lc;
    FinetuneConfig cfg = run_config(meth, &lc, LORA_DEFAULT_TARGETS | LORA_BIT(LORA_UP));
    cfg.batch = VB;
    cfg.seq = 1;
    if (meth->preset) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        vit_lora_shapes(&k_vit, in, out);
        LoraAdapters lora;
        ok(lora_create(&lora, be, &lc, k_vit.n_layers, in, out, 23));
        Finetune ft;
        const FinetuneModel fm = finetune_model_vit(&m);
        ok(finetune_begin(&ft, &fm, &lora, &cfg));
        finetune_steps(&ft, &lora, vit_batch, &data, o);
        finetune_end(&ft);
        ok(vit_attach_lora(&m, NULL));
        lora_free(&lora);
    } else {
        ok(vit_enable_full_grads(&m));
        const ParamGroup g = {.p = m.params, .g = m.grads, .n = m.num_params, .lr_scale = 1.0f,
                              .weight_decay = cfg.weight_decay};
        AdamW opt;
        ok(adamw_create(&opt, be, &cfg.adamw, &g, 1));
        for (long s = 0; s < STEPS; s++) {
            const VitBatch *b = vit_batch(&data, s);
            vit_zero_grad(&m);
            ok(vit_forward(&m, b->images, b->labels, b->B));
            ok(vit_backward(&m));
            o->loss[s] = m.mean_loss;
            o->grad_norm[s] = adamw_step(&opt, cfg.schedule.peak_lr);
            ok(device_sync(be));
        }
        adamw_free(&opt);
    }
    o->n_params = m.num_params;
    o->params = host_copy(be, m.params, m.num_params);
    if (!meth->preset) { /* softmax ignores a shift of every key: the key bias's gradient is 0 */
        o->flat_at = (size_t)(m.w.tensors[VIT_BK] - m.params);
        o->flat_n = m.param_sizes[VIT_BK];
    }

    const VitBatch *b = vit_batch(&data, 999);
    ok(vit_forward(&m, b->images, NULL, VB));
    o->n_logits = (size_t)VB * k_vit.n_classes;
    o->logits = host_copy(be, m.acts.logits, o->n_logits);
    int32_t pred[VB];
    assert_true(vit_predict(&m, pred, b->labels) >= 0);

    char path[] = "/tmp/lorasc_device_step_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ok(vit_checkpoint_save(path, &m));
    ViT back;
    ok(vit_checkpoint_load(path, &back, g_cpu));
    Real *h = host_copy(g_cpu, back.params, back.num_params);
    if (memcmp(h, o->params, o->n_params * sizeof(Real)) != 0)
        fail_msg("ViT checkpoint saved from %s does not read back bit for bit", be->name);
    free(h);
    vit_free(&back);
    unlink(path);
    vit_free(&m);
}

/* ------------------------------------------------------------------------------------------
 * comparisons */

static double g_worst[3]; /* worst |err| / scale seen: steps, weights, logits */

/* Fails unless |got - ref| <= rtol (|ref| + max|ref|) everywhere; prints the worst. */
static int compare(const char *what, const Real *got, const Real *ref, size_t n, double rtol,
                   double *worst_seen) {
    double scale = 0.0, worst = 0.0;
    size_t at = 0, bad = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - (double)ref[i]);
        const double rel = err / (fabs((double)ref[i]) + scale + 1e-30);
        if (!(rel <= rtol)) {
            if (bad < 3)
                fprintf(stderr, "  %s[%zu]: cuda %.9g, cpu %.9g (relative error %.3g > %.3g)\n",
                        what, i, (double)got[i], (double)ref[i], rel, rtol);
            bad++;
        }
        if (!(rel <= worst)) worst = rel, at = i;
    }
    printf("  %-34s %7zu values, worst relative error %.2e (at %zu)\n", what, n, worst, at);
    if (worst > *worst_seen || worst != worst) *worst_seen = worst;
    return bad == 0;
}

static int compare_scalars(const char *what, const double *got, const double *ref, int n) {
    Real g[STEPS * 4], r[STEPS * 4];
    assert_true(n <= STEPS * 4);
    for (int i = 0; i < n; i++) g[i] = (Real)got[i], r[i] = (Real)ref[i];
    return compare(what, g, r, (size_t)n, RTOL_STEP, &g_worst[0]);
}

static void compare_outcomes(const char *model, const Method *meth, const Outcome *cu,
                             const Outcome *cpu) {
    char what[96];
    int good = 1;
#define NAME(s) (snprintf(what, sizeof what, "%s %s %s", model, meth->name, s), what)
    good &= compare_scalars(NAME("loss"), cu->loss, cpu->loss, STEPS);
    good &= compare_scalars(NAME("grad_norm"), cu->grad_norm, cpu->grad_norm, STEPS);
    if (cu->n_events != cpu->n_events)
        fail_msg("%s: %d boundaries on cuda, %d on cpu", what, cu->n_events, cpu->n_events);
    for (int e = 0; e < cu->n_events; e++) {
        const CascadeEvent *a = &cu->events[e], *b = &cpu->events[e];
        if (a->expert != b->expert || a->step != b->step)
            fail_msg("%s: boundary %d differs", what, e);
        const double ga[3] = {a->merged_norm, a->noise_std_mean, a->noise_std_max};
        const double gb[3] = {b->merged_norm, b->noise_std_mean, b->noise_std_max};
        good &= compare_scalars(NAME("boundary norm and noise std"), ga, gb, 3);
    }
    if (cu->n_lora) {
        good &= compare(NAME("fast adapter (trained)"), cu->fast, cpu->fast, cu->n_lora,
                        RTOL_WEIGHTS, &g_worst[1]);
        good &= compare(NAME("slow adapter"), cu->slow, cpu->slow, cu->n_lora, RTOL_WEIGHTS,
                        &g_worst[1]);
    }
    assert_int_equal(cu->n_params, cpu->n_params);
    /* A weight whose exact gradient is zero (a ViT's key bias under full training) gets
     * rounding noise as its gradient, which AdamW normalises into steps of +-lr in directions
     * the two backends need not share: it is held to that bound, the rest to fp32 tolerance. */
    Real *got = malloc(cu->n_params * sizeof(Real));
    assert_non_null(got);
    memcpy(got, cu->params, cu->n_params * sizeof(Real));
    for (size_t i = cpu->flat_at; i < cpu->flat_at + cpu->flat_n; i++) {
        const double bound = 2.0 * STEPS * LR * 1.01;
        if (!(fabs((double)got[i] - (double)cpu->params[i]) <= bound))
            fail_msg("%s: weight %zu (zero gradient) moved %.3g apart, more than AdamW's %.3g",
                     NAME("model"), i, fabs((double)got[i] - (double)cpu->params[i]), bound);
        got[i] = cpu->params[i];
    }
    good &= compare(NAME("model after the run"), got, cpu->params, cu->n_params, RTOL_WEIGHTS,
                    &g_worst[1]);
    free(got);
    good &= compare(NAME("inference logits"), cu->logits, cpu->logits, cu->n_logits, RTOL_LOGITS,
                    &g_worst[2]);
    if (cu->n_decode)
        good &= compare(NAME("decoder logits"), cu->decode, cpu->decode, cu->n_decode, RTOL_LOGITS,
                        &g_worst[2]);
#undef NAME
    if (!good)
        fail_msg("%s %s: cuda differs from cpu beyond the fp32 tolerances", model, meth->name);
}

typedef void (*RunFn)(Backend *be, const Method *meth, Outcome *o);

static void run_both(const char *model, RunFn run) {
    for (int i = 0; i < N_METHODS; i++) {
        Outcome cpu, cu;
        run(g_cpu, &k_methods[i], &cpu);
        run(g_cuda, &k_methods[i], &cu);
        compare_outcomes(model, &k_methods[i], &cu, &cpu);
        /* the run changed the model: a comparison of two untrained models would prove nothing */
        size_t moved = 0;
        for (size_t j = 0; j < cpu.n_params; j++) moved += cpu.params[j] != cpu.init[j];
        printf("  %s %s: the run changed %zu of %zu weights\n", model, k_methods[i].name, moved,
               cpu.n_params);
        if (!moved) fail_msg("%s %s: the run left the model as it was", model, k_methods[i].name);
        outcome_free(&cpu);
        outcome_free(&cu);
    }
}

static void test_llama_runs(void **state) {
    (void)state;
    run_both("llama", run_llama);
}

/* A bf16 frozen base (LoRASC with noise over 2 experts, DoRA, and LoRASC with its activations
 * stored in bf16 between forward and backward): the same run on both
 * backends. Each backend rounds the activations it computed itself to bf16, so an element
 * whose fp32 values differ in the last bit may round to neighbouring bf16 values: the
 * tolerance is bf16's (RTOL_BF16), not fp32's. CUDA also runs a bf16 run's attention on
 * the tensor cores (bf16 q, k, v and probabilities; attention_tc.cu) where the CPU keeps
 * fp32, which moves the logits most: they are held to 1e-2 (RTOL_BF16_LOGITS), the bf16
 * parity bound of the design. The fp32 masters after the run (the merged and noised targets)
 * and the logits, on the host through llama_tensor_fp32. */
#define RTOL_BF16 2e-3
#define RTOL_BF16_LOGITS 1e-2
static void run_llama_bf16(Backend *be, const Method *meth, ModelPrecision acts, Outcome *o) {
    memset(o, 0, sizeof *o);
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    Llama m;
    ok(llama_create(&m, be, &c));
    fixture_randomize(&m, 11, 0.5);
    if (be == g_cuda) m.head_chunk = 5; /* the device's head in chunks (llama_head.c), the CPU's whole */
    ok(llama_set_precision(&m, PRECISION_BF16));
    ok(llama_set_activations(&m, acts));
    LlamaData data = {.V = c.vocab_size};
    LoraConfig lc;
    FinetuneConfig cfg = run_config(meth, &lc, LORA_DEFAULT_TARGETS);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraAdapters lora;
    ok(lora_create(&lora, be, &lc, c.n_layers, in, out, 21));
    Finetune ft;
    const FinetuneModel fm = finetune_model_llama(&m);
    ok(finetune_begin(&ft, &fm, &lora, &cfg));
    finetune_steps(&ft, &lora, llama_batch, &data, o);
    finetune_end(&ft);
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    /* the masters of q and v, end to end */
    const size_t nq = m.param_sizes[LLAMA_WQ], nv = m.param_sizes[LLAMA_WV];
    o->n_params = nq + nv;
    o->params = malloc(o->n_params * sizeof(Real));
    assert_non_null(o->params);
    be->to_host(be, o->params, m.w.tensors[LLAMA_WQ], nq * sizeof(Real));
    be->to_host(be, o->params + nq, m.w.tensors[LLAMA_WV], nv * sizeof(Real));
    ok(device_sync(be));
    fixture_batch(data.tokens, data.targets, B, T, c.vocab_size, 999);
    ok(llama_forward(&m, data.tokens, NULL, B, T));
    o->n_logits = (size_t)B * T * c.vocab_size;
    o->logits = host_copy(be, m.acts.logits, o->n_logits);
    llama_free(&m);
}

static void test_llama_bf16_runs(void **state) {
    (void)state;
    if (!g_cpu->matmul_bf16) {
        printf("  skipped: the CPU backend of this build has no matmul_bf16 (no oneDNN)\n");
        return;
    }
    /* the last: activations stored in bf16 on both (llama_set_activations) */
    const Method cases[] = {{"lorasc bf16", "lorasc", 0, 2}, {"dora bf16", "lora", 1, 1},
                            {"lorasc bf16, bf16 activations", "lorasc", 0, 2}};
    const size_t n_cases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n_cases; i++) {
        const ModelPrecision acts = i == n_cases - 1 ? PRECISION_BF16 : PRECISION_FP32;
        Outcome cpu, cu;
        run_llama_bf16(g_cpu, &cases[i], acts, &cpu);
        run_llama_bf16(g_cuda, &cases[i], acts, &cu);
        double worst[3] = {0, 0, 0};
        int good = 1;
        for (int s = 0; s < STEPS; s++) {
            const double rel = fabs(cu.loss[s] - cpu.loss[s]) / fabs(cpu.loss[s]);
            if (rel > worst[0]) worst[0] = rel;
            if (!(rel <= RTOL_BF16))
                fail_msg("%s: step %d loss cuda %.7f cpu %.7f", cases[i].name, s, cu.loss[s],
                         cpu.loss[s]);
        }
        good &= compare("llama bf16 masters", cu.params, cpu.params, cu.n_params, RTOL_BF16,
                        &worst[1]);
        good &= compare("llama bf16 logits", cu.logits, cpu.logits, cu.n_logits,
                        RTOL_BF16_LOGITS, &worst[2]);
        printf("  %s: worst relative gap cuda vs cpu: losses %.3g, masters %.3g, logits %.3g\n",
               cases[i].name, worst[0], worst[1], worst[2]);
        if (!good) fail_msg("%s: cuda differs from cpu beyond the bf16 tolerance", cases[i].name);
        outcome_free(&cpu);
        outcome_free(&cu);
    }
}

static void test_vit_runs(void **state) {
    (void)state;
    run_both("vit", run_vit);
}

/* Runs whose steps leave their loss and gradient norm on the device (finetune_step without a
 * result, read back every DEFER_READ_EVERY steps): on each backend, the same losses, norms,
 * events, adapters and merged base as the runs that read every step, bit for bit, and inside
 * the steps no read back to the host at all (be->to_host counted through a wrapper; in the
 * emulation also every device-to-host copy and every stream synchronisation). */
static void test_deferred_reads(void **state) {
    (void)state;
    Backend *bes[2] = {g_cpu, g_cuda};
    /* lora; lorasc with 2 experts; full training (pretraining: the Llama's train_step_dev) */
    const Method *meths[3] = {&k_methods[0], &k_methods[2], &k_methods[3]};
    void (*runs[2])(Backend *, const Method *, Outcome *) = {run_llama, run_vit};
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 2; r++)
            for (int mi = 0; mi < 3; mi++) {
                if (r == 1 && mi == 2) continue; /* ViT pretraining: test_image_task's trainer */
                Backend *be = bes[k];
                Outcome now, later;
                g_defer = 0;
                runs[r](be, meths[mi], &now);
                g_to_host_real = be->to_host;
                be->to_host = counting_to_host;
                g_defer = 1;
                g_step_reads = g_step_emu_reads = g_step_emu_waits = g_takes = 0;
                runs[r](be, meths[mi], &later);
                g_defer = 0;
                be->to_host = g_to_host_real;
                const char *what = r ? "vit" : "llama";
                printf("  %s %s %s: %ld reads and %ld waits inside %d steps, %ld takes\n",
                       be->name, what, meths[mi]->name, g_step_reads + g_step_emu_reads,
                       g_step_emu_waits, STEPS, g_takes);
                if (g_step_reads || g_step_emu_reads || g_step_emu_waits)
                    fail_msg("%s %s %s: the steps read back %ld times (%ld device-to-host copies) "
                             "and waited %ld times; expected none between reads",
                             be->name, what, meths[mi]->name, g_step_reads, g_step_emu_reads,
                             g_step_emu_waits);
                assert_int_equal(g_takes, (STEPS + DEFER_READ_EVERY - 1) / DEFER_READ_EVERY);
                for (int s = 0; s < STEPS; s++)
                    if (memcmp(&now.loss[s], &later.loss[s], sizeof(double)) ||
                        memcmp(&now.grad_norm[s], &later.grad_norm[s], sizeof(double)))
                        fail_msg("%s %s %s step %d: loss %.17g / %.17g, norm %.17g / %.17g "
                                 "(read every step / deferred)",
                                 be->name, what, meths[mi]->name, s, now.loss[s], later.loss[s],
                                 now.grad_norm[s], later.grad_norm[s]);
                assert_int_equal(now.n_events, later.n_events);
                assert_memory_equal(now.fast, later.fast, now.n_lora * sizeof(Real));
                assert_memory_equal(now.slow, later.slow, now.n_lora * sizeof(Real));
                assert_memory_equal(now.params, later.params, now.n_params * sizeof(Real));
                outcome_free(&now);
                outcome_free(&later);
            }
}

/* The cascade's noise at its own streams (expert 2, every layer and adapted target) and slot
 * sizes, plus a long odd-sized stretch, added to the same weights: the same bits on both. */
static void test_noise_bits(void **state) {
    (void)state;
    const int q = LORA_Q, v = LORA_V;
    struct {
        size_t n;
        uint64_t stream;
    } cases[] = {
        {64, philox_stream(RNG_PURPOSE_NOISE, 1, 0, (uint32_t)q)},
        {32, philox_stream(RNG_PURPOSE_NOISE, 1, 0, (uint32_t)v)},
        {64, philox_stream(RNG_PURPOSE_NOISE, 1, 1, (uint32_t)q)},
        {32, philox_stream(RNG_PURPOSE_NOISE, 1, 1, (uint32_t)v)},
        {100003, philox_stream(RNG_PURPOSE_NOISE, 7, 3, (uint32_t)v)},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t n = cases[c].n;
        Real *w0 = malloc(n * sizeof(Real));
        assert_non_null(w0);
        philox_uniform(w0, n, 41, c, -0.5, 0.5);
        Real *got[2];
        Backend *bes[2] = {g_cpu, g_cuda};
        for (int k = 0; k < 2; k++) {
            Real *w = bes[k]->alloc(bes[k], n * sizeof(Real));
            assert_non_null(w);
            bes[k]->to_device(bes[k], w, w0, n * sizeof(Real));
            bes[k]->add_uniform_noise(bes[k], w, n, 5, cases[c].stream, 0.0375f);
            got[k] = host_copy(bes[k], w, n);
            bes[k]->free(bes[k], w);
        }
        size_t differ = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[0][i], &got[1][i], sizeof(Real)) != 0 && differ++ == 0) first = i;
        if (differ)
            fail_msg("noise case %zu: %zu of %zu values differ in their bits, first at %zu "
                     "(cpu %.9g, cuda %.9g)",
                     c, differ, n, first, (double)got[0][first], (double)got[1][first]);
        printf("  noise at stream %#llx, %zu values: bit-identical\n",
               (unsigned long long)cases[c].stream, n);
        free(got[0]), free(got[1]), free(w0);
    }
}

/* An op the device cannot run (a head size above the CUDA attention's 256) fails the step with
 * the backend's sentence, and every later call fails the same way; nothing aborts. A fresh
 * backend: its error is sticky. */
static void test_errors(void **state) {
    (void)state;
    char err[256];
    Backend *be = backend_create("cuda", 0, err, sizeof err);
    if (!be) fail_msg("%s", err);
    const LlamaConfig c = {.dim = 600, .hidden_dim = 8, .n_layers = 1, .n_heads = 2,
                           .n_kv_heads = 2, .vocab_size = 11, .seq_len = 4, .rope_theta = 1e4f,
                           .norm_eps = 1e-5f, .tied_embeddings = 1, .rope_style = ROPE_HALF};
    Llama m;
    ok(llama_create(&m, be, &c));
    fixture_randomize(&m, 3, 0.1);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraAdapters lora;
    const LoraConfig lc = {.rank = 2, .alpha = 4.0f, .targets = LORA_DEFAULT_TARGETS};
    ok(lora_create(&lora, be, &lc, c.n_layers, in, out, 1));
    FinetuneConfig cfg = {.total_steps = 2, .batch = 1, .seq = 4,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 1e-3f},
                          .adamw = adamw_default_config(), .lora_plus_ratio = 1.0f, .seed = 1};
    ok(cascade_preset("lora", &cfg.cascade));
    Finetune ft;
    const FinetuneModel fm = finetune_model_llama(&m);
    ok(finetune_begin(&ft, &fm, &lora, &cfg));
    int32_t tokens[4] = {1, 2, 3, 4}, targets[4] = {2, 3, 4, 5};
    const LlamaBatch batch = {.tokens = tokens, .targets = targets, .B = 1, .T = 4};
    StepResult r;
    assert_int_equal(finetune_step(&ft, &batch, &r, NULL), LSC_ERR);
    const char *msg = error_last();
    printf("  a step that cannot run: %s\n", msg);
    assert_non_null(strstr(msg, "attention_forward failed at kernels/cuda/attention.cu:"));
    assert_non_null(strstr(msg, "head size 300"));
    char first[512];
    snprintf(first, sizeof first, "%s", msg);
    error_clear();
    assert_int_equal(llama_forward(&m, tokens, NULL, 1, 4), LSC_ERR); /* sticky */
    assert_string_equal(error_last(), first);
    error_clear();
    Real logits[11];
    LlamaDecoder d;
    if (llama_decoder_create(&d, &m, 4) == LSC_OK) {
        assert_int_equal(llama_decoder_feed(&d, tokens, 2, logits), LSC_ERR);
        assert_string_equal(error_last(), first);
        llama_decoder_free(&d);
    }
    finetune_end(&ft); /* cleaning up works on a failed device */
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    llama_free(&m);
    backend_destroy(be);
}

static int teardown(void **state) {
    (void)state;
    if (g_worst[0] + g_worst[1] + g_worst[2] > 0)
        printf("worst relative error cuda vs cpu: steps %.2e (tol %.0e), weights %.2e (tol %.0e), "
               "logits %.2e (tol %.0e)\n",
               g_worst[0], RTOL_STEP, g_worst[1], RTOL_WEIGHTS, g_worst[2], RTOL_LOGITS);
    return 0;
}

int main(void) {
    char err[512];
    g_cpu = backend_create("cpu", 0, err, sizeof err);
    if (!g_cpu) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", err);
        return 1;
    }
    g_cuda = backend_create("cuda", 0, err, sizeof err);
    if (!g_cuda) {
        const char *require = getenv("LORASC_REQUIRE_CUDA");
        printf("SKIP: no CUDA backend: %s\n", err);
        backend_destroy(g_cpu);
        if (require && strcmp(require, "1") == 0) {
            fprintf(stderr, "LORASC_REQUIRE_CUDA=1 but the CUDA backend is unavailable: %s\n", err);
            return 1;
        }
        return 77; /* meson's skip */
    }
    char desc[512];
    g_cuda->describe(g_cuda, desc, sizeof desc);
    printf("cuda: %s\n", desc);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_runs),
        cmocka_unit_test(test_vit_runs),
        cmocka_unit_test(test_deferred_reads),
        cmocka_unit_test(test_llama_bf16_runs),
        cmocka_unit_test(test_noise_bits),
        cmocka_unit_test(test_errors),
    };
    const char *filter = getenv("LORASC_TEST_FILTER");
    if (filter && filter[0]) cmocka_set_test_filter(filter);
    const int failed = cmocka_run_group_tests(tests, NULL, teardown);
    backend_destroy(g_cuda);
    backend_destroy(g_cpu);
    return failed;
}
