/* Key/value-cache inference (core/model/llama_decode.c) against the full forward: the logits
 * of every position fed one token at a time, a prompt longer than one chunk, LoRA and DoRA
 * adapters attached unmerged, both rotary layouts, tied and untied classifiers; greedy
 * generation equal token for token to the recompute-everything loop; cache overflow; a batch of
 * decoders stepped together (llama_decode_batch_step) equal to each fed alone. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "model_fixture.h"

enum { SEQ = 160, V = 23 };

static LlamaConfig decode_config(RopeStyle style, int tied) {
    return (LlamaConfig){.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                         .vocab_size = V, .seq_len = SEQ, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .tied_embeddings = tied, .rope_style = style};
}

typedef struct Setup {
    Backend *be;
    Llama m;
    LoraAdapters lora;
    int has_lora;
} Setup;

/* adapter: 0 none, 1 LoRA on every target, 2 DoRA on every target (B random, so both act) */
static void setup(Setup *s, RopeStyle style, int tied, int adapter) {
    memset(s, 0, sizeof *s);
    s->be = backend_cpu_create(0);
    const LlamaConfig c = decode_config(style, tied);
    if (llama_create(&s->m, s->be, &c) != LSC_OK) fail_msg("%s", error_last());
    fixture_randomize(&s->m, 11, 0.4);
    if (adapter) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(&c, in, out);
        LoraConfig lc = {.rank = 3, .alpha = 6, .targets = (1u << LORA_NUM_TARGETS) - 1,
                         .use_dora = adapter == 2};
        assert_int_equal(lora_create(&s->lora, s->be, &lc, c.n_layers, in, out, 5), LSC_OK);
        llama_attach_lora(&s->m, &s->lora);
        fixture_randomize_lora(&s->lora, 6, 0.3);
        s->has_lora = 1;
    }
}

static void teardown(Setup *s) {
    if (s->has_lora) {
        llama_attach_lora(&s->m, NULL);
        lora_free(&s->lora);
    }
    llama_free(&s->m);
    backend_cpu_destroy(s->be);
}

static void random_tokens(int32_t *t, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(philox_u32(seed, 3, (uint64_t)i) % V);
}

static void expect_close(const Real *got, const Real *ref, int n, int pos, const char *what) {
    for (int i = 0; i < n; i++) {
        const double tol = 2e-5 + 2e-4 * fabs((double)ref[i]);
        if (!(fabs((double)got[i] - (double)ref[i]) <= tol))
            fail_msg("%s: position %d logit %d: cached %.8g, full forward %.8g", what, pos, i,
                     (double)got[i], (double)ref[i]);
    }
}

/* Feeds a prompt of n_prompt tokens, then the rest one at a time; every fed position's logits
 * must equal the full forward's row for that position. */
static void check_against_forward(RopeStyle style, int tied, int adapter, int T, int n_prompt,
                                  const char *what) {
    Setup s;
    setup(&s, style, tied, adapter);
    int32_t tokens[SEQ];
    random_tokens(tokens, T, 40 + (uint64_t)adapter);
    if (llama_forward(&s.m, tokens, NULL, 1, T) != LSC_OK) fail_msg("%s", error_last());
    Real *full = malloc(sizeof(Real) * (size_t)T * V), row[V];
    s.be->to_host(s.be, full, s.m.acts.logits, sizeof(Real) * (size_t)T * V);

    LlamaDecoder d;
    assert_int_equal(llama_decoder_create(&d, &s.m, T), LSC_OK);
    if (llama_decoder_feed(&d, tokens, n_prompt, row) != LSC_OK) fail_msg("%s", error_last());
    expect_close(row, full + (size_t)(n_prompt - 1) * V, V, n_prompt - 1, what);
    for (int t = n_prompt; t < T; t++) {
        if (llama_decoder_feed(&d, tokens + t, 1, row) != LSC_OK) fail_msg("%s", error_last());
        expect_close(row, full + (size_t)t * V, V, t, what);
    }
    assert_int_equal(d.pos, T);
    /* a full cache refuses one more token with a sentence */
    assert_int_equal(llama_decoder_feed(&d, tokens, 1, row), LSC_ERR);
    assert_non_null(strstr(error_last(), "key/value cache holds"));
    /* reset: the same prompt gives the same logits again */
    llama_decoder_reset(&d);
    assert_int_equal(llama_decoder_feed(&d, tokens, n_prompt, row), LSC_OK);
    expect_close(row, full + (size_t)(n_prompt - 1) * V, V, n_prompt - 1, what);
    llama_decoder_free(&d);
    free(full);
    teardown(&s);
}

static void test_cached_logits_equal_forward(void **state) {
    (void)state;
    check_against_forward(ROPE_INTERLEAVED, 0, 0, 24, 5, "base, interleaved, untied");
    check_against_forward(ROPE_HALF, 1, 0, 24, 1, "base, half, tied");
    check_against_forward(ROPE_HALF, 0, 1, 24, 7, "LoRA on every target");
    check_against_forward(ROPE_INTERLEAVED, 1, 2, 24, 3, "DoRA on every target");
}

/* A prompt longer than the decoder's chunk (128 rows) is fed in chunks. */
static void test_long_prompt_in_chunks(void **state) {
    (void)state;
    check_against_forward(ROPE_HALF, 0, 1, SEQ, 150, "150-token prompt, LoRA");
}

/* The recompute-everything loop the cache replaces: a full forward per new token. */
static void greedy_recompute(Llama *m, int32_t *tokens, int n_prompt, int n_total) {
    Real *logits = malloc(sizeof(Real) * (size_t)n_total * V);
    for (int t = n_prompt; t < n_total; t++) {
        if (llama_forward(m, tokens, NULL, 1, t) != LSC_OK) fail_msg("%s", error_last());
        m->be->to_host(m->be, logits, m->acts.logits, sizeof(Real) * (size_t)t * V);
        tokens[t] = llama_argmax(logits + (size_t)(t - 1) * V, V);
    }
    free(logits);
}

static void test_greedy_equals_recompute(void **state) {
    (void)state;
    for (int adapter = 0; adapter <= 2; adapter++) {
        Setup s;
        setup(&s, adapter == 1 ? ROPE_HALF : ROPE_INTERLEAVED, adapter != 1, adapter);
        int32_t ref[SEQ], got[SEQ];
        random_tokens(ref, 6, 90);
        memcpy(got, ref, sizeof ref);
        greedy_recompute(&s.m, ref, 6, 60);
        if (llama_generate_greedy(&s.m, got, 6, 60) != LSC_OK) fail_msg("%s", error_last());
        for (int t = 0; t < 60; t++)
            if (got[t] != ref[t])
                fail_msg("adapter %d: greedy token %d: cached %d, recompute %d", adapter, t, got[t],
                         ref[t]);
        teardown(&s);
    }
}

/* Three sequences with prompts of 1, 7 and 20 tokens (the last through the prefill tiles),
 * then 6 steps of one token each: stepped together, every row's logits equal its decoder's fed
 * alone (the same tokens), with LoRA attached; a batch of one is the lone decoder bit for bit;
 * bad batches are refused. */
static void test_batch_step(void **state) {
    (void)state;
    Setup s;
    setup(&s, ROPE_HALF, 0, 1);
    enum { NS = 3, STEPS = 6 };
    const int prompt[NS] = {1, 7, 20};
    int32_t tok[NS][40];
    for (int i = 0; i < NS; i++) random_tokens(tok[i], prompt[i] + STEPS, 70 + (uint64_t)i);
    LlamaDecoder alone[NS], together[NS];
    LlamaDecoder *rows[NS];
    Real row[V], got[NS * V];
    for (int i = 0; i < NS; i++) {
        assert_int_equal(llama_decoder_create(&alone[i], &s.m, 40), LSC_OK);
        assert_int_equal(llama_decoder_create(&together[i], &s.m, 40), LSC_OK);
        assert_int_equal(llama_decoder_feed(&alone[i], tok[i], prompt[i], row), LSC_OK);
        assert_int_equal(llama_decoder_feed(&together[i], tok[i], prompt[i], row), LSC_OK);
        rows[i] = &together[i];
    }
    LlamaDecodeBatch b;
    assert_int_equal(llama_decode_batch_create(&b, &s.m, NS), LSC_OK);
    for (int t = 0; t < STEPS; t++) {
        int32_t step_tokens[NS];
        for (int i = 0; i < NS; i++) step_tokens[i] = tok[i][prompt[i] + t];
        assert_int_equal(llama_decode_batch_step(&b, rows, step_tokens, NS, got), LSC_OK);
        for (int i = 0; i < NS; i++) {
            assert_int_equal(llama_decoder_feed(&alone[i], &step_tokens[i], 1, row), LSC_OK);
            expect_close(got + (size_t)i * V, row, V, prompt[i] + t, "batched step");
            assert_int_equal(together[i].pos, alone[i].pos);
        }
    }
    /* a batch of one after the same history: the lone decoder's bits (the same shapes) */
    int32_t one = 5;
    LlamaDecoder fresh_alone, fresh_batch, *fresh = &fresh_batch;
    assert_int_equal(llama_decoder_create(&fresh_alone, &s.m, 40), LSC_OK);
    assert_int_equal(llama_decoder_create(&fresh_batch, &s.m, 40), LSC_OK);
    assert_int_equal(llama_decoder_feed(&fresh_alone, tok[2], prompt[2], row), LSC_OK);
    assert_int_equal(llama_decoder_feed(&fresh_batch, tok[2], prompt[2], row), LSC_OK);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(llama_decode_batch_step(&b, &fresh, &one, 1, got), LSC_OK);
        assert_int_equal(llama_decoder_feed(&fresh_alone, &one, 1, row), LSC_OK);
        assert_memory_equal(got, row, sizeof row);
    }
    llama_decoder_free(&fresh_alone), llama_decoder_free(&fresh_batch);
    /* refused: no rows, more rows than the batch holds, a token outside the vocabulary */
    assert_int_equal(llama_decode_batch_step(&b, rows, &one, 0, got), LSC_ERR);
    int32_t four[4] = {1, 2, 3, 4};
    LlamaDecoder *four_rows[4] = {rows[0], rows[1], rows[2], rows[0]};
    assert_int_equal(llama_decode_batch_step(&b, four_rows, four, 4, got), LSC_ERR);
    assert_non_null(strstr(error_last(), "takes 1 to 3 sequences"));
    int32_t bad = V;
    assert_int_equal(llama_decode_batch_step(&b, rows, &bad, 1, got), LSC_ERR);
    assert_non_null(strstr(error_last(), "outside the vocabulary"));
    llama_decode_batch_free(&b);
    for (int i = 0; i < NS; i++) llama_decoder_free(&alone[i]), llama_decoder_free(&together[i]);
    teardown(&s);
}

static void test_bad_input(void **state) {
    (void)state;
    Setup s;
    setup(&s, ROPE_HALF, 0, 0);
    LlamaDecoder d;
    assert_int_equal(llama_decoder_create(&d, &s.m, 4), LSC_OK);
    const int32_t bad[2] = {1, V};
    Real row[V];
    assert_int_equal(llama_decoder_feed(&d, bad, 2, row), LSC_ERR);
    assert_non_null(strstr(error_last(), "outside the vocabulary"));
    const int32_t five[5] = {1, 2, 3, 4, 5};
    assert_int_equal(llama_decoder_feed(&d, five, 5, row), LSC_ERR);
    assert_non_null(strstr(error_last(), "holds 4 positions"));
    int32_t toks[SEQ + 1] = {1};
    assert_int_equal(llama_generate_greedy(&s.m, toks, 1, SEQ + 1), LSC_ERR);
    llama_decoder_free(&d);
    teardown(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_logits_equal_forward),
        cmocka_unit_test(test_long_prompt_in_chunks),
        cmocka_unit_test(test_greedy_equals_recompute),
        cmocka_unit_test(test_batch_step),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
