/* The sparse classifier head of llama_forward_loss (only the rows of unmasked targets reach the
 * classifier) against the dense llama_forward: the same loss and the same gradients, in full
 * and LoRA modes, tied and untied classifiers, for a batch with most positions masked, one
 * with none masked, and one with a single unmasked position. The same again with the head in
 * chunks of a few rows (as on a device, llama_head.c), its gradient taken in the forward of a
 * training step (backward_follows) or recomputed by the backward; and the logits buffer then
 * holds one chunk. An evaluation forward (forward_only: one layer's activations, reused by
 * every layer) gives the same bits in a fraction of the memory, and a backward after it is
 * refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "core/base/error.h"
#include "model_fixture.h"

enum { B = 3, T = 8 };

/* every position masked but those with mask[i] != 0 */
static void make_batch(int32_t *tokens, int32_t *targets, int V, const char *mask) {
    int32_t all[B * T];
    fixture_batch(tokens, all, B, T, V, 77);
    for (int i = 0; i < B * T; i++) targets[i] = mask[i] == '1' ? (all[i] < 0 ? 3 : all[i]) : -1;
}

/* loss and a copy of every trainable gradient after forward (dense or sparse) + backward */
static Real *grads_after(Llama *m, LoraAdapters *lora, const int32_t *tokens, const int32_t *targets,
                         int sparse, double *loss, size_t *n) {
    llama_zero_grad(m); /* before the forward: a chunked training step's head adds dWcls there */
    const int rc = sparse ? llama_forward_loss(m, tokens, targets, B, T)
                          : llama_forward(m, tokens, targets, B, T);
    if (rc != LSC_OK || llama_backward(m) != LSC_OK) fail_msg("%s", error_last());
    *loss = m->mean_loss;
    const Real *g = lora ? lora->grads : m->grads;
    *n = lora ? lora->num_params : m->num_params;
    Real *out = malloc(*n * sizeof(Real));
    m->be->to_host(m->be, out, g, *n * sizeof(Real));
    return out;
}

static void check_case(int tied, int use_lora, const char *mask, const char *what) {
    Backend *be = backend_cpu_create(0);
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, tied);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 5, 0.5);
    LoraAdapters lora;
    if (use_lora) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(&c, in, out);
        LoraConfig lc = {.rank = 2, .alpha = 4, .targets = (1u << LORA_NUM_TARGETS) - 1};
        assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
        llama_attach_lora(&m, &lora);
        fixture_randomize_lora(&lora, 4, 0.3);
    } else {
        assert_int_equal(llama_enable_full_grads(&m), LSC_OK);
    }
    int32_t tokens[B * T], targets[B * T];
    make_batch(tokens, targets, c.vocab_size, mask);
    double dense_loss, sparse_loss;
    size_t n;
    Real *dense = grads_after(&m, use_lora ? &lora : NULL, tokens, targets, 0, &dense_loss, &n);
    assert_int_equal(m.head_rows, 0);
    Real *sparse = grads_after(&m, use_lora ? &lora : NULL, tokens, targets, 1, &sparse_loss, &n);
    int unmasked = 0;
    for (int i = 0; i < B * T; i++) unmasked += targets[i] >= 0;
    assert_int_equal(m.head_rows, unmasked == B * T ? 0 : unmasked);
    if (fabs(dense_loss - sparse_loss) > 1e-6 * (1 + fabs(dense_loss)))
        fail_msg("%s: loss dense %.9g, sparse %.9g", what, dense_loss, sparse_loss);
    if (check_close_real(what, sparse, dense, n, 1e-6, 1e-5) != 0) fail_msg("%s: gradients differ", what);
    printf("%s: %d of %d positions scored, loss %.6f, %zu gradients equal\n", what, unmasked, B * T,
           sparse_loss, n);
    /* chunks of 2 and 5 rows, the gradient in the forward or recomputed by the backward */
    for (int chunk = 2; chunk <= 5; chunk += 3)
        for (int follows = 0; follows <= 1; follows++) {
            m.head_chunk = chunk;
            m.backward_follows = follows;
            double chunk_loss;
            Real *g = grads_after(&m, use_lora ? &lora : NULL, tokens, targets, 1, &chunk_loss, &n);
            const int rows = unmasked == B * T ? B * T : unmasked;
            assert_int_equal(m.head_chunked, chunk < rows ? chunk : 0);
            if (fabs(dense_loss - chunk_loss) > 1e-6 * (1 + fabs(dense_loss)) ||
                check_close_real(what, g, dense, n, 1e-6, 1e-5) != 0)
                fail_msg("%s: chunks of %d (gradient in the %s): loss %.9g vs %.9g, or gradients "
                         "differ", what, chunk, follows ? "forward" : "backward", chunk_loss,
                         dense_loss);
            free(g);
        }
    m.head_chunk = 0;
    m.backward_follows = 0;
    free(dense), free(sparse);
    if (use_lora) {
        llama_attach_lora(&m, NULL);
        lora_free(&lora);
    }
    llama_free(&m);
    backend_cpu_destroy(be);
}

static const char *const FEW = "000100010000001100000001";  /* 5 of 24, across rows */
static const char *const ALL = "111111111111111111111111";
static const char *const ONE = "000000000000000000000010";

static void test_sparse_equals_dense(void **state) {
    (void)state;
    check_case(0, 0, FEW, "full, untied, 5 unmasked");
    check_case(1, 0, FEW, "full, tied, 5 unmasked");
    check_case(1, 1, FEW, "LoRA, tied, 5 unmasked");
    check_case(0, 1, ONE, "LoRA, untied, 1 unmasked");
    check_case(1, 0, ALL, "full, tied, none masked (dense path)");
}

/* A chunked head keeps one chunk's logits: the activations are carved for it, and for every
 * position again when llama_forward's caller reads them all. */
static void test_chunk_memory(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(0);
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 5, 0.5);
    m.head_chunk = 5;
    int32_t tokens[B * T], targets[B * T];
    make_batch(tokens, targets, c.vocab_size, ALL);
    assert_int_equal(llama_forward_loss(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(m.logits_rows, 5);
    const double chunked = m.mean_loss;
    m.head_chunk = 7; /* raised after the carve: the head stays within the 5 rows it has */
    assert_int_equal(llama_forward_loss(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(m.head_chunked, 5);
    if (fabs(m.mean_loss - chunked) > 1e-6 * (1 + fabs(chunked)))
        fail_msg("loss with head_chunk raised %.9g, chunked %.9g", m.mean_loss, chunked);
    assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(m.logits_rows, B * T);
    assert_int_equal(m.head_chunked, 0);
    if (fabs(m.mean_loss - chunked) > 1e-6 * (1 + fabs(chunked)))
        fail_msg("loss with every logit kept %.9g, chunked %.9g", m.mean_loss, chunked);
    llama_free(&m);
    backend_cpu_destroy(be);
}

/* forward_only: the logits, the loss and the row losses of a LoRA model bit for bit those of
 * the ordinary forward, with the activations of one layer instead of every layer's (the
 * arena's carve measured), dense and sparse heads; llama_backward refuses after it, in one
 * sentence, and works again after an ordinary forward. */
static void test_forward_only(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(0);
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    c.n_layers = 4;
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 5, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 2, .alpha = 4, .targets = (1u << LORA_NUM_TARGETS) - 1};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    llama_attach_lora(&m, &lora);
    fixture_randomize_lora(&lora, 4, 0.3);
    int32_t tokens[B * T], targets[B * T];
    make_batch(tokens, targets, c.vocab_size, FEW);
    const size_t nl = (size_t)B * T * (size_t)c.vocab_size;
    Real *logits[2];
    double loss[2], sparse[2], rows[2][B];
    size_t carved[2];
    for (int only = 0; only <= 1; only++) {
        m.forward_only = only;
        assert_int_equal(llama_forward(&m, tokens, targets, B, T), LSC_OK);
        loss[only] = m.mean_loss;
        carved[only] = m.acts_arena.used;
        logits[only] = malloc(nl * sizeof(Real));
        be->to_host(be, logits[only], m.acts.logits, nl * sizeof(Real));
        assert_int_equal(llama_forward_loss(&m, tokens, targets, B, T), LSC_OK);
        sparse[only] = m.mean_loss;
        assert_int_equal(llama_forward_row_losses(&m, tokens, targets, B, T, rows[only]), LSC_OK);
    }
    if (memcmp(logits[0], logits[1], nl * sizeof(Real)) != 0) fail_msg("forward_only: logits differ");
    if (loss[0] != loss[1] || sparse[0] != sparse[1] || memcmp(rows[0], rows[1], sizeof rows[0]) != 0)
        fail_msg("forward_only: losses %.9g / %.9g, sparse %.9g / %.9g", loss[0], loss[1],
                 sparse[0], sparse[1]);
    printf("forward_only: %zu bytes of activations against %zu, the same bits\n", carved[1],
           carved[0]);
    assert_true(carved[1] * 2 < carved[0]); /* 4 layers' activations against one */
    assert_int_not_equal(llama_backward(&m), LSC_OK); /* m.forward_only is still 1 */
    assert_non_null(strstr(error_last(), "forward_only"));
    m.forward_only = 0;
    assert_int_equal(llama_forward_loss(&m, tokens, targets, B, T), LSC_OK);
    llama_zero_grad(&m);
    if (llama_backward(&m) != LSC_OK) fail_msg("%s", error_last());
    free(logits[0]), free(logits[1]);
    llama_attach_lora(&m, NULL);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sparse_equals_dense),
                                       cmocka_unit_test(test_chunk_memory),
                                       cmocka_unit_test(test_forward_only)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
