/* Hugging Face ViT / CLIP-vision loading (core/formats/vit_hf.h) against the golden files:
 * tests/golden/hf_vit_tiny{,_sharded}/ (ViTForImageClassification) and clip_vit_tiny/
 * (CLIPVisionModel) hold the weights of the vit_tiny / vit_clip scenarios, so the loaded
 * model's logits on the scenario's images must be the scenario's base_logits (CLIP: after
 * the scenario's head is put in, since CLIP has no classifier). Also: new heads (zero and
 * seeded), the grey-image channel fold, model_type "clip" with a vision_config, and
 * malformed directories (each error one sentence naming the file).
 * Not here: the forward itself (test_golden_vit.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/vit.h"
#include "core/formats/safetensors.h"
#include "core/formats/vit_hf.h"
#include "kernels/backend.h"
#include "tests/golden_io.h"

#define LOGITS_ATOL 1e-5
#define LOGITS_RTOL 1e-4

static Backend *be;

typedef struct Ref {
    Golden g;
    const float *images, *logits, *head_w, *head_b;
    int B, C, H, K, D;
} Ref;

static void ref_load(Ref *r, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", LORASC_GOLDEN_DIR, name);
    if (golden_load(&r->g, path) != 0) fail_msg("%s", r->g.error);
    const int32_t *cfg = golden_i32(&r->g, "config", GOLDEN_SHAPE(14));
    assert_non_null(cfg);
    r->H = cfg[0], r->C = cfg[2], r->D = cfg[3], r->K = cfg[7], r->B = cfg[8];
    r->images = golden_f32(&r->g, "images", GOLDEN_SHAPE(r->B, r->C, r->H, r->H));
    r->logits = golden_f32(&r->g, "base_logits", GOLDEN_SHAPE(r->B, r->K));
    r->head_w = golden_f32(&r->g, "head_w", GOLDEN_SHAPE(r->K, r->D));
    r->head_b = golden_f32(&r->g, "head_b", GOLDEN_SHAPE(r->K));
    if (!r->images || !r->logits || !r->head_w || !r->head_b) fail_msg("%s", r->g.error);
}

static Real *host_copy(const Real *dev, size_t n) {
    Real *h = malloc(n * sizeof *h);
    be->to_host(be, h, dev, n * sizeof *h);
    return h;
}

/* Forward on images (float) and the worst |logit - ref| (fails beyond tolerance). */
static double check_logits(const char *what, ViT *m, const float *images, const float *ref, int B,
                           int K) {
    const size_t ni = (size_t)B * m->config.channels * m->config.image_size * m->config.image_size;
    Real *img = malloc(ni * sizeof *img);
    for (size_t i = 0; i < ni; i++) img[i] = (Real)images[i];
    assert_int_equal(vit_forward(m, img, NULL, B), LSC_OK);
    Real *got = host_copy(m->acts.logits, (size_t)B * K);
    double worst = 0;
    size_t bad = 0;
    for (int i = 0; i < B * K; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        worst = fmax(worst, err);
        if (!(err <= LOGITS_ATOL + LOGITS_RTOL * fabs((double)ref[i]))) bad++;
    }
    printf("[ %-22s ] logits max |err| %.3g over %d values\n", what, worst, B * K);
    free(got);
    free(img);
    assert_int_equal(bad, 0);
    return worst;
}

static void put_head(ViT *m, const Ref *r) {
    Real *h = malloc(m->head_size * sizeof *h);
    for (int i = 0; i < r->K * r->D; i++) h[i] = (Real)r->head_w[i];
    for (int i = 0; i < r->K; i++) h[r->K * r->D + i] = (Real)r->head_b[i];
    be->to_device(be, m->w.tensors[VIT_HEAD_W], h, m->head_size * sizeof *h);
    free(h);
}

static void test_hf_vit(void **state) {
    (void)state;
    Ref r = {0};
    ref_load(&r, "vit_tiny");
    const char *dirs[] = {LORASC_GOLDEN_DIR "/hf_vit_tiny", LORASC_GOLDEN_DIR "/hf_vit_tiny_sharded"};
    for (int d = 0; d < 2; d++) {
        ViT m;
        if (vit_hf_load(dirs[d], &m, be, NULL) != LSC_OK) fail_msg("%s", error_last());
        const ViTConfig *c = &m.config;
        assert_int_equal(c->n_classes, 5);
        assert_int_equal(c->gelu, GELU_ERF);
        assert_int_equal(c->patch_bias, 1);
        assert_int_equal(c->pre_norm, 0);
        assert_true(fabs(c->norm_eps - 1e-12f) < 1e-18);
        /* every stored weight exactly as in the scenario (names by core/model/vit.c) */
        for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
            if (!m.param_sizes[t]) continue;
            const GoldenTensor *gt = golden_find(&r.g, vit_param_name(t));
            assert_non_null(gt);
            assert_int_equal(gt->count, m.param_sizes[t]);
            Real *h = host_copy(m.w.tensors[t], m.param_sizes[t]);
            for (size_t i = 0; i < gt->count; i++)
                if (h[i] != (Real)((const float *)gt->data)[i])
                    fail_msg("%s: %s[%zu] differs", dirs[d], vit_param_name(t), i);
            free(h);
        }
        check_logits(d ? "hf_vit_tiny_sharded" : "hf_vit_tiny", &m, r.images, r.logits, r.B, r.K);
        vit_free(&m);
    }
    /* a different label count: a new head, zero (seed 0) or seeded; the rest unchanged */
    ViT m;
    ViTHfOptions o = {.n_classes = 3, .head_seed = 0};
    assert_int_equal(vit_hf_load(dirs[0], &m, be, &o), LSC_OK);
    assert_int_equal(m.config.n_classes, 3);
    Real *h = host_copy(m.w.tensors[VIT_HEAD_W], m.head_size);
    for (size_t i = 0; i < m.head_size; i++) assert_true(h[i] == 0);
    free(h);
    vit_free(&m);
    o.head_seed = 9;
    assert_int_equal(vit_hf_load(dirs[0], &m, be, &o), LSC_OK);
    h = host_copy(m.w.tensors[VIT_HEAD_W], m.head_size);
    double ss = 0;
    for (size_t i = 0; i < m.param_sizes[VIT_HEAD_W]; i++) ss += h[i] * h[i];
    const double sd = sqrt(ss / (double)m.param_sizes[VIT_HEAD_W]);
    assert_true(sd > 0.005 && sd < 0.06);
    for (size_t i = m.param_sizes[VIT_HEAD_W]; i < m.head_size; i++) assert_true(h[i] == 0);
    free(h);
    vit_free(&m);
    /* the checkpoint's classifier kept when n_classes matches */
    o = (ViTHfOptions){.n_classes = 5, .head_seed = 9};
    assert_int_equal(vit_hf_load(dirs[0], &m, be, &o), LSC_OK);
    check_logits("hf_vit_tiny n_classes=5", &m, r.images, r.logits, r.B, r.K);
    vit_free(&m);
    golden_free(&r.g);
}

static void test_clip(void **state) {
    (void)state;
    Ref r = {0};
    ref_load(&r, "vit_clip");
    const char *dir = LORASC_GOLDEN_DIR "/clip_vit_tiny";
    ViT m;
    assert_int_equal(vit_hf_load(dir, &m, be, NULL), LSC_ERR); /* no classifier, no n_classes */
    printf("  expected error: %s\n", error_last());
    assert_non_null(strstr(error_last(), dir));
    ViTHfOptions o = {.n_classes = r.K};
    if (vit_hf_load(dir, &m, be, &o) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(m.config.gelu, GELU_QUICK);
    assert_int_equal(m.config.pre_norm, 1);
    assert_int_equal(m.config.patch_bias, 0);
    Real *h = host_copy(m.w.tensors[VIT_HEAD_W], m.head_size);
    for (size_t i = 0; i < m.head_size; i++) assert_true(h[i] == 0);
    free(h);
    put_head(&m, &r);
    check_logits("clip_vit_tiny", &m, r.images, r.logits, r.B, r.K);

    /* grey images: the folded 1-channel model equals the 3-channel one on the image copied
     * into every channel */
    const size_t HW = (size_t)r.H * r.H;
    float *grey = malloc((size_t)r.B * HW * sizeof *grey);
    float *rgb = malloc((size_t)r.B * 3 * HW * sizeof *rgb);
    for (int b = 0; b < r.B; b++)
        for (size_t i = 0; i < HW; i++) {
            grey[b * HW + i] = r.images[(size_t)b * 3 * HW + i];
            for (int ch = 0; ch < 3; ch++) rgb[((size_t)b * 3 + ch) * HW + i] = grey[b * HW + i];
        }
    Real *img = malloc((size_t)r.B * 3 * HW * sizeof *img);
    for (size_t i = 0; i < (size_t)r.B * 3 * HW; i++) img[i] = (Real)rgb[i];
    assert_int_equal(vit_forward(&m, img, NULL, r.B), LSC_OK);
    Real *want = host_copy(m.acts.logits, (size_t)r.B * r.K);
    float *wantf = malloc((size_t)r.B * r.K * sizeof *wantf);
    for (int i = 0; i < r.B * r.K; i++) wantf[i] = (float)want[i];
    vit_free(&m);
    ViT g;
    o.channels = 1;
    if (vit_hf_load(dir, &g, be, &o) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(g.config.channels, 1);
    put_head(&g, &r);
    check_logits("clip grey fold", &g, grey, wantf, r.B, r.K);
    vit_free(&g);
    free(grey), free(rgb), free(img), free(want), free(wantf);
    golden_free(&r.g);
}

/* ---- a scratch directory: a config.json written by the test, model.safetensors linked */
static char tmpdir[64];

static void scratch(const char *src_dir, const char *config) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lorasc_vithf_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char p[512], target[1024];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);
    if (src_dir) {
        snprintf(target, sizeof target, "%s/model.safetensors", src_dir);
        char *abs = realpath(target, NULL);
        assert_non_null(abs);
        snprintf(target, sizeof target, "%s", abs);
        free(abs);
        snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
        assert_int_equal(symlink(target, p), 0);
    }
}

static void scratch_rm(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    unlink(p);
    rmdir(tmpdir);
}

#define VIT_CFG_HEAD                                                                           \
    "{\"model_type\": \"vit\", \"intermediate_size\": 32, "                                \
    "\"num_attention_heads\": 2, \"num_channels\": 3, \"patch_size\": 4, "                  \
    "\"layer_norm_eps\": 1e-12, \"id2label\": {\"0\":\"a\",\"1\":\"b\",\"2\":\"c\",\"3\":\"d\",\"4\":\"e\"}"

/* Loads a scratch directory expecting an error that names tmpdir and contains `needle`. */
static void expect_error(const char *src_dir, const char *config, int n_classes, const char *needle) {
    scratch(src_dir, config);
    ViT m;
    ViTHfOptions o = {.n_classes = n_classes};
    const int rc = vit_hf_load(tmpdir, &m, be, &o);
    if (rc == LSC_OK) {
        vit_free(&m);
        scratch_rm();
        fail_msg("loading %s succeeded; expected an error about %s", config, needle);
    }
    const char *e = error_last();
    printf("  expected error: %s\n", e);
    const int ok = strstr(e, tmpdir) != NULL && strstr(e, needle) != NULL;
    scratch_rm();
    if (!ok) fail_msg("the error should name %s and mention \"%s\"", tmpdir, needle);
}

static void test_malformed(void **state) {
    (void)state;
    const char *vit_dir = LORASC_GOLDEN_DIR "/hf_vit_tiny", *clip_dir = LORASC_GOLDEN_DIR "/clip_vit_tiny";
    /* control: the scratch config with the real weights loads */
    scratch(vit_dir, VIT_CFG_HEAD ", \"hidden_size\": 16, \"image_size\": 8, \"num_hidden_layers\": 2}");
    ViT m;
    if (vit_hf_load(tmpdir, &m, be, NULL) != LSC_OK) fail_msg("%s", error_last());
    vit_free(&m);
    scratch_rm();
    expect_error(vit_dir, "{\"model_type\": \"vit\", ", 0, "config.json");           /* bad JSON */
    expect_error(vit_dir, "[1, 2]", 0, "config.json");                                /* not an object */
    expect_error(vit_dir, "{\"hidden_size\": 16}", 0, "model_type");
    expect_error(vit_dir, "{\"model_type\": \"bert\"}", 0, "bert");
    expect_error(vit_dir, VIT_CFG_HEAD ", \"hidden_size\": 16, \"image_size\": 8, \"num_hidden_layers\": 2, \"hidden_act\": \"relu\"}", 0,
                 "relu");
    expect_error(vit_dir, VIT_CFG_HEAD ", \"image_size\": 8, \"num_hidden_layers\": 2, \"hidden_size\": -4}", 0,
                 "hidden_size");
    /* shape vs config: hidden_size 32 disagrees with the stored tensors */
    expect_error(vit_dir, VIT_CFG_HEAD ", \"image_size\": 8, \"num_hidden_layers\": 2, \"hidden_size\": 32}",
                 0, "the config implies");
    /* a missing tensor: the config asks for a third layer */
    expect_error(vit_dir, VIT_CFG_HEAD ", \"hidden_size\": 16, \"image_size\": 8, \"num_hidden_layers\": 3}", 0, "vit.encoder.layer.2.");
    /* id2label of 3 labels against a 5-row classifier */
    expect_error(vit_dir, "{\"model_type\": \"vit\", \"hidden_size\": 16, \"intermediate_size\": 32, "
                          "\"num_attention_heads\": 2, \"num_hidden_layers\": 2, \"image_size\": 8, "
                          "\"patch_size\": 4, \"id2label\": {\"0\":\"a\",\"1\":\"b\",\"2\":\"c\"}}",
                 0, "classifier.weight");
    expect_error(vit_dir, VIT_CFG_HEAD ", \"hidden_size\": 16, \"num_hidden_layers\": 2, \"image_size\": 10}", 0,
                 "patch_size");
    expect_error(vit_dir, "{\"model_type\": \"clip\"}", 4, "vision_config");
    expect_error(NULL, VIT_CFG_HEAD ", \"hidden_size\": 16, \"image_size\": 8, \"num_hidden_layers\": 2}", 0, "model.safetensors"); /* no weights */
    /* a ViT checkpoint read as CLIP: its tensor names are not CLIP's */
    expect_error(vit_dir, "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 16, "
                          "\"intermediate_size\": 32, \"num_attention_heads\": 2, "
                          "\"num_hidden_layers\": 2, \"image_size\": 8, \"patch_size\": 4}", 5,
                 "vision_model.");
    /* a missing directory */
    assert_int_equal(vit_hf_load("/nonexistent/lorasc_vit", &m, be, NULL), LSC_ERR);
    assert_non_null(strstr(error_last(), "/nonexistent/lorasc_vit/config.json"));
    /* model_type "clip": the vision_config of a full CLIP config.json */
    scratch(clip_dir, "{\"model_type\": \"clip\", \"projection_dim\": 8, \"text_config\": {}, "
                      "\"vision_config\": {\"hidden_size\": 16, \"intermediate_size\": 32, "
                      "\"num_attention_heads\": 2, \"num_hidden_layers\": 2, \"image_size\": 8, "
                      "\"patch_size\": 4, \"model_type\": \"clip_vision_model\"}}");
    ViTHfOptions o = {.n_classes = 5};
    Ref r = {0};
    ref_load(&r, "vit_clip");
    const int rc = vit_hf_load(tmpdir, &m, be, &o);
    scratch_rm();
    if (rc != LSC_OK) fail_msg("%s", error_last());
    put_head(&m, &r);
    check_logits("clip (full CLIP config)", &m, r.images, r.logits, r.B, r.K);
    vit_free(&m);
    golden_free(&r.g);
    /* channel fold only 3 -> 1 */
    o = (ViTHfOptions){.n_classes = 5, .channels = 2};
    assert_int_equal(vit_hf_load(clip_dir, &m, be, &o), LSC_ERR);
    assert_non_null(strstr(error_last(), clip_dir));
}

/* vit_hf_read_processor on a scratch ViT directory (image size 8) with this processor file
 * (NULL: none) */
static int processor(const char *file, ViTHfProcessor *p) {
    scratch(NULL, VIT_CFG_HEAD ", \"hidden_size\": 16, \"image_size\": 8, \"num_hidden_layers\": 2}");
    char path[512];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", tmpdir);
    if (file) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(file, f);
        fclose(f);
    }
    const int rc = vit_hf_read_processor(tmpdir, p);
    unlink(path);
    scratch_rm();
    return rc;
}

#define EXPECT_RESIZE(p, r, e, h, w, c)                                                         \
    do {                                                                                        \
        assert_int_equal((p).resample, r);                                                      \
        assert_int_equal((p).shortest_edge, e);                                                 \
        assert_int_equal((p).height, h);                                                        \
        assert_int_equal((p).width, w);                                                         \
        assert_int_equal((p).crop, c);                                                          \
    } while (0)

/* How a checkpoint's images are prepared (vit_hf_read_processor): the file's statistics as
 * lists or numbers, do_normalize false, its size / resample / crop as CLIP's and ViT's
 * processors read them (int or dict sizes), the class defaults without the file (a CLIP tower:
 * OpenAI CLIP's statistics, bicubic shorter side and crop; a ViT: 0.5 / 0.5, bilinear to the
 * image size), and one sentence for what lorasc cannot follow. */
static void test_processor(void **state) {
    (void)state;
    ViTHfProcessor p;
    assert_int_equal(vit_hf_read_processor(LORASC_GOLDEN_DIR "/clip_vit_tiny", &p), LSC_OK);
    assert_int_equal(p.from_file, 0);
    const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (int c = 0; c < 3; c++) assert_true(p.mean[c] == clip_mean[c] && p.std[c] == clip_std[c]);
    EXPECT_RESIZE(p, 3, 8, 0, 0, 8);
    assert_int_equal(processor(NULL, &p), LSC_OK);
    assert_int_equal(p.from_file, 0);
    for (int c = 0; c < 3; c++) assert_true(p.mean[c] == 0.5f && p.std[c] == 0.5f);
    EXPECT_RESIZE(p, 2, 0, 8, 8, 0);
    assert_int_equal(processor("{\"image_mean\": [0.485, 0.456, 0.406], \"image_std\": 0.25, "
                               "\"image_processor_type\": \"ViTImageProcessor\", \"size\": 10}", &p), LSC_OK);
    assert_int_equal(p.from_file, 1);
    assert_true(p.mean[0] == 0.485f && p.mean[1] == 0.456f && p.mean[2] == 0.406f);
    for (int c = 0; c < 3; c++) assert_true(p.std[c] == 0.25f);
    EXPECT_RESIZE(p, 2, 0, 10, 10, 0);
    assert_int_equal(processor("{\"image_mean\": [0.1, 0.2, 0.3], \"do_normalize\": false}", &p), LSC_OK);
    for (int c = 0; c < 3; c++) assert_true(p.mean[c] == 0 && p.std[c] == 1);
    /* a CLIP processor file on this ViT: CLIP's class, its sizes (an old int size is the edge) */
    assert_int_equal(processor("{\"feature_extractor_type\": \"CLIPFeatureExtractor\", \"size\": 12, "
                               "\"crop_size\": 9, \"resample\": 3}", &p), LSC_OK);
    for (int c = 0; c < 3; c++) assert_true(p.mean[c] == clip_mean[c]);
    EXPECT_RESIZE(p, 3, 12, 0, 0, 9);
    assert_int_equal(processor("{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 11}, "
                               "\"crop_size\": {\"height\": 10, \"width\": 10}, \"resample\": 2}", &p), LSC_OK);
    EXPECT_RESIZE(p, 2, 11, 0, 0, 10);
    assert_int_equal(processor("{\"image_processor_type\": \"ViTImageProcessor\", \"size\": {\"height\": 9, \"width\": 9}, "
                               "\"do_center_crop\": true, \"crop_size\": 8}", &p), LSC_OK);
    EXPECT_RESIZE(p, 2, 0, 9, 9, 8);
    const char *bad[8][2] = {
        {"{\"image_mean\": [0.5, 0.5]}", "image_mean must be a number or a list of 3"},
        {"{\"image_std\": [0.5, \"x\", 0.5]}", "image_std[1] is not a number"},
        {"{\"image_std\": [0.5, 0, 0.5]}", "image_std[1] must be > 0"},
        {"{\"resample\": 1}", "resample must be 2 (bilinear) or 3 (bicubic)"},
        {"{\"do_resize\": false}", "do_resize is false"},
        {"{\"size\": {\"longest_edge\": 9}}", "size must be a positive integer"},
        {"{\"size\": {\"height\": 9, \"width\": 7}}", "9 x 7 without a centre crop"},
        {"{\"do_center_crop\": true, \"crop_size\": {\"height\": 4, \"width\": 5}}", "crop_size 4 x 5 is not square"},
    };
    for (int k = 0; k < 8; k++) {
        assert_int_equal(processor(bad[k][0], &p), LSC_ERR);
        if (!strstr(error_last(), bad[k][1]) || !strstr(error_last(), "preprocessor_config.json"))
            fail_msg("%s: error '%s' lacks '%s'", bad[k][0], error_last(), bad[k][1]);
    }
}

/* A head file (vit_head_read): weight and bias read, no bias = zeros, bf16 stored; a missing
 * weight, a 1-d weight, another class count and a bias of another length refused with the
 * file's name. */
static void test_head_file(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "/tmp/lorasc_head_%d.safetensors", (int)getpid());
    const float w[6] = {1, -2, 3.5f, 0.25f, -0.125f, 8}, b[2] = {0.5f, -1};
    Real head[8];
    StWriteEntry e[2] = {{"weight", 2, {2, 3}, w}, {"bias", 1, {2}, b}};
    assert_int_equal(safetensors_write(path, e, 2, ST_F32, NULL), LSC_OK);
    assert_int_equal(vit_head_read(path, 2, 3, head), LSC_OK);
    for (int i = 0; i < 6; i++) assert_true(head[i] == w[i]);
    assert_true(head[6] == 0.5f && head[7] == -1);
    assert_int_equal(vit_head_read(path, 2, 3, NULL), LSC_OK); /* the checks only */
    assert_int_equal(vit_head_read(path, 3, 2, NULL), LSC_ERR);
    assert_int_equal(safetensors_write(path, e, 1, ST_BF16, NULL), LSC_OK); /* no bias; bf16 */
    assert_int_equal(vit_head_read(path, 2, 3, head), LSC_OK);
    for (int i = 0; i < 6; i++) assert_true(head[i] == w[i]); /* exact in bf16 */
    assert_true(head[6] == 0 && head[7] == 0);
    const struct { StWriteEntry e; int K, D; const char *needle; } bad[4] = {
        {{"classifier", 2, {2, 3}, w}, 2, 3, "holds no tensor \"weight\""},
        {{"weight", 1, {6}, w}, 2, 3, "the head's weight has 1 dimensions"},
        {{"weight", 2, {2, 3}, w}, 3, 2, "the head's weight is [2, 3], the task needs [3, 2]"},
        {{"weight", 2, {3, 2}, w}, 2, 3, "the head's weight is [3, 2], the task needs [2, 3]"},
    };
    for (int k = 0; k < 4; k++) {
        assert_int_equal(safetensors_write(path, &bad[k].e, 1, ST_F32, NULL), LSC_OK);
        assert_int_equal(vit_head_read(path, bad[k].K, bad[k].D, head), LSC_ERR);
        if (!strstr(error_last(), bad[k].needle) || !strstr(error_last(), path))
            fail_msg("error '%s' lacks '%s'", error_last(), bad[k].needle);
    }
    StWriteEntry short_bias[2] = {{"weight", 2, {2, 3}, w}, {"bias", 1, {1}, b}};
    assert_int_equal(safetensors_write(path, short_bias, 2, ST_F32, NULL), LSC_OK);
    assert_int_equal(vit_head_read(path, 2, 3, head), LSC_ERR);
    assert_non_null(strstr(error_last(), "the head's bias must be [2]"));
    unlink(path);
}

static int group_setup(void **state) {
    (void)state;
    be = backend_cpu_create(0);
    return be ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    backend_cpu_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_vit),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_processor),
        cmocka_unit_test(test_head_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
