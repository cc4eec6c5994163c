/* LoRA and DoRA adapters: PEFT initialisation, merge exactness (a merged model's logits equal
 * base + adapter to fp32 tolerance), unmerge restoring the base, DoRA's merge rule (merged
 * rows have norm m, so a fresh adapter with the same m continues the merged model), and
 * argument errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tests/check.h"
#include "core/base/error.h"
#include "core/model/llama.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 6 };

static LlamaConfig mid_config(void) {
    return (LlamaConfig){.dim = 32, .hidden_dim = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                         .vocab_size = 40, .seq_len = 16, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .tied_embeddings = 0, .rope_style = ROPE_INTERLEAVED};
}

static void test_peft_init(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = mid_config();
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_DOWN)};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    assert_float_equal(lora.scaling, 2.0, 0);
    for (int l = 0; l < c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&lora, t)) continue;
            const Real *a = lora_a(&lora, l, t), *b = lora_b(&lora, l, t);
            const double bound = 1.0 / sqrt(in[t]);
            double maxabs = 0;
            for (int i = 0; i < lc.rank * in[t]; i++) maxabs = fmax(maxabs, fabs(a[i]));
            assert_true(maxabs < bound && maxabs > 0.8 * bound); /* fills the kaiming range */
            for (int i = 0; i < out[t] * lc.rank; i++) assert_true(b[i] == 0);
        }
    /* a fresh adapter (B = 0) leaves the model's output unchanged */
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 3, 0.3);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 1);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    const double base_loss = m.mean_loss;
    llama_attach_lora(&m, &lora);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    assert_true(m.mean_loss == base_loss);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* A mid-size Llama (2 threads) with a random rank-4 adapter on all seven targets attached, its
 * batch, a copy of the base weights, and the logits and loss before any merge. DoRA: m is
 * scaled off ||W + sBA||_row, so that merging rescales the rows. */
typedef struct MergeCase {
    Backend *be;
    LlamaConfig c;
    LoraConfig lc;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    Llama m;
    LoraAdapters lora;
    int32_t tokens[B * T], targets[B * T];
    size_t nlogits;
    Real *base;      /* the base weights before merging */
    float *unmerged; /* logits with the adapter unmerged */
    double loss_unmerged;
} MergeCase;

static void merge_case_begin(MergeCase *k, int dora) {
    k->be = backend_cpu_create(2);
    k->c = mid_config();
    assert_int_equal(llama_create(&k->m, k->be, &k->c), LSC_OK);
    fixture_randomize(&k->m, 5, 0.3);
    llama_lora_shapes(&k->c, k->in, k->out);
    k->lc = (LoraConfig){.rank = 4, .alpha = 16, .targets = (1u << LORA_NUM_TARGETS) - 1,
                         .use_dora = dora};
    assert_int_equal(lora_create(&k->lora, k->be, &k->lc, k->c.n_layers, k->in, k->out, 2), LSC_OK);
    fixture_randomize_lora(&k->lora, 8, 0.3); /* A, B (and m, reset by attach below) */
    llama_attach_lora(&k->m, &k->lora);
    for (int l = 0; dora && l < k->c.n_layers; l++) /* m != ||W + sBA||: the scaling is not 1 */
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            for (int o = 0; o < k->out[t]; o++) lora_magnitude(&k->lora, l, t)[o] *= (Real)(0.8 + 0.013 * (o % 31));
    fixture_batch(k->tokens, k->targets, B, T, k->c.vocab_size, 2);
    k->nlogits = (size_t)B * T * k->c.vocab_size;
    k->base = malloc(k->m.num_params * sizeof(Real));
    memcpy(k->base, k->m.params, k->m.num_params * sizeof(Real));
    k->unmerged = malloc(k->nlogits * sizeof(float));
    assert_int_equal(llama_forward(&k->m, k->tokens, k->targets, B, T), LSC_OK);
    for (size_t i = 0; i < k->nlogits; i++) k->unmerged[i] = k->m.acts.logits[i];
    k->loss_unmerged = k->m.mean_loss;
}

/* Merges the adapter into the base: the logits and the loss stay the unmerged ones. */
static void merge_case_merge(MergeCase *k, const char *label) {
    char what[64];
    snprintf(what, sizeof what, "%smerged logits", label);
    llama_merge_lora(&k->m, +1.0f);
    assert_true(k->lora.merged);
    assert_int_equal(llama_forward(&k->m, k->tokens, k->targets, B, T), LSC_OK);
    assert_int_equal(check_close_real(what, k->m.acts.logits, k->unmerged, k->nlogits, 1e-5, 1e-4), 0);
    assert_float_equal(k->m.mean_loss, k->loss_unmerged, 1e-5);
}

/* Unmerges the attached adapter: every base weight is back within 1e-6, the logits too. */
static void merge_case_unmerge(MergeCase *k, const char *label) {
    char what[64];
    snprintf(what, sizeof what, "%sunmerged logits", label);
    llama_merge_lora(&k->m, -1.0f);
    assert_false(k->lora.merged);
    size_t bad = 0;
    double worst = 0;
    for (size_t i = 0; i < k->m.num_params; i++) {
        worst = fmax(worst, fabs(k->m.params[i] - k->base[i]));
        bad += fabs(k->m.params[i] - k->base[i]) > 1e-6;
    }
    printf("%sunmerge: max |W - W_before| = %.3g\n", label, worst);
    assert_int_equal(bad, 0);
    assert_int_equal(llama_forward(&k->m, k->tokens, k->targets, B, T), LSC_OK);
    assert_int_equal(check_close_real(what, k->m.acts.logits, k->unmerged, k->nlogits, 1e-5, 1e-4), 0);
}

static void merge_case_end(MergeCase *k) {
    free(k->base);
    free(k->unmerged);
    lora_free(&k->lora);
    llama_free(&k->m);
    backend_cpu_destroy(k->be);
}

static void test_merge_exactness(void **state) {
    (void)state;
    MergeCase k;
    merge_case_begin(&k, 0);
    merge_case_merge(&k, "");
    merge_case_unmerge(&k, "");
    merge_case_end(&k);
}

/* Host row norms of W [out,in] in double. */
static void host_row_norms(const Real *w, int out, int in, double *norm) {
    for (int o = 0; o < out; o++) {
        double s = 0;
        for (int i = 0; i < in; i++) s += (double)w[(size_t)o * in + i] * w[(size_t)o * in + i];
        norm[o] = sqrt(s);
    }
}

/* A fresh DoRA adapter: m = ||W||_row (set by llama_attach_lora), and the model is unchanged. */
static void test_dora_init(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = mid_config();
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 3, 0.3);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 1);
    const size_t nlogits = (size_t)B * T * c.vocab_size;
    float *base = malloc(nlogits * sizeof(float));
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    for (size_t i = 0; i < nlogits; i++) base[i] = m.acts.logits[i];
    const double base_loss = m.mean_loss;

    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 4, .alpha = 8, .targets = (1u << LORA_NUM_TARGETS) - 1, .use_dora = 1};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    assert_false(lora.magnitudes_set);
    llama_attach_lora(&m, &lora);
    assert_true(lora.magnitudes_set);
    size_t bad = 0;
    for (int l = 0; l < c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            double *ref = malloc((size_t)out[t] * sizeof(double)), *got = malloc((size_t)out[t] * sizeof(double));
            host_row_norms(llama_target_weight(&m, t, l), out[t], in[t], ref);
            for (int o = 0; o < out[t]; o++) got[o] = lora_magnitude(&lora, l, t)[o];
            bad += check_close_f64("m = ||W||_row", got, ref, (size_t)out[t], 0, 1e-6);
            free(ref), free(got);
        }
    assert_int_equal(bad, 0);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    /* m / n is exactly 1 (the same norm computed twice); o and down take the unfused
     * residual path, which may round differently from the fused GEMM */
    assert_int_equal(check_close_real("fresh DoRA logits", m.acts.logits, base, nlogits, 1e-6, 1e-6), 0);
    assert_float_equal(m.mean_loss, base_loss, 1e-6);
    /* lora_init re-draws A and B but keeps m */
    Real keep = lora_magnitude(&lora, 1, LORA_DOWN)[3];
    lora_init(&lora, 77);
    assert_true(lora_magnitude(&lora, 1, LORA_DOWN)[3] == keep);
    free(base);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* DoRA merge: merged logits equal unmerged ones; every merged row has norm m; a fresh adapter
 * (B = 0) carrying the same m reproduces the merged model; unmerge restores W. */
static void test_dora_merge_exactness(void **state) {
    (void)state;
    MergeCase k;
    merge_case_begin(&k, 1);
    merge_case_merge(&k, "DoRA ");
    float *merged = malloc(k.nlogits * sizeof(float));
    for (size_t i = 0; i < k.nlogits; i++) merged[i] = k.m.acts.logits[i];
    size_t bad = 0;
    for (int l = 0; l < k.c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            double *norm = malloc((size_t)k.out[t] * sizeof(double)), *mag = malloc((size_t)k.out[t] * sizeof(double));
            host_row_norms(llama_target_weight(&k.m, t, l), k.out[t], k.in[t], norm);
            for (int o = 0; o < k.out[t]; o++) mag[o] = lora_magnitude(&k.lora, l, t)[o];
            bad += check_close_f64("merged ||W||_row = m", norm, mag, (size_t)k.out[t], 0, 1e-6);
            free(norm), free(mag);
        }
    assert_int_equal(bad, 0);

    /* the cascade's next expert: B = 0, same m, on the merged base */
    LoraAdapters fresh;
    assert_int_equal(lora_create(&fresh, k.be, &k.lc, k.c.n_layers, k.in, k.out, 9), LSC_OK);
    for (int l = 0; l < k.c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            memcpy(lora_magnitude(&fresh, l, t), lora_magnitude(&k.lora, l, t), (size_t)k.out[t] * sizeof(Real));
    fresh.magnitudes_set = 1; /* m written by hand: attach must not re-initialise it */
    llama_attach_lora(&k.m, &fresh);
    assert_int_equal(llama_forward(&k.m, k.tokens, k.targets, B, T), LSC_OK);
    assert_int_equal(check_close_real("fresh adapter on merged base", k.m.acts.logits, merged, k.nlogits, 1e-5, 1e-5), 0);
    lora_free(&fresh);

    llama_attach_lora(&k.m, &k.lora);
    merge_case_unmerge(&k, "DoRA ");
    free(merged);
    merge_case_end(&k);
}

static void test_bad_arguments(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    int in[LORA_NUM_TARGETS] = {8, 8, 8, 8, 8, 8, 8}, out[LORA_NUM_TARGETS] = {8, 8, 8, 8, 8, 8, 8};
    LoraAdapters lora;
    LoraConfig lc = {.rank = 0, .alpha = 8, .targets = LORA_DEFAULT_TARGETS};
    assert_int_equal(lora_create(&lora, be, &lc, 1, in, out, 0), LSC_ERR);
    assert_non_null(strstr(error_last(), "rank"));
    lc.rank = 2;
    lc.targets = 0;
    assert_int_equal(lora_create(&lora, be, &lc, 1, in, out, 0), LSC_ERR);
    assert_non_null(strstr(error_last(), "targets"));
    lc.targets = LORA_DEFAULT_TARGETS;
    lc.use_dora = 2;
    assert_int_equal(lora_create(&lora, be, &lc, 1, in, out, 0), LSC_ERR);
    assert_non_null(strstr(error_last(), "use_dora"));
    assert_int_equal(lora_target_parse("gate_proj"), LORA_GATE);
    assert_int_equal(lora_target_parse("v"), LORA_V);
    assert_int_equal(lora_target_parse("qproj"), -1);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_init),
        cmocka_unit_test(test_merge_exactness),
        cmocka_unit_test(test_dora_init),
        cmocka_unit_test(test_dora_merge_exactness),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
