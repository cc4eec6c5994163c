/* Packed copies of a Llama model's frozen matrices (core/model/llama_packed.c): in fp32 and
 * in bf16 a LoRA model with them gives the bits of the same model without them (losses,
 * logits, adapter gradients); a copy never outlives a write of its matrix (a merge through
 * llama_target_master, a snapshot restore, weights written directly and announced); full
 * training packs nothing. Needs a backend that packs (the CPU with oneDNN); skips otherwise. */
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
#include "core/model/llama_internal.h"
#include "core/model/snapshot.h"
#include "model_fixture.h"

enum { B = 2, T = 8 };

static Backend *be;

/* A LoRA model in precision p, its adapters random; packing on, or forced off. */
static void make(Llama *m, LoraAdapters *lora, ModelPrecision p, int pack) {
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    c.dim = 32, c.hidden_dim = 48, c.vocab_size = 37;
    assert_int_equal(llama_create(m, be, &c), LSC_OK);
    fixture_randomize(m, 9, 0.4);
    if (llama_set_precision(m, p) != LSC_OK) fail_msg("%s", error_last());
    if (!pack) m->pack_decided = 1, m->pack_dirs = 0; /* decided: none */
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 2, .alpha = 4, .targets = LORA_DEFAULT_TARGETS};
    assert_int_equal(lora_create(lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(lora, 4, 0.3);
    llama_attach_lora(m, lora);
    assert_int_equal(llama_ensure_masters(m, lc.targets), LSC_OK);
}

static void drop(Llama *m, LoraAdapters *lora) {
    llama_attach_lora(m, NULL);
    lora_free(lora);
    llama_free(m);
}

/* logits of a forward without targets, on the host */
static Real *logits(Llama *m, const int32_t *tokens) {
    assert_int_equal(llama_forward(m, tokens, NULL, B, T), LSC_OK);
    const size_t n = (size_t)B * T * m->config.vocab_size;
    Real *h = malloc(n * sizeof *h);
    be->to_host(be, h, m->acts.logits, n * sizeof *h);
    return h;
}

static void same(const char *what, const Real *a, const Real *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0)
            fail_msg("%s: element %zu %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

static int packed_count(const Llama *m) {
    int n = 0;
    if (m->packed)
        for (size_t i = 0; i < (size_t)LLAMA_NUM_PARAM_TENSORS * (size_t)m->config.n_layers * 2; i++)
            n += m->packed[i] != NULL;
    return n;
}

static void check_precision(ModelPrecision p, const char *name) {
    Llama on, off;
    LoraAdapters lon, loff;
    make(&on, &lon, p, 1);
    make(&off, &loff, p, 0);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, on.config.vocab_size, 21);
    const size_t nl = (size_t)B * T * on.config.vocab_size, ng = lon.num_params;
    /* a training step each: the same loss and adapter gradients */
    Real *g[2];
    double loss[2];
    Llama *ms[2] = {&on, &off};
    LoraAdapters *ls[2] = {&lon, &loff};
    for (int i = 0; i < 2; i++) {
        llama_zero_grad(ms[i]);
        if (llama_forward_loss(ms[i], tokens, targets, B, T) != LSC_OK || llama_backward(ms[i]) != LSC_OK)
            fail_msg("%s: %s", name, error_last());
        loss[i] = ms[i]->mean_loss;
        g[i] = malloc(ng * sizeof(Real));
        be->to_host(be, g[i], ls[i]->grads, ng * sizeof(Real));
    }
    if (packed_count(&on) == 0) {
        printf("%s: this backend packs nothing here; skipped\n", name);
        free(g[0]), free(g[1]);
        drop(&on, &lon), drop(&off, &loff);
        skip();
    }
    assert_int_equal(packed_count(&off), 0);
    if (loss[0] != loss[1]) fail_msg("%s: loss packed %.9g, plain %.9g", name, loss[0], loss[1]);
    same("adapter gradients", g[0], g[1], ng);
    printf("%s: %d packed copies, loss and %zu gradients the same bits as without\n", name,
           packed_count(&on), ng);
    /* a merge writes the adapted masters: the copies follow */
    Real *before = logits(&on, tokens);
    Snapshot s;
    assert_int_equal(snapshot_llama(&s, &on, LORA_DEFAULT_TARGETS), LSC_OK);
    llama_merge_lora(&on, 1.0f), llama_merge_lora(&off, 1.0f);
    Real *a = logits(&on, tokens), *b = logits(&off, tokens);
    same("logits after a merge", a, b, nl);
    /* a snapshot restore writes them back: the logits before the merge, bit for bit */
    assert_int_equal(snapshot_restore(&s), LSC_OK);
    lon.merged = 0; /* the base is the one before the merge: the adapters apply again */
    Real *c = logits(&on, tokens);
    same("logits after restore", c, before, nl);
    snapshot_free(&s);
    /* weights written directly and announced: the copies of the old ones go (fp32: a bf16
     * model's params hold no matrices) */
    if (p == PRECISION_FP32) {
        llama_attach_lora(&on, NULL), llama_attach_lora(&off, NULL);
        fixture_randomize(&on, 17, 0.4);
        fixture_randomize(&off, 17, 0.4);
        off.pack_decided = 1, off.pack_dirs = 0; /* still unpacked */
        Real *d = logits(&on, tokens), *e = logits(&off, tokens);
        assert_true(packed_count(&on) > 0);
        same("logits after new weights", d, e, nl);
        free(d), free(e);
    }
    free(before), free(a), free(b), free(c), free(g[0]), free(g[1]);
    drop(&on, &lon), drop(&off, &loff);
}

static void test_fp32(void **state) {
    (void)state;
    check_precision(PRECISION_FP32, "fp32");
}

static void test_bf16(void **state) {
    (void)state;
    if (!be->matmul_bf16) skip();
    check_precision(PRECISION_BF16, "bf16");
}

/* Full training: every weight changes every step, nothing is packed. */
static void test_full_training_packs_nothing(void **state) {
    (void)state;
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 9, 0.4);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, c.vocab_size, 21);
    assert_int_equal(llama_forward(&m, tokens, NULL, B, T), LSC_OK); /* may pack */
    assert_int_equal(llama_enable_full_grads(&m), LSC_OK);
    assert_int_equal(packed_count(&m), 0);
    assert_int_equal(llama_forward_loss(&m, tokens, targets, B, T), LSC_OK);
    assert_int_equal(llama_backward(&m), LSC_OK);
    assert_int_equal(packed_count(&m), 0);
    assert_null(llama_packed_slot(&m, LLAMA_WQ, 0, 0));
    llama_free(&m);
}

int main(void) {
    be = backend_cpu_create(2);
    /* oneDNN for every product: the AUTO choice gives these tiny shapes to OpenBLAS, which
     * packs nothing */
    if (backend_cpu_has_onednn()) backend_cpu_set_gemm(be, CPU_GEMM_ONEDNN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_full_training_packs_nothing),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    backend_cpu_destroy(be);
    return rc;
}
