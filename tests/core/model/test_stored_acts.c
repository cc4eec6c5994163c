/* Activations stored in bf16 between forward and backward (llama_set_activations; llama.c's
 * stored_acts; vit_set_activations likewise): against the same LoRA model storing fp32, on
 * every target (so every stored entry feeds a gradient), a Llama in both base precisions and
 * a ViT (its head trained too),
 *  - the forward is unchanged: the loss and the logits are the same bits;
 *  - the store holds each layer's activations rounded to bf16, bit for bit the fp32 run's
 *    per-layer activations through bf16_from_float (every entry of every layer);
 *  - the adapter gradients, read from those rounded activations, stay within the bf16
 *    bound (2^-6 of the largest gradient; a layer unpacked into the wrong place or not at
 *    all moves them by their own size) and are not the fp32 run's bits (the store is read);
 *  - the arena is smaller by the expected amount (half of every layer's stored entries,
 *    less one working layer in fp32);
 *  - an evaluation forward (forward_only) between steps changes nothing;
 *  - DoRA (its magnitudes' gradients read the stored activations too) likewise;
 *  - an unknown storage is refused in one sentence. */
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
#include "core/base/philox.h"
#include "core/model/llama_internal.h"
#include "core/model/vit.h"
#include "kernels/bf16.h"
#include "model_fixture.h"

enum { B = 2, T = 8 };

static Backend *be;

static void make(Llama *m, LoraAdapters *lora, ModelPrecision p, ModelPrecision acts, int dora) {
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    c.dim = 32, c.hidden_dim = 48, c.vocab_size = 37;
    assert_int_equal(llama_create(m, be, &c), LSC_OK);
    fixture_randomize(m, 9, 0.4);
    if (llama_set_precision(m, p) != LSC_OK || llama_set_activations(m, acts) != LSC_OK)
        fail_msg("%s", error_last());
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 2, .alpha = 4, .targets = (1u << LORA_NUM_TARGETS) - 1, .use_dora = dora};
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

/* a training step: the loss, the adapter gradients on the host */
static double step(Llama *m, LoraAdapters *lora, const int32_t *tokens, const int32_t *targets,
                   Real *grads) {
    llama_zero_grad(m);
    if (llama_forward_loss(m, tokens, targets, B, T) != LSC_OK || llama_backward(m) != LSC_OK)
        fail_msg("%s", error_last());
    be->to_host(be, grads, lora->grads, lora->num_params * sizeof(Real));
    return m->mean_loss;
}

static Real *logits(Llama *m, const int32_t *tokens) {
    assert_int_equal(llama_forward(m, tokens, NULL, B, T), LSC_OK);
    const size_t n = (size_t)B * T * m->config.vocab_size;
    Real *h = malloc(n * sizeof *h);
    be->to_host(be, h, m->acts.logits, n * sizeof *h);
    return h;
}

/* store16 against the fp32 model's per-layer activations, rounded (the CPU's memory is the
 * host's); the order is stored_acts' */
static void check_store(const Llama *f, const Llama *s) {
    const LlamaConfig *c = &f->config;
    const size_t BT = (size_t)B * T, C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t HD = (size_t)llama_head_dim(c), qd = (size_t)c->n_heads * HD;
    const size_t kvd = (size_t)c->n_kv_heads * HD;
    const LlamaActs *a = &f->acts;
    const struct {
        const char *name;
        const Real *base;
        size_t n;
    } e[] = {{"x", a->resid, C},    {"xn", a->xn_att, C}, {"q", a->q, qd},
             {"k", a->k, kvd},      {"v", a->v, kvd},     {"atty", a->atty, qd},
             {"mid", a->resid_mid, C}, {"xn2", a->xn_ffn, C}, {"gate", a->gate, H},
             {"up", a->up, H},      {"swi", a->swi, H}};
    const uint16_t *p = s->acts.store16;
    for (int l = 0; l < c->n_layers; l++)
        for (size_t j = 0; j < sizeof e / sizeof e[0]; j++) {
            const Real *src = e[j].base + (size_t)l * BT * e[j].n;
            for (size_t i = 0; i < BT * e[j].n; i++, p++)
                if (*p != bf16_from_float(src[i]))
                    fail_msg("layer %d %s[%zu]: stored 0x%04x, bf16 of %.9g is 0x%04x", l,
                             e[j].name, i, *p, (double)src[i], bf16_from_float(src[i]));
        }
}

static void check(ModelPrecision p, int dora, const char *name) {
    Llama f, s;
    LoraAdapters lf, ls;
    make(&f, &lf, p, PRECISION_FP32, dora);
    make(&s, &ls, p, PRECISION_BF16, dora);
    int32_t tokens[B * T], targets[B * T];
    fixture_batch(tokens, targets, B, T, f.config.vocab_size, 21);
    const size_t ng = lf.num_params;
    Real *gf = malloc(ng * sizeof(Real)), *gs = malloc(ng * sizeof(Real));
    Real *gs2 = malloc(ng * sizeof(Real));
    const double loss_f = step(&f, &lf, tokens, targets, gf);
    const double loss_s = step(&s, &ls, tokens, targets, gs);
    if (memcmp(&loss_f, &loss_s, sizeof loss_f) != 0)
        fail_msg("%s: loss %.17g with fp32 storage, %.17g with bf16", name, loss_f, loss_s);
    check_store(&f, &s);
    double gmax = 0, worst = 0;
    int differ = 0;
    for (size_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(gf[i]));
    for (size_t i = 0; i < ng; i++) {
        worst = fmax(worst, fabs(gs[i] - gf[i]));
        differ |= gs[i] != gf[i];
    }
    printf("%s: %zu adapter gradients, worst |bf16 store - fp32| %.3g of max |g| %.3g\n", name,
           ng, worst, gmax);
    if (!(worst <= 0x1p-6 * gmax)) fail_msg("%s: gradients moved by %.3g (max %.3g)", name, worst, gmax);
    if (!differ) fail_msg("%s: the gradients are the fp32 store's bits: is the store read?", name);
    /* the arena: per layer the stored entries in bf16 instead of fp32, one fp32 layer kept */
    const LlamaConfig *c = &f.config;
    const size_t HD = (size_t)llama_head_dim(c), per_row =
        4 * (size_t)c->dim + 2 * (size_t)c->n_heads * HD + 2 * (size_t)c->n_kv_heads * HD +
        3 * (size_t)c->hidden_dim;
    const size_t layer = (size_t)B * T * per_row, L = (size_t)c->n_layers;
    /* fp32 also keeps the final residual stream: one C-row block more */
    const double saved = (double)(L * layer + (size_t)B * T * c->dim) * sizeof(Real) -
                         (double)layer * sizeof(Real) - (double)L * layer * 2;
    const double got = (double)f.acts_arena.used - (double)s.acts_arena.used;
    printf("%s: activations arena %zu -> %zu bytes (%.0f saved, %.0f expected)\n", name,
           f.acts_arena.used, s.acts_arena.used, got, saved);
    if (fabs(got - saved) > 64 * 24) /* the arena's per-slot alignment */
        fail_msg("%s: the arena shrank by %.0f bytes, expected about %.0f", name, got, saved);
    /* an evaluation forward between two steps: the second step gives the first's bits */
    Real *l1 = logits(&s, tokens);
    s.forward_only = 1;
    Real *l2 = logits(&s, tokens);
    s.forward_only = 0;
    for (size_t i = 0; i < (size_t)B * T * c->vocab_size; i++)
        if (l1[i] != l2[i]) fail_msg("%s: logits %zu differ after forward_only", name, i);
    step(&s, &ls, tokens, targets, gs2);
    if (memcmp(gs, gs2, ng * sizeof(Real)) != 0)
        fail_msg("%s: a step after an evaluation forward gave other gradients", name);
    free(gf), free(gs), free(gs2), free(l1), free(l2);
    drop(&f, &lf), drop(&s, &ls);
}

static void test_fp32_base(void **state) {
    (void)state;
    check(PRECISION_FP32, 0, "fp32 base");
    check(PRECISION_FP32, 1, "fp32 base, DoRA"); /* its magnitudes' gradients too */
}

static void test_bf16_base(void **state) {
    (void)state;
    if (!be->matmul_bf16) {
        printf("bf16 base: no matmul_bf16 in this build; skipped\n");
        skip();
    }
    check(PRECISION_BF16, 0, "bf16 base");
}

/* ---- a ViT: the same checks on its stored entries (x, ln1, q, k, v, atty, mid, ln2, fc1,
 * act), its logits and the adapter and head gradients ---- */

static const ViTConfig k_vit = {.image_size = 8, .patch_size = 4, .channels = 2, .dim = 32,
                                .n_layers = 2, .n_heads = 4, .mlp_dim = 64, .n_classes = 3,
                                .norm_eps = 1e-5f, .gelu = GELU_ERF, .pre_norm = 1,
                                .patch_bias = 0};
enum { VB = 3 };

static void vit_make(ViT *m, LoraAdapters *lora, ModelPrecision acts) {
    assert_int_equal(vit_create(m, be, &k_vit), LSC_OK);
    vit_init_random(m, 17);
    if (vit_set_activations(m, acts) != LSC_OK) fail_msg("%s", error_last());
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&k_vit, in, out);
    const unsigned all = LORA_BIT(LORA_Q) | LORA_BIT(LORA_K) | LORA_BIT(LORA_V) |
                         LORA_BIT(LORA_O) | LORA_BIT(LORA_UP) | LORA_BIT(LORA_DOWN);
    const LoraConfig lc = {.rank = 2, .alpha = 4, .targets = all};
    assert_int_equal(lora_create(lora, be, &lc, k_vit.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(lora, 4, 0.3);
    assert_int_equal(vit_attach_lora(m, lora), LSC_OK);
}

/* the loss; adapter gradients then head gradients into g */
static double vit_step(ViT *m, LoraAdapters *lora, const Real *images, const int32_t *labels,
                       Real *g) {
    vit_zero_grad(m);
    if (vit_forward(m, images, labels, VB) != LSC_OK || vit_backward(m) != LSC_OK)
        fail_msg("%s", error_last());
    const size_t nh = (size_t)k_vit.n_classes * (k_vit.dim + 1);
    be->to_host(be, g, lora->grads, lora->num_params * sizeof(Real));
    be->to_host(be, g + lora->num_params, m->head_grads, nh * sizeof(Real));
    return m->mean_loss;
}

static void test_vit(void **state) {
    (void)state;
    ViT f, s;
    LoraAdapters lf, ls;
    vit_make(&f, &lf, PRECISION_FP32);
    vit_make(&s, &ls, PRECISION_BF16);
    Real images[VB * 2 * 8 * 8];
    int32_t labels[VB] = {0, 2, 1};
    philox_uniform(images, sizeof images / sizeof images[0], 31, 5, -1.0, 1.0);
    const size_t ng = lf.num_params + (size_t)k_vit.n_classes * (k_vit.dim + 1);
    Real *gf = malloc(ng * sizeof(Real)), *gs = malloc(ng * sizeof(Real));
    const double loss_f = vit_step(&f, &lf, images, labels, gf);
    const double loss_s = vit_step(&s, &ls, images, labels, gs);
    if (memcmp(&loss_f, &loss_s, sizeof loss_f) != 0)
        fail_msg("vit: loss %.17g with fp32 storage, %.17g with bf16", loss_f, loss_s);
    /* the store against the fp32 model's per-layer activations, rounded */
    const size_t BT = (size_t)VB * vit_seq_len(&k_vit), D = k_vit.dim, M = k_vit.mlp_dim;
    const ViTActs *a = &f.acts;
    const struct {
        const char *name;
        const Real *base;
        size_t n;
    } e[] = {{"x", a->resid, D}, {"ln1", a->ln1, D},  {"q", a->q, D},
             {"k", a->k, D},     {"v", a->v, D},      {"atty", a->atty, D},
             {"mid", a->resid_mid, D}, {"ln2", a->ln2, D}, {"fc1", a->fc1, M},
             {"act", a->act, M}};
    const uint16_t *p = s.acts.store16;
    for (int l = 0; l < k_vit.n_layers; l++)
        for (size_t j = 0; j < sizeof e / sizeof e[0]; j++) {
            const Real *src = e[j].base + (size_t)l * BT * e[j].n;
            for (size_t i = 0; i < BT * e[j].n; i++, p++)
                if (*p != bf16_from_float(src[i]))
                    fail_msg("vit layer %d %s[%zu]: stored 0x%04x, bf16 of %.9g is 0x%04x", l,
                             e[j].name, i, *p, (double)src[i], bf16_from_float(src[i]));
        }
    double gmax = 0, worst = 0;
    int differ = 0;
    for (size_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(gf[i]));
    for (size_t i = 0; i < ng; i++) worst = fmax(worst, fabs(gs[i] - gf[i])), differ |= gs[i] != gf[i];
    printf("vit: %zu gradients, worst |bf16 store - fp32| %.3g of max |g| %.3g; arena %zu -> %zu "
           "bytes\n", ng, worst, gmax, f.acts_arena.used, s.acts_arena.used);
    if (!(worst <= 0x1p-6 * gmax)) fail_msg("vit: gradients moved by %.3g (max %.3g)", worst, gmax);
    if (!differ) fail_msg("vit: the gradients are the fp32 store's bits: is the store read?");
    if (!(s.acts_arena.used < f.acts_arena.used)) fail_msg("vit: the bf16 store saved nothing");
    assert_int_equal(vit_set_activations(&s, (ModelPrecision)7), LSC_ERR);
    free(gf), free(gs);
    vit_attach_lora(&f, NULL), vit_attach_lora(&s, NULL);
    lora_free(&lf), lora_free(&ls);
    vit_free(&f), vit_free(&s);
}

static void test_refusal(void **state) {
    (void)state;
    Llama m;
    const LlamaConfig c = fixture_tiny_config(ROPE_HALF, 0);
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    assert_int_equal(llama_set_activations(&m, (ModelPrecision)7), LSC_ERR);
    assert_non_null(strstr(error_last(), "Unknown activation storage 7"));
    llama_free(&m);
}

int main(void) {
    be = backend_cpu_create(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32_base),
        cmocka_unit_test(test_bf16_base),
        cmocka_unit_test(test_vit),
        cmocka_unit_test(test_refusal),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    be->destroy(be);
    return rc;
}
