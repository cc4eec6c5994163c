/* PyTorch parity for the ViT (core/model/vit.h) against tests/golden/vit_*.bin from
 * tests/reference/make_golden.py: HF ViT layout (vit_tiny) and CLIP's (vit_clip). For each:
 * base logits, loss and every weight gradient (full training); LoRA logits, loss, every
 * adapter gradient and the head's (trained in full beside the adapters); merge exactness
 * (merged logits = the LoRA model's, unmerge restores the weights).
 * Not here: finite differences (test_gradcheck_vit.c), kernel checks (test_ops.c). */
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
#include "tests/golden_io.h"

static const char *const TARGET_NAMES[LORA_NUM_TARGETS] = GOLDEN_TARGET_NAMES;

enum { CFG_IMAGE, CFG_PATCH, CFG_CHANS, CFG_D, CFG_L, CFG_NH, CFG_M, CFG_K, CFG_B, CFG_RANK,
       CFG_TARGETS, CFG_GELU, CFG_PRE_NORM, CFG_PATCH_BIAS, CFG_COUNT };

typedef struct Scenario {
    const char *name;
    Golden g;
    Backend *be;
    ViTConfig c;
    int B, rank;
    unsigned targets;
    float alpha;
    Real *images;            /* host [B, C, H, W] */
    const int32_t *labels;   /* [B] */
    double worst_logit, worst_grad; /* worst |err| / tol seen */
} Scenario;

/* The tensor `name` with exactly n f32 elements, or a failed test naming the problem. */
static const float *need(Scenario *s, const char *name, size_t n) {
    const GoldenTensor *t = golden_find(&s->g, name);
    if (!t) fail_msg("%s: %s", s->name, s->g.error);
    if (t->dtype != GOLDEN_F32 || t->count != n)
        fail_msg("%s: golden tensor %s has %zu elements (dtype %d), expected %zu f32", s->name,
                 name, t->count, (int)t->dtype, n);
    return t->data;
}

static void upload(Backend *be, Real *dst, const float *src, size_t n) {
    Real *tmp = malloc((n ? n : 1) * sizeof *tmp);
    for (size_t i = 0; i < n; i++) tmp[i] = (Real)src[i];
    be->to_device(be, dst, tmp, n * sizeof *tmp);
    free(tmp);
}

/* Compares device data with the golden tensor `ref_name`; returns the elements out of
 * tolerance and prints the worst error. */
static size_t compare(Scenario *s, const char *what, const Real *got_dev, const char *ref_name,
                      size_t n, double atol, double rtol) {
    const float *ref = need(s, ref_name, n);
    Real *got = malloc((n ? n : 1) * sizeof(Real));
    s->be->to_host(s->be, got, got_dev, n * sizeof(Real));
    double worst = 0, ratio = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        worst = fmax(worst, err);
        ratio = fmax(ratio, err / (atol + rtol * fabs(ref[i])));
    }
    double *slot = atol == GOLDEN_LOGITS_ATOL ? &s->worst_logit : &s->worst_grad;
    *slot = fmax(*slot, ratio);
    size_t bad = check_close_real(what, got, ref, n, atol, rtol);
    printf("[ %-8s ] %-24s max |err| %.3g (err/tol %.3g)%s\n", s->name, what, worst, ratio,
           bad ? "  FAIL" : "");
    free(got);
    return bad;
}

static int setup_scenario(Scenario *s) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.bin", LORASC_GOLDEN_DIR, s->name);
    if (golden_load(&s->g, path) != 0) {
        fprintf(stderr, "%s\n", s->g.error);
        return -1;
    }
    const int32_t *cfg = golden_i32(&s->g, "config", GOLDEN_SHAPE(CFG_COUNT));
    const float *cfgf = golden_f32(&s->g, "config_f", GOLDEN_SHAPE(2));
    if (!cfg || !cfgf) {
        fprintf(stderr, "%s\n", s->g.error);
        return -1;
    }
    s->c = (ViTConfig){.image_size = cfg[CFG_IMAGE], .patch_size = cfg[CFG_PATCH],
                       .channels = cfg[CFG_CHANS], .dim = cfg[CFG_D], .n_layers = cfg[CFG_L],
                       .n_heads = cfg[CFG_NH], .mlp_dim = cfg[CFG_M], .n_classes = cfg[CFG_K],
                       .norm_eps = cfgf[0], .gelu = (GeluKind)cfg[CFG_GELU],
                       .pre_norm = cfg[CFG_PRE_NORM], .patch_bias = cfg[CFG_PATCH_BIAS]};
    s->B = cfg[CFG_B];
    s->rank = cfg[CFG_RANK];
    s->targets = (unsigned)cfg[CFG_TARGETS];
    s->alpha = cfgf[1];
    const size_t ni = (size_t)s->B * s->c.channels * s->c.image_size * s->c.image_size;
    const float *img = golden_f32(&s->g, "images", GOLDEN_SHAPE(s->B, s->c.channels,
                                                                s->c.image_size, s->c.image_size));
    s->labels = golden_i32(&s->g, "labels", GOLDEN_SHAPE(s->B));
    if (!img || !s->labels) {
        fprintf(stderr, "%s\n", s->g.error);
        return -1;
    }
    s->images = malloc(ni * sizeof(Real));
    for (size_t i = 0; i < ni; i++) s->images[i] = (Real)img[i];
    s->be = backend_cpu_create(0);
    return s->be ? 0 : -1;
}

static int setup(void **state) { return setup_scenario(*state); }

static int teardown(void **state) {
    Scenario *s = *state;
    printf("[ %-8s ] worst err/tol: logits %.3g, gradients %.3g\n", s->name, s->worst_logit,
           s->worst_grad);
    golden_free(&s->g);
    free(s->images);
    if (s->be) backend_cpu_destroy(s->be);
    return 0;
}

/* A model holding the golden weights (loaded by their core/model/vit.c names). */
static void load_model(Scenario *s, ViT *m) {
    assert_int_equal(vit_create(m, s->be, &s->c), LSC_OK);
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++)
        if (m->param_sizes[i])
            upload(s->be, m->w.tensors[i], need(s, vit_param_name(i), m->param_sizes[i]),
                   m->param_sizes[i]);
}

static size_t check_loss(Scenario *s, const ViT *m, const char *name) {
    const float *ref = need(s, name, 1);
    const double tol = GOLDEN_LOGITS_ATOL + GOLDEN_LOGITS_RTOL * fabs((double)ref[0]);
    const double err = fabs(m->mean_loss - ref[0]);
    printf("[ %-8s ] %-24s %.7f vs %.7f (|err| %.3g)\n", s->name, name, m->mean_loss,
           (double)ref[0], err);
    return err > tol;
}

static void test_full(void **state) {
    Scenario *s = *state;
    ViT m;
    load_model(s, &m);
    assert_int_equal(vit_enable_full_grads(&m), LSC_OK);
    vit_zero_grad(&m);
    assert_int_equal(vit_forward(&m, s->images, s->labels, s->B), LSC_OK);
    size_t bad = compare(s, "base_logits", m.acts.logits, "base_logits",
                         (size_t)s->B * s->c.n_classes, GOLDEN_LOGITS_ATOL, GOLDEN_LOGITS_RTOL);
    bad += check_loss(s, &m, "base_loss");
    assert_int_equal(vit_backward(&m), LSC_OK);
    for (int i = 0; i < VIT_NUM_PARAM_TENSORS; i++) {
        if (!m.param_sizes[i]) continue;
        char name[64];
        snprintf(name, sizeof name, "full_grad.%s", vit_param_name(i));
        bad += compare(s, name, m.dw.tensors[i], name, m.param_sizes[i], GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
    }
    vit_free(&m);
    assert_int_equal(bad, 0);
}

/* The scenario's model with LoRA adapters attached that carry the golden A and B (stacked
 * [L, ...] in the file). */
static void load_lora_model(Scenario *s, ViT *m, LoraAdapters *lora) {
    load_model(s, m);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&s->c, in, out);
    LoraConfig lc = {.rank = s->rank, .alpha = s->alpha, .targets = s->targets};
    assert_int_equal(lora_create(lora, s->be, &lc, s->c.n_layers, in, out, 1), LSC_OK);
    const int L = s->c.n_layers;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(lora, t)) continue;
        char name[64];
        const size_t na = (size_t)s->rank * in[t], nb = (size_t)out[t] * s->rank;
        snprintf(name, sizeof name, "lora.%s.A", TARGET_NAMES[t]);
        const float *a = need(s, name, (size_t)L * na);
        snprintf(name, sizeof name, "lora.%s.B", TARGET_NAMES[t]);
        const float *b = need(s, name, (size_t)L * nb);
        for (int l = 0; l < L; l++) {
            upload(s->be, lora_a(lora, l, t), a + (size_t)l * na, na);
            upload(s->be, lora_b(lora, l, t), b + (size_t)l * nb, nb);
        }
    }
    assert_int_equal(vit_attach_lora(m, lora), LSC_OK);
}

static void test_lora(void **state) {
    Scenario *s = *state;
    ViT m;
    LoraAdapters lora;
    load_lora_model(s, &m, &lora);
    vit_zero_grad(&m);
    assert_int_equal(vit_forward(&m, s->images, s->labels, s->B), LSC_OK);
    size_t bad = compare(s, "logits", m.acts.logits, "logits", (size_t)s->B * s->c.n_classes,
                         GOLDEN_LOGITS_ATOL, GOLDEN_LOGITS_RTOL);
    bad += check_loss(s, &m, "loss");
    assert_int_equal(vit_backward(&m), LSC_OK);
    assert_null(m.grads);
    const int L = s->c.n_layers;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(&lora, t)) continue;
        const size_t na = (size_t)s->rank * lora.in_dim[t], nb = (size_t)lora.out_dim[t] * s->rank;
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "lora_grad.%s.%c", TARGET_NAMES[t], "AB"[k]);
            const size_t n = k ? nb : na;
            const float *ref = need(s, name, (size_t)L * n);
            Real *got = malloc((size_t)L * n * sizeof(Real));
            for (int l = 0; l < L; l++)
                s->be->to_host(s->be, got + (size_t)l * n,
                               k ? lora_db(&lora, l, t) : lora_da(&lora, l, t), n * sizeof(Real));
            size_t b = check_close_real(name, got, ref, (size_t)L * n, GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
            double worst = 0, ratio = 0;
            for (size_t i = 0; i < (size_t)L * n; i++) {
                const double err = fabs(got[i] - ref[i]);
                worst = fmax(worst, err);
                ratio = fmax(ratio, err / (GOLDEN_GRAD_ATOL + GOLDEN_GRAD_RTOL * fabs(ref[i])));
            }
            printf("[ %-8s ] %-24s max |err| %.3g (err/tol %.3g)%s\n", s->name, name, worst, ratio,
                   b ? "  FAIL" : "");
            s->worst_grad = fmax(s->worst_grad, ratio);
            bad += b;
            free(got);
        }
    }
    const size_t hw = m.param_sizes[VIT_HEAD_W];
    bad += compare(s, "head_grad.head_w", m.head_grads, "head_grad.head_w", hw, GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
    bad += compare(s, "head_grad.head_b", m.head_grads + hw, "head_grad.head_b",
                   m.param_sizes[VIT_HEAD_B], GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
    lora_free(&lora);
    vit_free(&m);
    assert_int_equal(bad, 0);
}

/* Merged: W + s B A in the base, no adapter at run time; the logits must be the LoRA model's
 * (the golden "logits"), and unmerging must give back the golden weights. */
static void test_merge(void **state) {
    Scenario *s = *state;
    ViT m;
    LoraAdapters lora;
    load_lora_model(s, &m, &lora);
    const size_t nl = (size_t)s->B * s->c.n_classes;
    assert_int_equal(vit_forward(&m, s->images, NULL, s->B), LSC_OK);
    Real *unmerged = malloc(nl * sizeof(Real));
    s->be->to_host(s->be, unmerged, m.acts.logits, nl * sizeof(Real));
    vit_merge_lora(&m, 1.0f);
    assert_int_equal(vit_forward(&m, s->images, NULL, s->B), LSC_OK);
    size_t bad = compare(s, "merged logits", m.acts.logits, "logits", nl, GOLDEN_LOGITS_ATOL, GOLDEN_LOGITS_RTOL);
    Real *merged = malloc(nl * sizeof(Real));
    s->be->to_host(s->be, merged, m.acts.logits, nl * sizeof(Real));
    double diff = 0;
    for (size_t i = 0; i < nl; i++) diff = fmax(diff, fabs(merged[i] - unmerged[i]));
    printf("[ %-8s ] merged vs adapter logits   max |diff| %.3g\n", s->name, diff);
    bad += diff > 1e-5;
    vit_merge_lora(&m, -1.0f);
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(&lora, t)) continue;
        static const int tensor_of[LORA_NUM_TARGETS] = {VIT_WQ, VIT_WK, VIT_WV, VIT_WO, -1, VIT_W1,
                                                        VIT_W2};
        const int ti = tensor_of[t];
        char what[64];
        snprintf(what, sizeof what, "unmerged %s", vit_param_name(ti));
        bad += compare(s, what, m.w.tensors[ti], vit_param_name(ti), m.param_sizes[ti], 1e-6, 1e-5);
    }
    free(unmerged);
    free(merged);
    lora_free(&lora);
    vit_free(&m);
    assert_int_equal(bad, 0);
}

static Scenario tiny = {.name = "vit_tiny"};
static Scenario clip = {.name = "vit_clip"};

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_full, setup, teardown, &tiny),
        cmocka_unit_test_prestate_setup_teardown(test_lora, setup, teardown, &tiny),
        cmocka_unit_test_prestate_setup_teardown(test_merge, setup, teardown, &tiny),
        cmocka_unit_test_prestate_setup_teardown(test_full, setup, teardown, &clip),
        cmocka_unit_test_prestate_setup_teardown(test_lora, setup, teardown, &clip),
        cmocka_unit_test_prestate_setup_teardown(test_merge, setup, teardown, &clip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
