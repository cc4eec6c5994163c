/* Whole-model gradient checks in double precision (built with LORASC_REAL_DOUBLE): every
 * parameter gradient of a tiny GQA Llama in full mode, and every adapter gradient in LoRA
 * and DoRA mode (all seven targets; A, B and DoRA's m), against central finite differences
 * of the mean loss. Both RoPE conventions (at head size 4, where they differ), tied and
 * untied classifiers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/llama.h"
#include "core/model/lora.h"
#include "kernels/backend.h"
#include "tests/check.h"
#include "tests/fd.h"
#include "tests/model_fixture.h"

enum { B = 2, T = 5 };
static const double FD_STEP = 1e-6;

/* The fixture's tiny GQA Llama with head size 4 instead of 2 (dim 8, 2 query heads sharing 1
 * kv head): at head size 2 the interleaved and half RoPE layouts pair the same two elements,
 * so a backward that rotated in the other layout would pass unnoticed. */
static LlamaConfig gradcheck_config(RopeStyle style, int tied) {
    LlamaConfig c = fixture_tiny_config(style, tied);
    c.n_heads = 2;
    c.n_kv_heads = 1;
    assert_true(c.dim / c.n_heads >= 4);
    return c;
}

typedef struct LossCtx {
    Llama *m;
    const int32_t *tokens, *targets;
} LossCtx;

static double loss_at(void *p) {
    LossCtx *c = p;
    assert_int_equal(llama_forward(c->m, c->tokens, c->targets, B, T), LSC_OK);
    return c->m->mean_loss;
}

/* Central differences for every element of params[0..n): d loss / d params[i]. */
static void finite_differences(Llama *m, Real *params, size_t n, const int32_t *tokens,
                               const int32_t *targets, double *out) {
    LossCtx c = {m, tokens, targets};
    fd_central(m->be, params, n, FD_STEP, loss_at, &c, out);
}

static void to_double(Backend *be, const Real *src, size_t n, double *dst) {
    Real *host = malloc(n * sizeof(Real));
    be->to_host(be, host, src, n * sizeof(Real));
    for (size_t i = 0; i < n; i++) dst[i] = (double)host[i];
    free(host);
}

static void check_full_mode(RopeStyle style, int tied) {
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = gradcheck_config(style, tied);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 11 + (uint64_t)style * 2 + (uint64_t)tied, 0.5);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 5);

    assert_int_equal(llama_enable_full_grads(&m), LSC_OK);
    llama_zero_grad(&m);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(llama_backward(&m), LSC_OK);

    double *analytic = malloc(m.num_params * sizeof(double));
    double *numeric = malloc(m.num_params * sizeof(double));
    to_double(be, m.grads, m.num_params, analytic);
    finite_differences(&m, m.params, m.num_params, tokens, targets, numeric);
    size_t bad = 0, offset = 0;
    for (int t = 0; t < LLAMA_NUM_PARAM_TENSORS; t++) {
        bad += check_close_f64(llama_param_name(t), analytic + offset, numeric + offset,
                               m.param_sizes[t], 1e-8, 1e-6);
        offset += m.param_sizes[t];
    }
    free(analytic);
    free(numeric);
    llama_free(&m);
    backend_cpu_destroy(be);
    assert_int_equal(bad, 0);
}

/* Worst |analytic - numeric| over the DoRA checks, per kind (A, B, m), for the summary. */
static double worst_dora[3];

/* DoRA's m: PEFT's initialisation (||W + sBA||_row, done by llama_attach_lora) times a random
 * factor in [0.7, 1.3), so that m / n is not 1 and dm is not trivially related to dB. */
static void perturb_magnitudes(LoraAdapters *lora, uint64_t seed) {
    for (int l = 0; l < lora->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_has_magnitude(lora, t)) continue;
            const size_t n = (size_t)lora->out_dim[t];
            Real *f = malloc(n * sizeof(Real)), *mag = lora_magnitude(lora, l, t);
            philox_uniform(f, n, seed, (uint64_t)(l * LORA_NUM_TARGETS + t), 0.7, 1.3);
            for (size_t i = 0; i < n; i++) mag[i] *= f[i];
            free(f);
        }
}

/* LoRA (dora = 0) or DoRA (dora = 1) on all seven targets. DoRA's row norm n is detached (a
 * constant in backward, as in PEFT), so the finite differences run with lora.freeze_norms
 * set: each perturbed forward reuses the n of the unperturbed one, which makes the numeric
 * derivative that of the detached-norm function the analytic gradient describes. (m does not
 * enter n, so dm would match either way.) */
static void check_lora_mode(RopeStyle style, int tied, int dora) {
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = gradcheck_config(style, tied);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 21, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 3, .alpha = 6.0f, .targets = (1u << LORA_NUM_TARGETS) - 1,
                     .use_dora = dora};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(&lora, 4, 0.4);
    llama_attach_lora(&m, &lora);
    if (dora) {
        assert_true(lora.magnitudes_set);
        perturb_magnitudes(&lora, 5);
    }
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 6);

    llama_zero_grad(&m);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(llama_backward(&m), LSC_OK);
    assert_null(m.grads); /* LoRA mode never allocates or computes base gradients */

    double *analytic = malloc(lora.num_params * sizeof(double));
    double *numeric = malloc(lora.num_params * sizeof(double));
    to_double(be, lora.grads, lora.num_params, analytic);
    lora.freeze_norms = dora;
    finite_differences(&m, lora.params, lora.num_params, tokens, targets, numeric);
    lora.freeze_norms = 0;
    size_t bad = 0;
    for (int l = 0; l < c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            const size_t a_off = (size_t)(lora_a(&lora, l, t) - lora.params);
            const size_t na = (size_t)lc.rank * (size_t)in[t], nb = (size_t)out[t] * (size_t)lc.rank;
            const size_t off[3] = {a_off, a_off + na, a_off + na + nb};
            const size_t len[3] = {na, nb, dora ? (size_t)out[t] : 0};
            const char *kind[3] = {"A", "B", "m"};
            for (int k = 0; k < 3; k++) {
                if (!len[k]) continue;
                char name[64];
                snprintf(name, sizeof name, "layer%d.%s.%s%s", l, lora_target_name(t), kind[k],
                         dora ? " (DoRA)" : "");
                bad += check_close_f64(name, analytic + off[k], numeric + off[k], len[k], 1e-8, 1e-6);
                for (size_t i = 0; dora && i < len[k]; i++)
                    worst_dora[k] = fmax(worst_dora[k], fabs(analytic[off[k] + i] - numeric[off[k] + i]));
            }
        }
    if (dora) {
        /* every dm was visited and is not trivially zero */
        double dm_max = 0;
        for (int l = 0; l < c.n_layers; l++)
            for (int t = 0; t < LORA_NUM_TARGETS; t++) {
                const size_t off = (size_t)(lora_dmagnitude(&lora, l, t) - lora.grads);
                for (int i = 0; i < out[t]; i++) dm_max = fmax(dm_max, fabs(analytic[off + (size_t)i]));
            }
        assert_true(dm_max > 1e-4);
        printf("[ DoRA     ] max |analytic - finite difference|: A %.3g, B %.3g, m %.3g\n",
               worst_dora[0], worst_dora[1], worst_dora[2]);
    }
    free(analytic);
    free(numeric);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
    assert_int_equal(bad, 0);
}

static void test_full_interleaved_tied(void **state) {
    (void)state;
    check_full_mode(ROPE_INTERLEAVED, 1);
}
static void test_full_half_untied(void **state) {
    (void)state;
    check_full_mode(ROPE_HALF, 0);
}
static void test_lora_interleaved_untied(void **state) {
    (void)state;
    check_lora_mode(ROPE_INTERLEAVED, 0, 0);
}
static void test_lora_half_tied(void **state) {
    (void)state;
    check_lora_mode(ROPE_HALF, 1, 0);
}
static void test_dora_interleaved_tied(void **state) {
    (void)state;
    check_lora_mode(ROPE_INTERLEAVED, 1, 1);
}
static void test_dora_half_untied(void **state) {
    (void)state;
    check_lora_mode(ROPE_HALF, 0, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_interleaved_tied),
        cmocka_unit_test(test_full_half_untied),
        cmocka_unit_test(test_lora_interleaved_untied),
        cmocka_unit_test(test_lora_half_tied),
        cmocka_unit_test(test_dora_interleaved_tied),
        cmocka_unit_test(test_dora_half_untied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
