/* Every method lowers the training loss on a small real task, and LoRA+ gives B its
 * learning rate. The task: next-byte prediction on the Apache licence (Debian's base-files),
 * starting from a byte-level Llama briefly pretrained on the GPL in this test. */
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
#include "core/model/finetune.h"
#include "tests/model_fixture.h"

enum { B = 8, T = 64, PRETRAIN_STEPS = 150, FINETUNE_STEPS = 60 };

typedef struct Text {
    unsigned char *bytes;
    size_t n;
} Text;

static Text read_text(const char *path) {
    Text t = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return t;
    fseek(f, 0, SEEK_END);
    t.n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    t.bytes = malloc(t.n);
    if (fread(t.bytes, 1, t.n, f) != t.n) t.n = 0;
    fclose(f);
    return t;
}

typedef struct Task {
    Text text;
} Task;

static int text_batch(void *ctx, long step, int32_t *tokens, int32_t *targets) {
    const Task *task = ctx;
    for (int b = 0; b < B; b++) {
        const size_t start = philox_u32(3, (uint64_t)step, (uint64_t)b) % (task->text.n - T - 1);
        for (int i = 0; i < T; i++) {
            tokens[b * T + i] = task->text.bytes[start + (size_t)i];
            targets[b * T + i] = task->text.bytes[start + (size_t)i + 1];
        }
    }
    return LSC_OK;
}

static Backend *be;
static Llama pretrained;

static int pretrain(void **state) {
    (void)state;
    Task gpl = {.text = read_text("/usr/share/common-licenses/GPL-3")};
    if (!gpl.text.n) return -1;
    be = backend_cpu_create(0);
    const LlamaConfig c = {.dim = 64, .hidden_dim = 172, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                           .vocab_size = 256, .seq_len = T, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                           .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED};
    if (llama_create(&pretrained, be, &c) != LSC_OK || llama_enable_full_grads(&pretrained) != LSC_OK) return -1;
    llama_init_random(&pretrained, 1);
    ParamGroup g;
    AdamW opt;
    train_param_groups(&pretrained, 0.0f, &g);
    AdamWConfig oc = adamw_default_config();
    if (adamw_create(&opt, be, &oc, &g, 1) != LSC_OK) return -1;
    int32_t tokens[B * T], targets[B * T];
    for (long s = 0; s < PRETRAIN_STEPS; s++) {
        text_batch(&gpl, s, tokens, targets);
        if (train_step(&pretrained, &opt, tokens, targets, B, T, 3e-3f, NULL) != LSC_OK) return -1;
    }
    adamw_free(&opt);
    be->free(be, pretrained.grads); /* freeze the base from here on */
    pretrained.grads = NULL;
    free(gpl.text.bytes);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    llama_free(&pretrained);
    backend_cpu_destroy(be);
    return 0;
}

/* Mean loss over 8 fixed batches of the training text (batch indices past the run's). */
static double train_set_loss(Llama *m, Task *task) {
    int32_t tokens[B * T], targets[B * T];
    double sum = 0;
    for (long i = 0; i < 8; i++) {
        text_batch(task, 100000 + i, tokens, targets);
        assert_int_equal(llama_forward(m, tokens, targets, B, T), LSC_OK);
        sum += m->mean_loss / 8;
    }
    return sum;
}

/* Fine-tunes a copy of the pretrained model with `method`; returns the training-set loss
 * before and after (after = the merged model the cascade leaves). */
static void finetune_method(const char *method, float lora_plus_ratio, int use_dora, double *first,
                            double *last) {
    Llama m;
    assert_int_equal(llama_create(&m, be, &pretrained.config), LSC_OK);
    be->copy(be, m.params, pretrained.params, m.num_params * sizeof(Real));
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&m.config, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16, .targets = LORA_DEFAULT_TARGETS, .use_dora = use_dora};
    LoraAdapters fast;
    assert_int_equal(lora_create(&fast, be, &lc, m.config.n_layers, in, out, 7), LSC_OK);
    FinetuneConfig cfg = {.total_steps = FINETUNE_STEPS, .batch = B, .seq = T,
                          .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 5e-3f, .warmup_steps = 6},
                          .adamw = adamw_default_config(), .lora_plus_ratio = lora_plus_ratio, .seed = 11};
    assert_int_equal(cascade_preset(method, &cfg.cascade), LSC_OK);
    if (strcmp(method, "cascade") == 0 || strcmp(method, "lorasc") == 0) cfg.cascade.n_experts = 3;
    if (strcmp(method, "relora") == 0) cfg.cascade.steps_per_expert = 20;
    Task task = {.text = read_text("/usr/share/common-licenses/Apache-2.0")};
    assert_true(task.text.n > 1000);
    const FinetuneCallbacks cb = {.batch = text_batch, .ctx = &task};
    *first = train_set_loss(&m, &task);
    if (finetune_run(&m, &fast, &cfg, &cb) != LSC_OK) fail_msg("%s: %s", method, error_last());
    llama_attach_lora(&m, NULL); /* the learned update now lives in the base weights */
    *last = train_set_loss(&m, &task);
    printf("%-8s%s%s loss %.4f -> %.4f\n", method, lora_plus_ratio != 1 ? "+" : " ",
           use_dora ? " (DoRA)" : "       ", *first, *last);
    free(task.text.bytes);
    lora_free(&fast);
    llama_free(&m);
}

static void test_every_method_learns(void **state) {
    (void)state;
    const char *methods[] = {"lora", "cascade", "lorasc", "cola", "relora"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        double first, last;
        finetune_method(methods[i], 1.0f, 0, &first, &last);
        assert_true(last < first - 0.02);
    }
    double first, last;
    finetune_method("lora", 16.0f, 0, &first, &last); /* LoRA+ */
    assert_true(last < first - 0.02);
    finetune_method("lora", 1.0f, 1, &first, &last); /* DoRA */
    assert_true(last < first - 0.02);
    finetune_method("lorasc", 1.0f, 1, &first, &last); /* LoRASC wrapping DoRA */
    assert_true(last < first - 0.02);
}

/* One AdamW step from fresh moments moves every parameter by lr * g/(|g| + eps) ~ lr:
 * A's by lr, B's by 16 lr under LoRA+. */
static void test_lora_plus_learning_rates(void **state) {
    (void)state;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&pretrained.config, in, out);
    const LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters lora;
    assert_int_equal(lora_create(&lora, be, &lc, pretrained.config.n_layers, in, out, 3), LSC_OK);
    fixture_randomize_lora(&lora, 5, 0.2); /* B != 0 so that A has a gradient too */
    llama_attach_lora(&pretrained, &lora);
    ParamGroup *groups;
    const int n = finetune_lora_groups(&lora, 0.0f, 16.0f, NULL, &groups);
    assert_int_equal(n, 2 * 2 * pretrained.config.n_layers);
    AdamWConfig oc = adamw_default_config();
    oc.grad_clip = 0;
    AdamW opt;
    assert_int_equal(adamw_create(&opt, be, &oc, groups, n), LSC_OK);
    Real *before = malloc(lora.num_params * sizeof(Real));
    memcpy(before, lora.params, lora.num_params * sizeof(Real));
    Task task = {.text = read_text("/usr/share/common-licenses/Apache-2.0")};
    int32_t tokens[B * T], targets[B * T];
    text_batch(&task, 0, tokens, targets);
    const float lr = 1e-3f;
    assert_int_equal(train_step(&pretrained, &opt, tokens, targets, B, T, lr, NULL), LSC_OK);
    double max_a = 0, max_b = 0;
    for (int l = 0; l < lora.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(&lora, t)) continue;
            const size_t a0 = (size_t)(lora_a(&lora, l, t) - lora.params);
            const size_t b0 = (size_t)(lora_b(&lora, l, t) - lora.params);
            for (size_t i = 0; i < (size_t)lc.rank * in[t]; i++)
                max_a = fmax(max_a, fabs(lora.params[a0 + i] - before[a0 + i]));
            for (size_t i = 0; i < (size_t)out[t] * lc.rank; i++)
                max_b = fmax(max_b, fabs(lora.params[b0 + i] - before[b0 + i]));
        }
    printf("largest step: A %.3g (lr %.3g), B %.3g (16 lr = %.3g)\n", max_a, lr, max_b, 16 * lr);
    assert_float_equal(max_a, lr, 1e-3 * lr);
    assert_float_equal(max_b, 16 * lr, 1e-3 * 16 * lr);
    llama_attach_lora(&pretrained, NULL);
    free(task.text.bytes);
    free(before);
    free(groups);
    adamw_free(&opt);
    lora_free(&lora);
}

/* LoRASC on a ViT: a synthetic but learnable 4-class task (the class is the brightest image
 * quadrant), adapters on q and v plus the fully trained head; the loss on fixed batches
 * drops, the head trains, and the learned update ends up merged into the ViT's weights. */
static void vit_batch(Real *images, int32_t *labels, int n, uint64_t seed) {
    for (int b = 0; b < n; b++) {
        const int cls = (int)(philox_u32(seed, 1, (uint64_t)b) % 4);
        labels[b] = cls;
        Real *img = images + (size_t)b * 64;
        philox_uniform(img, 64, seed, 2 + (uint64_t)b, -0.5, 0.5);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                if ((y / 4) * 2 + x / 4 == cls) img[y * 8 + x] += 1.0f;
    }
}

static double vit_loss(ViT *m, uint64_t seed) {
    Real images[32 * 64];
    int32_t labels[32];
    vit_batch(images, labels, 32, seed);
    assert_int_equal(vit_forward(m, images, labels, 32), LSC_OK);
    return m->mean_loss;
}

static void test_vit_lorasc(void **state) {
    (void)state;
    const ViTConfig vc = {.image_size = 8, .patch_size = 4, .channels = 1, .dim = 32, .n_layers = 2,
                          .n_heads = 4, .mlp_dim = 64, .n_classes = 4, .norm_eps = 1e-6f,
                          .gelu = GELU_ERF, .patch_bias = 1};
    ViT m;
    assert_int_equal(vit_create(&m, be, &vc), LSC_OK);
    vit_init_random(&m, 3);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    vit_lora_shapes(&vc, in, out);
    const LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_DEFAULT_TARGETS};
    LoraAdapters fast;
    assert_int_equal(lora_create(&fast, be, &lc, vc.n_layers, in, out, 5), LSC_OK);
    FinetuneConfig cfg = {.total_steps = 60, .batch = 16, .seq = 1,
                          .schedule = {.kind = SCHEDULE_LINEAR, .peak_lr = 1e-2f, .warmup_steps = 3},
                          .adamw = adamw_default_config(), .lora_plus_ratio = 1, .seed = 9};
    assert_int_equal(cascade_preset("lorasc", &cfg.cascade), LSC_OK);
    cfg.cascade.n_experts = 3;
    const FinetuneModel fm = finetune_model_vit(&m);
    Real *wq_before = malloc(m.num_params * sizeof(Real));
    memcpy(wq_before, vit_target_weight(&m, LORA_Q, 0), (size_t)in[LORA_Q] * out[LORA_Q] * sizeof(Real));
    const Real head0 = m.head_params[0];
    const double before = vit_loss(&m, 1000);
    Finetune ft;
    if (finetune_begin(&ft, &fm, &fast, &cfg) != LSC_OK) fail_msg("%s", error_last());
    Real images[16 * 64];
    int32_t labels[16];
    int boundaries = 0;
    while (!finetune_done(&ft)) {
        vit_batch(images, labels, 16, 100 + (uint64_t)ft.step);
        const VitBatch batch = {.images = images, .labels = labels, .B = 16};
        CascadeEvent ev;
        assert_int_equal(finetune_step(&ft, &batch, NULL, NULL), LSC_OK);
        boundaries += finetune_after_step(&ft, &ev);
    }
    finetune_end(&ft);
    const double after = vit_loss(&m, 1000);
    printf("ViT LoRASC (3 experts): loss %.4f -> %.4f\n", before, after);
    assert_int_equal(boundaries, 3);
    assert_true(after < 0.9 * before); /* a random-init base with rank-4 adapters: a modest drop */
    assert_true(m.head_params[0] != head0); /* the head trained */
    assert_true(memcmp(wq_before, vit_target_weight(&m, LORA_Q, 0),
                       (size_t)in[LORA_Q] * out[LORA_Q] * sizeof(Real)) != 0); /* merged */
    free(wq_before);
    lora_free(&fast);
    vit_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_method_learns),
        cmocka_unit_test(test_lora_plus_learning_rates),
        cmocka_unit_test(test_vit_lorasc),
    };
    return cmocka_run_group_tests(tests, pretrain, teardown);
}
