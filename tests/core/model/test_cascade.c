/* The LoRASC cascade in double precision (built with LORASC_REAL_DOUBLE):
 *  - every expert boundary against a direct transcription of Algorithm 1 (the slow-fast
 *    update of A and B, the merge of s*B_slow*A_slow (the paper's eq. 12), the noise
 *    U(-lambda/2, lambda/2) * std (eqs. 7-8)), computed here with explicit loops, a
 *    materialised product and a two-pass std;
 *  - one expert with alpha = lambda = 0 is plain LoRA, step for step;
 *  - expert boundaries for every Table 4 frequency and for counts that do not divide;
 *  - the noise's bounds, moments and reproducibility; the Gram-matrix std. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/check.h"
#include "core/base/error.h"
#include "core/model/finetune.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 6 };

/* Every run here draws fixture batches for its model, seeded seed0 + step; the context of
 * each run starts with this, so that one batch callback serves them all. */
typedef struct BatchSource {
    Llama *model;
    uint64_t seed0;
} BatchSource;

static int batch_fn(void *ctx, long step, int32_t *tokens, int32_t *targets) {
    const BatchSource *src = ctx;
    fixture_batch(tokens, targets, B, T, src->model->config.vocab_size, src->seed0 + (uint64_t)step);
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * the transcription of Algorithm 1 */

typedef struct Transcript {
    BatchSource src; /* first: see batch_fn */
    LoraAdapters *fast;
    const FinetuneConfig *cfg;
    long *ends;          /* ends[e] = last step + 1 of expert e */
    int n_experts;
    double *slow;        /* transcription's slow adapter, same layout as fast->params */
    double *w_before;    /* model params right before the boundary */
    double *fast_before; /* fast params right before the boundary */
    size_t bad;
    int boundaries;
} Transcript;

static void snapshot(const Real *src, double *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (double)src[i];
}

static void on_step(void *ctx, long step, const StepResult *r, float lr) {
    (void)r;
    (void)lr;
    Transcript *tr = ctx;
    for (int e = 0; e < tr->n_experts; e++)
        if (step + 1 == tr->ends[e]) {
            snapshot(tr->src.model->params, tr->w_before, tr->src.model->num_params);
            snapshot(tr->fast->params, tr->fast_before, tr->fast->num_params);
        }
}

/* Applies the boundary of Algorithm 1 to the snapshots with plain loops and compares with the
 * engine. */
static void on_event(void *ctx, const CascadeEvent *ev) {
    Transcript *tr = ctx;
    Llama *m = tr->src.model;
    LoraAdapters *fast = tr->fast;
    const CascadeConfig *k = &tr->cfg->cascade;
    const int e = ev->expert - 1, r = fast->config.rank;
    const double s = fast->scaling, alpha = k->alpha;
    tr->boundaries++;
    assert_int_equal(ev->step, tr->ends[e]);

    /* the slow-fast update: slow = alpha slow + (1 - alpha) fast, elementwise on A and B */
    for (size_t i = 0; i < fast->num_params; i++)
        tr->slow[i] = alpha * tr->slow[i] + (1 - alpha) * tr->fast_before[i];

    double *w = malloc(m->num_params * sizeof(double));
    memcpy(w, tr->w_before, m->num_params * sizeof(double));
    double merged_sq = 0, std_sum = 0;
    int n_std = 0;
    for (int l = 0; l < m->config.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(fast, t)) continue;
            const int in = fast->in_dim[t], out = fast->out_dim[t];
            const size_t a_off = (size_t)(lora_a(fast, l, t) - fast->params);
            const double *A = tr->slow + a_off, *Bm = A + (size_t)r * in;
            double *W = w + (llama_target_weight(m, t, l) - m->params);
            /* the merge, eq. 12: W = W + s B_slow A_slow, with the product materialised */
            double *P = malloc((size_t)out * in * sizeof(double));
            double sum = 0;
            for (int i = 0; i < out; i++)
                for (int j = 0; j < in; j++) {
                    double acc = 0;
                    for (int q = 0; q < r; q++) acc += Bm[i * r + q] * A[q * in + j];
                    P[i * in + j] = s * acc;
                    W[i * in + j] += s * acc;
                    merged_sq += s * acc * s * acc;
                    sum += s * acc;
                }
            /* the noise for the next expert, eqs. 7-8: W += U(-lambda/2, lambda/2) * std(s B A),
             * unbiased std */
            if (e + 1 < tr->n_experts && k->noise > 0) {
                const double n = (double)out * in, mean = sum / n;
                double var = 0;
                for (int i = 0; i < out * in; i++) var += (P[i] - mean) * (P[i] - mean);
                const double std = sqrt(var / (n - 1));
                std_sum += std;
                n_std++;
                const uint64_t stream = philox_stream(RNG_PURPOSE_NOISE, (uint32_t)(e + 1), (uint32_t)l, (uint32_t)t);
                for (int i = 0; i < out * in; i++) {
                    const double u = (double)(philox_u32(tr->cfg->seed, stream, (uint64_t)i) >> 8) / 16777216.0;
                    W[i] += (u - 0.5) * k->noise * std;
                }
            }
            free(P);
        }

    char what[64];
    snprintf(what, sizeof what, "W after boundary %d", ev->expert);
    double *engine = malloc(m->num_params * sizeof(double));
    snapshot(m->params, engine, m->num_params);
    tr->bad += check_close_f64(what, engine, w, m->num_params, 1e-9, 1e-9);
    const double want_norm = sqrt(merged_sq);
    tr->bad += check_close_f64("merged norm", &ev->merged_norm, &want_norm, 1, 1e-12, 1e-9);
    const double want_std = n_std ? std_sum / n_std : 0;
    tr->bad += check_close_f64("noise std mean", &ev->noise_std_mean, &want_std, 1, 1e-12, 1e-9);

    /* step 1 of the next expert: the fast adapter is the PEFT initialisation of its seed */
    LoraAdapters fresh;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m->config, in, out);
    assert_int_equal(lora_create(&fresh, m->be, &fast->config, m->config.n_layers, in, out,
                                 cascade_expert_seed(tr->cfg->seed, e + 1)), LSC_OK);
    assert_memory_equal(fresh.params, fast->params, fast->num_params * sizeof(Real));
    lora_free(&fresh);
    free(engine);
    free(w);
}

static void run_transcription(float alpha, float noise, int n_experts, long steps, SlowMerge merge) {
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 31, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_DOWN)};
    LoraAdapters fast;
    FinetuneConfig cfg = {.total_steps = steps, .batch = B, .seq = T, .lora_plus_ratio = 1,
                          .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 5e-2f, .warmup_steps = 2},
                          .adamw = adamw_default_config(), .seed = 2024};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.alpha = alpha;
    cfg.cascade.noise = noise;
    cfg.cascade.n_experts = n_experts;
    cfg.cascade.slow_merge = merge;
    assert_int_equal(lora_create(&fast, be, &lc, c.n_layers, in, out, cfg.seed), LSC_OK);

    Transcript tr = {.src = {&m, 100}, .fast = &fast, .cfg = &cfg, .n_experts = n_experts};
    tr.ends = malloc((size_t)n_experts * sizeof(long));
    for (int e = 0; e < n_experts; e++) tr.ends[e] = (long)((long long)(e + 1) * steps / n_experts);
    tr.slow = malloc(fast.num_params * sizeof(double));
    snapshot(fast.params, tr.slow, fast.num_params); /* slow starts equal to fast */
    tr.w_before = malloc(m.num_params * sizeof(double));
    tr.fast_before = malloc(fast.num_params * sizeof(double));
    const FinetuneCallbacks cb = {.batch = batch_fn, .on_step = on_step, .on_event = on_event, .ctx = &tr};
    if (finetune_run(&m, &fast, &cfg, &cb) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(tr.boundaries, n_experts);
    assert_int_equal(tr.bad, 0);
    free(tr.ends);
    free(tr.slow);
    free(tr.w_before);
    free(tr.fast_before);
    lora_free(&fast);
    llama_free(&m);
    backend_cpu_destroy(be);
}

static void test_algorithm1_lorasc(void **state) {
    (void)state;
    run_transcription(0.6f, 0.5f, 3, 9, SLOW_MERGE_CUMULATIVE);
}

static void test_algorithm1_plain_cascade(void **state) {
    (void)state;
    run_transcription(0.0f, 0.0f, 4, 10, SLOW_MERGE_CUMULATIVE); /* 4 does not divide 10 */
}

/* ------------------------------------------------------------------------------------------
 * DoRA under the cascade: m is trained continuously and every merge rescales W's rows to it */

typedef struct DoraCheck {
    BatchSource src; /* first: see batch_fn */
    LoraAdapters *fast;
    size_t bad;
    int events;
} DoraCheck;

static void dora_event(void *ctx, const CascadeEvent *ev) {
    (void)ev;
    DoraCheck *d = ctx;
    d->events++;
    for (int l = 0; l < d->src.model->config.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_has_magnitude(d->fast, t)) continue;
            const int in = d->fast->in_dim[t], out = d->fast->out_dim[t];
            const Real *w = llama_target_weight(d->src.model, t, l), *m = lora_magnitude(d->fast, l, t);
            double norms[64], want[64];
            for (int o = 0; o < out; o++) {
                double sq = 0;
                for (int i = 0; i < in; i++) sq += (double)w[o * in + i] * w[o * in + i];
                norms[o] = sqrt(sq);
                want[o] = m[o];
            }
            d->bad += check_close_f64("||W||_row vs m", norms, want, (size_t)out, 1e-12, 1e-10);
            /* the fresh expert is B = 0, so the layer is exactly the merged base */
            const Real *b = lora_b(d->fast, l, t);
            for (int i = 0; i < out * d->fast->config.rank; i++) d->bad += b[i] != 0;
        }
}

static void test_dora_cascade(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 51, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_O),
                           .use_dora = 1};
    LoraAdapters fast;
    FinetuneConfig cfg = {.total_steps = 9, .batch = B, .seq = T, .lora_plus_ratio = 16,
                          .schedule = {.kind = SCHEDULE_CONSTANT, .peak_lr = 2e-2f},
                          .adamw = adamw_default_config(), .seed = 8};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.alpha = 0.5f;
    cfg.cascade.noise = 0.0f; /* noise would move the row norms off m on purpose */
    cfg.cascade.n_experts = 3;
    assert_int_equal(lora_create(&fast, be, &lc, c.n_layers, in, out, cfg.seed), LSC_OK);
    Real m0[64];
    DoraCheck d = {.src = {&m, 300}, .fast = &fast};
    const FinetuneCallbacks cb = {.batch = batch_fn, .on_event = dora_event, .ctx = &d};
    llama_attach_lora(&m, &fast); /* initialises m = ||W||_row */
    memcpy(m0, lora_magnitude(&fast, 0, LORA_Q), (size_t)out[LORA_Q] * sizeof(Real));
    if (finetune_run(&m, &fast, &cfg, &cb) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(d.events, 3);
    assert_int_equal(d.bad, 0);
    /* m trained (LoRA+ gave it a group of its own) */
    assert_true(memcmp(m0, lora_magnitude(&fast, 0, LORA_Q), (size_t)out[LORA_Q] * sizeof(Real)) != 0);
    cfg.cascade.slow_merge = SLOW_MERGE_REPLACE;
    assert_int_equal(finetune_run(&m, &fast, &cfg, &cb), LSC_ERR);
    assert_non_null(strstr(error_last(), "not defined for DoRA"));
    lora_free(&fast);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* ------------------------------------------------------------------------------------------
 * one expert, alpha = lambda = 0: plain LoRA */

typedef struct LossLog {
    BatchSource src; /* first: see batch_fn */
    double loss[64];
} LossLog;

static void log_loss(void *ctx, long step, const StepResult *r, float lr) {
    (void)lr;
    ((LossLog *)ctx)->loss[step] = r->loss;
}

static void test_one_expert_is_lora(void **state) {
    (void)state;
    enum { STEPS = 12 };
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    Llama cascade_model, lora_model;
    assert_int_equal(llama_create(&cascade_model, be, &c), LSC_OK);
    assert_int_equal(llama_create(&lora_model, be, &c), LSC_OK);
    fixture_randomize(&cascade_model, 41, 0.5);
    fixture_randomize(&lora_model, 41, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 3, .alpha = 6, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters a, b;
    const Schedule sched = {.kind = SCHEDULE_COSINE, .peak_lr = 2e-2f, .warmup_steps = 3};
    FinetuneConfig cfg = {.total_steps = STEPS, .batch = B, .seq = T, .lora_plus_ratio = 1,
                          .schedule = sched, .adamw = adamw_default_config(), .seed = 5};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.alpha = 0;
    cfg.cascade.noise = 0;
    cfg.cascade.n_experts = 1;
    assert_int_equal(lora_create(&a, be, &lc, c.n_layers, in, out, cfg.seed), LSC_OK);
    assert_int_equal(lora_create(&b, be, &lc, c.n_layers, in, out, cfg.seed), LSC_OK);

    LossLog via_cascade = {.src = {&cascade_model, 100}}, plain = {.src = {&lora_model, 100}};
    const FinetuneCallbacks cb = {.batch = batch_fn, .on_step = log_loss, .ctx = &via_cascade};
    assert_int_equal(finetune_run(&cascade_model, &a, &cfg, &cb), LSC_OK);

    /* the plain LoRA loop, written out */
    llama_attach_lora(&lora_model, &b);
    ParamGroup g = {.p = b.params, .g = b.grads, .n = b.num_params, .lr_scale = 1};
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &cfg.adamw, &g, 1), LSC_OK);
    int32_t tokens[B * T], targets[B * T];
    for (long s = 0; s < STEPS; s++) {
        StepResult r;
        batch_fn(&plain, s, tokens, targets);
        assert_int_equal(train_step(&lora_model, &opt, tokens, targets, B, T,
                                    schedule_lr(&sched, s, STEPS), &r), LSC_OK);
        plain.loss[s] = r.loss;
    }
    for (int s = 0; s < STEPS; s++)
        if (via_cascade.loss[s] != plain.loss[s])
            fail_msg("step %d: cascade loss %.17g, plain LoRA %.17g", s, via_cascade.loss[s], plain.loss[s]);
    /* the cascade merged the adapter: its base equals LoRA's base + s B A */
    llama_merge_lora(&lora_model, +1.0f);
    double *want = malloc(lora_model.num_params * sizeof(double));
    double *got = malloc(lora_model.num_params * sizeof(double));
    snapshot(lora_model.params, want, lora_model.num_params);
    snapshot(cascade_model.params, got, cascade_model.num_params);
    assert_int_equal(check_close_f64("merged weights", got, want, lora_model.num_params, 1e-12, 1e-12), 0);
    free(want);
    free(got);
    adamw_free(&opt);
    lora_free(&a);
    lora_free(&b);
    llama_free(&cascade_model);
    llama_free(&lora_model);
    backend_cpu_destroy(be);
}

/* ------------------------------------------------------------------------------------------
 * boundaries and schedules */

static Cascade bare_cascade(long steps, int n_experts, long steps_per_expert) {
    Cascade c = {.total_steps = steps};
    c.config.n_experts = n_experts;
    c.config.steps_per_expert = steps_per_expert;
    c.n_experts = n_experts > 0 ? n_experts
                  : steps_per_expert > 0 ? (int)((steps + steps_per_expert - 1) / steps_per_expert) : 1;
    return c;
}

static void check_partition(const Cascade *c, int want_experts, long min_len, long max_len) {
    assert_int_equal(c->n_experts, want_experts);
    assert_int_equal(cascade_expert_start(c, 0), 0);
    assert_int_equal(cascade_expert_start(c, c->n_experts), c->total_steps);
    for (int e = 0; e < c->n_experts; e++) {
        const long a = cascade_expert_start(c, e), b = cascade_expert_start(c, e + 1);
        assert_true(b - a >= min_len && b - a <= max_len);
        assert_int_equal(cascade_expert_of_step(c, a), e);
        assert_int_equal(cascade_expert_of_step(c, b - 1), e);
    }
}

static void test_table4_boundaries(void **state) {
    (void)state;
    const int counts[] = {2, 5, 25, 125, 1250}; /* 5 epochs x 250 steps */
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        Cascade c = bare_cascade(1250, counts[i], 0);
        check_partition(&c, counts[i], 1250 / counts[i], 1250 / counts[i]);
    }
    Cascade odd = bare_cascade(10, 3, 0); /* 3, 3, 4 */
    check_partition(&odd, 3, 3, 4);
    assert_int_equal(cascade_expert_start(&odd, 1), 3);
    assert_int_equal(cascade_expert_start(&odd, 2), 6);
    Cascade every = bare_cascade(10, 0, 4); /* ReLoRA-style: 4, 4, 2 */
    check_partition(&every, 3, 2, 4);
    assert_int_equal(cascade_expert_start(&every, 2), 8);
    Cascade epochs = bare_cascade(1250, 0, 250); /* one expert per epoch */
    check_partition(&epochs, 5, 250, 250);

    /* a restarted schedule is compressed to each expert, warm-up included */
    Cascade c = bare_cascade(100, 2, 0);
    c.config.schedule = EXPERT_SCHEDULE_RESTART;
    const Schedule s = {.kind = SCHEDULE_LINEAR, .peak_lr = 1.0f, .warmup_steps = 10};
    assert_float_equal(cascade_lr(&c, &s, 50), 0.0, 1e-7);  /* expert 2 restarts from 0 */
    assert_float_equal(cascade_lr(&c, &s, 55), 1.0, 1e-7);  /* after a 5-step warm-up */
    assert_float_equal(cascade_lr(&c, &s, 75), 25.0 / 45.0, 1e-7); /* (50-25)/(50-5) */
    c.config.schedule = EXPERT_SCHEDULE_GLOBAL;              /* COLA: no restart */
    assert_float_equal(cascade_lr(&c, &s, 55), schedule_lr(&s, 55, 100), 0);
    /* ReLoRA's schedule and boundaries: test_expert_reset.c */
}

/* ------------------------------------------------------------------------------------------
 * noise */

static void test_noise_statistics(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(2);
    const size_t n = 512 * 512;
    Real *w = be->alloc(be, n * sizeof(Real)), *again = be->alloc(be, n * sizeof(Real));
    const double lambda = 2.0, std = 0.3, width = lambda * std;
    const uint64_t stream = philox_stream(RNG_PURPOSE_NOISE, 1, 3, LORA_V);
    be->add_uniform_noise(be, w, n, 77, stream, (float)width);
    be->add_uniform_noise(be, again, n, 77, stream, (float)width);
    assert_memory_equal(w, again, n * sizeof(Real)); /* same seed, same noise */
    double mean = 0, var = 0, lo = 1e9, hi = -1e9;
    for (size_t i = 0; i < n; i++) {
        mean += w[i];
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (w[i] - mean) * (w[i] - mean);
    var /= (double)n;
    assert_true(lo >= -width / 2 && hi < width / 2);
    assert_true(lo < -0.99 * width / 2 && hi > 0.99 * width / 2);
    assert_true(fabs(mean) < 4 * width / sqrt(12.0 * (double)n));
    assert_true(fabs(var - width * width / 12) < 0.01 * width * width / 12);
    be->zero(be, again, n * sizeof(Real));
    be->add_uniform_noise(be, again, n, 78, stream, (float)width); /* another seed differs */
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += again[i] == w[i];
    assert_true(same < n / 1000);
    be->free(be, w);
    be->free(be, again);
    backend_cpu_destroy(be);
}

/* The Gram-matrix std and norm equal a materialised two-pass computation. */
static void test_product_stats(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    c.dim = 16;
    c.hidden_dim = 40;
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 3, .alpha = 5, .targets = LORA_BIT(LORA_DOWN) | LORA_BIT(LORA_K)};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    fixture_randomize_lora(&lora, 9, 0.7);
    AdamW opt = {0};
    CascadeConfig k;
    assert_int_equal(cascade_preset("lorasc", &k), LSC_OK);
    Cascade cas;
    assert_int_equal(cascade_create(&cas, finetune_model_llama(&m).weight, &m, &lora, &opt, &k, 10, 1), LSC_OK);
    const int targets[] = {LORA_DOWN, LORA_K};
    for (int i = 0; i < 2; i++) {
        const int t = targets[i], r = lc.rank;
        const Real *A = lora_a(&lora, 1, t), *Bm = lora_b(&lora, 1, t);
        const double n = (double)in[t] * out[t];
        double sum = 0, sq = 0, var = 0;
        double *P = malloc((size_t)n * sizeof(double));
        for (int a = 0; a < out[t]; a++)
            for (int b = 0; b < in[t]; b++) {
                double acc = 0;
                for (int q = 0; q < r; q++) acc += Bm[a * r + q] * A[q * in[t] + b];
                P[a * in[t] + b] = 2.5 * acc;
                sum += 2.5 * acc;
                sq += 6.25 * acc * acc;
            }
        for (int j = 0; j < (int)n; j++) var += (P[j] - sum / n) * (P[j] - sum / n);
        const double want_std = sqrt(var / (n - 1));
        double std, sq_norm;
        cascade_product_stats(&cas, &lora, 1, t, 2.5, &std, &sq_norm);
        assert_int_equal(check_close_f64("std", &std, &want_std, 1, 1e-13, 1e-10), 0);
        assert_int_equal(check_close_f64("||P||^2", &sq_norm, &sq, 1, 1e-13, 1e-10), 0);
        free(P);
    }
    cascade_free(&cas);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

static void test_bad_configs(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    AdamW opt = {0};
    Cascade cas;
    CascadeConfig k;
    assert_int_equal(cascade_preset("lorasc", &k), LSC_OK);
    k.alpha = 1.5f;
    assert_int_equal(cascade_create(&cas, finetune_model_llama(&m).weight, &m, &lora, &opt, &k, 10, 1), LSC_ERR);
    assert_non_null(strstr(error_last(), "alpha"));
    k.alpha = 0.5f;
    k.noise = -1;
    assert_int_equal(cascade_create(&cas, finetune_model_llama(&m).weight, &m, &lora, &opt, &k, 10, 1), LSC_ERR);
    assert_non_null(strstr(error_last(), "lambda"));
    k.noise = 1;
    k.n_experts = 11;
    assert_int_equal(cascade_create(&cas, finetune_model_llama(&m).weight, &m, &lora, &opt, &k, 10, 1), LSC_ERR);
    assert_non_null(strstr(error_last(), "11 experts"));
    assert_int_equal(cascade_preset("loraSC", &k), LSC_ERR);
    assert_non_null(strstr(error_last(), "known: lora"));
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_algorithm1_lorasc),
        cmocka_unit_test(test_algorithm1_plain_cascade),
        cmocka_unit_test(test_one_expert_is_lora),
        cmocka_unit_test(test_dora_cascade),
        cmocka_unit_test(test_table4_boundaries),
        cmocka_unit_test(test_noise_statistics),
        cmocka_unit_test(test_product_stats),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
