/* ViT gradient checks in double precision (built with LORASC_REAL_DOUBLE): every parameter
 * gradient in full mode, and in LoRA and DoRA mode every adapter gradient (q k v o up down;
 * A, B and DoRA's m) plus the head's (trained in full beside the adapters, PEFT's
 * modules_to_save), against central finite differences of the mean loss. Two layouts: HF ViT
 * (exact GELU, patch bias) and CLIP (quick_gelu, LayerNorm before the blocks, no patch bias);
 * the tanh GELU in a third. One image's label is masked out of the loss. */
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
#include "core/model/lora.h"
#include "core/model/vit.h"
#include "kernels/backend.h"
#include "tests/check.h"
#include "tests/fd.h"
#include "tests/model_fixture.h"

enum { B = 3 };
static const double FD_STEP = 1e-6;
static double worst_err; /* max |analytic - numeric| over every check, for the summary */

static ViTConfig tiny_config(GeluKind gelu, int clip) {
    return (ViTConfig){.image_size = 8, .patch_size = 4, .channels = 2, .dim = 8, .n_layers = 2,
                       .n_heads = 2, .mlp_dim = 12, .n_classes = 5, .norm_eps = 1e-5f,
                       .gelu = gelu, .pre_norm = clip, .patch_bias = !clip};
}

/* Weights uniform in [-scale, scale), LayerNorm weights in [0.8, 1.2). */
static void randomize(ViT *m, uint64_t seed, double scale) {
    Real *host = malloc(m->num_params * sizeof(Real));
    Real *p = host;
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        const size_t n = m->param_sizes[i];
        const int norm = i == VIT_LN_PRE_W || i == VIT_LN1_W || i == VIT_LN2_W || i == VIT_LNF_W;
        philox_uniform(p, n, seed, (uint64_t)(200 + i), norm ? 0.8 : -scale, norm ? 1.2 : scale);
        p += n;
    }
    m->be->to_device(m->be, m->params, host, m->num_params * sizeof(Real));
    free(host);
}

typedef struct Batch {
    Real *images;
    int32_t labels[B];
} Batch;

static Batch make_batch(const ViTConfig *c, uint64_t seed) {
    Batch b;
    const size_t n = (size_t)B * c->channels * c->image_size * c->image_size;
    b.images = malloc(n * sizeof(Real));
    philox_uniform(b.images, n, seed, 1, -1.0, 1.0);
    for (int i = 0; i < B; i++) b.labels[i] = (int32_t)(philox_u32(seed, 2, (uint64_t)i) % 5u);
    b.labels[1] = -1; /* masked */
    return b;
}

typedef struct LossCtx {
    ViT *m;
    const Batch *b;
} LossCtx;

static double loss_at(void *p) {
    LossCtx *c = p;
    assert_int_equal(vit_forward(c->m, c->b->images, c->b->labels, B), LSC_OK);
    return c->m->mean_loss;
}

static void finite_differences(ViT *m, Real *params, size_t n, const Batch *b, double *out) {
    LossCtx c = {m, b};
    fd_central(m->be, params, n, FD_STEP, loss_at, &c, out);
}

/* Counts elements out of tolerance; a gradient that is ~0 everywhere also fails (the check would
 * prove nothing), except the key bias's, which is exactly 0: softmax(q.(k + b)) is
 * softmax(q.k) shifted by the row constant q.b. */
static size_t compare(const char *what, const Real *analytic_dev, Backend *be, const double *numeric,
                      size_t n) {
    Real *host = malloc((n ? n : 1) * sizeof(Real));
    double *an = malloc((n ? n : 1) * sizeof(double));
    be->to_host(be, host, analytic_dev, n * sizeof(Real));
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        an[i] = host[i];
        worst_err = fmax(worst_err, fabs(an[i] - numeric[i]));
        mx = fmax(mx, fabs(an[i]));
    }
    size_t bad = check_close_f64(what, an, numeric, n, 1e-8, 1e-6);
    if (n > 4 && mx < 1e-6 && strcmp(what, "bk") != 0) {
        fprintf(stderr, "  %s: every gradient is ~0 (max %.3g): the check would prove nothing\n",
                what, mx);
        bad++;
    }
    free(host);
    free(an);
    return bad;
}

static void check_full_mode(GeluKind gelu, int clip) {
    Backend *be = backend_cpu_create(1);
    ViTConfig c = tiny_config(gelu, clip);
    ViT m;
    assert_int_equal(vit_create(&m, be, &c), LSC_OK);
    randomize(&m, 31 + (uint64_t)gelu + 7 * (uint64_t)clip, 0.5);
    Batch b = make_batch(&c, 9);
    assert_int_equal(vit_enable_full_grads(&m), LSC_OK);
    vit_zero_grad(&m);
    assert_int_equal(vit_forward(&m, b.images, b.labels, B), LSC_OK);
    assert_int_equal(vit_backward(&m), LSC_OK);
    double *numeric = malloc(m.num_params * sizeof(double));
    finite_differences(&m, m.params, m.num_params, &b, numeric);
    size_t bad = 0, offset = 0;
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        bad += compare(vit_param_name(t), m.grads + offset, be, numeric + offset, m.param_sizes[t]);
        offset += m.param_sizes[t];
    }
    free(numeric);
    free(b.images);
    vit_free(&m);
    backend_cpu_destroy(be);
    assert_int_equal(bad, 0);
}

static void check_lora_mode(GeluKind gelu, int clip, int dora) {
    Backend *be = backend_cpu_create(1);
    ViTConfig c = tiny_config(gelu, clip);
    ViT m;
    assert_int_equal(vit_create(&m, be, &c), LSC_OK);
    randomize(&m, 41, 0.5);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&c, in, out);
    const unsigned targets = LORA_BIT(LORA_Q) | LORA_BIT(LORA_K) | LORA_BIT(LORA_V) |
                             LORA_BIT(LORA_O) | LORA_BIT(LORA_UP) | LORA_BIT(LORA_DOWN);
    LoraConfig lc = {.rank = 3, .alpha = 6.0f, .targets = targets, .use_dora = dora};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(&lora, 4, 0.4);
    assert_int_equal(vit_attach_lora(&m, &lora), LSC_OK);
    if (dora) { /* m = ||W + sBA||_row times a random factor, so m / n != 1 */
        assert_true(lora.magnitudes_set);
        for (int l = 0; l < c.n_layers; l++)
            for (int t = 0; t < LORA_NUM_TARGETS; t++) {
                if (!lora_has_magnitude(&lora, t)) continue;
                Real f[64], *mag = lora_magnitude(&lora, l, t);
                philox_uniform(f, (size_t)out[t], 5, (uint64_t)(l * 8 + t), 0.7, 1.3);
                for (int i = 0; i < out[t]; i++) mag[i] *= f[i];
            }
    }
    Batch b = make_batch(&c, 10);
    vit_zero_grad(&m);
    assert_int_equal(vit_forward(&m, b.images, b.labels, B), LSC_OK);
    assert_int_equal(vit_backward(&m), LSC_OK);
    assert_null(m.grads); /* LoRA mode never allocates base gradients */

    size_t bad = 0;
    double *numeric = malloc(lora.num_params * sizeof(double));
    lora.freeze_norms = dora; /* DoRA's norm is detached: hold it fixed (see gradcheck_model) */
    finite_differences(&m, lora.params, lora.num_params, &b, numeric);
    lora.freeze_norms = 0;
    for (int l = 0; l < c.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&lora, t)) continue;
            const size_t a_off = (size_t)(lora_a(&lora, l, t) - lora.params);
            const size_t na = (size_t)lc.rank * (size_t)in[t], nb = (size_t)out[t] * (size_t)lc.rank;
            const size_t off[3] = {a_off, a_off + na, a_off + na + nb};
            const size_t len[3] = {na, nb, dora ? (size_t)out[t] : 0};
            for (int k = 0; k < 3; k++) {
                if (!len[k]) continue;
                char name[64];
                snprintf(name, sizeof name, "layer%d.%s.%c%s", l, lora_target_name(t), "ABm"[k],
                         dora ? " (DoRA)" : "");
                bad += compare(name, lora.grads + off[k], be, numeric + off[k], len[k]);
            }
        }
    free(numeric);
    /* the head, trained in full beside the adapters */
    numeric = malloc(m.head_size * sizeof(double));
    lora.freeze_norms = dora;
    finite_differences(&m, m.head_params, m.head_size, &b, numeric);
    lora.freeze_norms = 0;
    const size_t hw = m.param_sizes[VIT_HEAD_W];
    bad += compare("head_w (LoRA mode)", m.head_grads, be, numeric, hw);
    bad += compare("head_b (LoRA mode)", m.head_grads + hw, be, numeric + hw, m.head_size - hw);
    free(numeric);
    free(b.images);
    lora_free(&lora);
    vit_free(&m);
    backend_cpu_destroy(be);
    assert_int_equal(bad, 0);
}

static void test_full_hf(void **state) {
    (void)state;
    check_full_mode(GELU_ERF, 0);
}
static void test_full_clip(void **state) {
    (void)state;
    check_full_mode(GELU_QUICK, 1);
}
static void test_full_tanh(void **state) {
    (void)state;
    check_full_mode(GELU_TANH, 0);
}
static void test_lora_hf(void **state) {
    (void)state;
    check_lora_mode(GELU_ERF, 0, 0);
}
static void test_lora_clip(void **state) {
    (void)state;
    check_lora_mode(GELU_QUICK, 1, 0);
}
static void test_dora_hf(void **state) {
    (void)state;
    check_lora_mode(GELU_ERF, 0, 1);
}

/* Bad configurations and adapters come back as sentences, not crashes. */
static void test_errors(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    ViTConfig c = tiny_config(GELU_ERF, 0);
    c.patch_size = 3;
    ViT m;
    assert_int_equal(vit_create(&m, be, &c), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    c = tiny_config(GELU_ERF, 0);
    assert_int_equal(vit_create(&m, be, &c), LSC_OK);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&(LlamaConfig){.dim = 8, .hidden_dim = 12, .n_heads = 2, .n_kv_heads = 2},
                      in, out);
    LoraConfig lc = {.rank = 2, .alpha = 2.0f, .targets = LORA_BIT(LORA_GATE) | LORA_BIT(LORA_Q)};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 3), LSC_OK);
    assert_int_equal(vit_attach_lora(&m, &lora), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    assert_null(m.lora);
    lora_free(&lora);
    Batch b = make_batch(&c, 11);
    b.labels[0] = 7;
    assert_int_equal(vit_forward(&m, b.images, b.labels, B), LSC_ERR);
    printf("[ error    ] %s\n", error_last());
    free(b.images);
    vit_free(&m);
    backend_cpu_destroy(be);
}

static int teardown(void **state) {
    (void)state;
    printf("[ summary  ] max |analytic - finite difference| over every ViT gradient: %.3g\n",
           worst_err);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_hf),  cmocka_unit_test(test_full_clip),
        cmocka_unit_test(test_full_tanh), cmocka_unit_test(test_lora_hf),
        cmocka_unit_test(test_lora_clip), cmocka_unit_test(test_dora_hf),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
