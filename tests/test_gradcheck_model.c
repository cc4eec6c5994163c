/* Whole-model gradient checks in double precision (built with LORASC_REAL_DOUBLE): every
 * parameter gradient of a tiny GQA Llama in full mode, and every adapter gradient in LoRA
 * mode (all seven targets), against central finite differences of the mean loss.
 * Both RoPE conventions, tied and untied classifiers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "check.h"
#include "core/error.h"
#include "core/llama.h"
#include "core/lora.h"
#include "kernels/backend.h"
#include "model_fixture.h"

enum { B = 2, T = 5 };
static const double FD_STEP = 1e-6;

static double loss_at(Llama *m, const int32_t *tokens, const int32_t *targets) {
    assert_int_equal(llama_forward(m, tokens, targets, B, T), LSC_OK);
    return m->mean_loss;
}

/* Central differences for every element of params[0..n): d loss / d params[i]. */
static void finite_differences(Llama *m, Real *params, size_t n, const int32_t *tokens,
                               const int32_t *targets, double *out) {
    Backend *be = m->be;
    for (size_t i = 0; i < n; i++) {
        Real orig, shifted;
        be->to_host(be, &orig, params + i, sizeof(Real));
        shifted = orig + FD_STEP;
        be->to_device(be, params + i, &shifted, sizeof(Real));
        const double plus = loss_at(m, tokens, targets);
        shifted = orig - FD_STEP;
        be->to_device(be, params + i, &shifted, sizeof(Real));
        const double minus = loss_at(m, tokens, targets);
        be->to_device(be, params + i, &orig, sizeof(Real));
        out[i] = (plus - minus) / (2 * FD_STEP);
    }
}

static void to_double(Backend *be, const Real *src, size_t n, double *dst) {
    Real *host = malloc(n * sizeof(Real));
    be->to_host(be, host, src, n * sizeof(Real));
    for (size_t i = 0; i < n; i++) dst[i] = (double)host[i];
    free(host);
}

static void check_full_mode(RopeStyle style, int tied) {
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(style, tied);
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

static void check_lora_mode(RopeStyle style, int tied) {
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(style, tied);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 21, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 3, .alpha = 6.0f, .targets = (1u << LORA_NUM_TARGETS) - 1};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(&lora, 4, 0.4);
    llama_attach_lora(&m, &lora);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 6);

    llama_zero_grad(&m);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(llama_backward(&m), LSC_OK);
    assert_null(m.grads); /* LoRA mode never allocates or computes base gradients */

    double *analytic = malloc(lora.num_params * sizeof(double));
    double *numeric = malloc(lora.num_params * sizeof(double));
    to_double(be, lora.grads, lora.num_params, analytic);
    finite_differences(&m, lora.params, lora.num_params, tokens, targets, numeric);
    size_t bad = 0;
    for (int l = 0; l < c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            const size_t a_off = (size_t)(lora_a(&lora, l, t) - lora.params);
            const size_t na = (size_t)lc.rank * (size_t)in[t], nb = (size_t)out[t] * (size_t)lc.rank;
            char name[64];
            snprintf(name, sizeof name, "layer%d.%s.A", l, lora_target_name(t));
            bad += check_close_f64(name, analytic + a_off, numeric + a_off, na, 1e-8, 1e-6);
            snprintf(name, sizeof name, "layer%d.%s.B", l, lora_target_name(t));
            bad += check_close_f64(name, analytic + a_off + na, numeric + a_off + na, nb, 1e-8, 1e-6);
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
    check_lora_mode(ROPE_INTERLEAVED, 0);
}
static void test_lora_half_tied(void **state) {
    (void)state;
    check_lora_mode(ROPE_HALF, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_interleaved_tied),
        cmocka_unit_test(test_full_half_untied),
        cmocka_unit_test(test_lora_interleaved_untied),
        cmocka_unit_test(test_lora_half_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
