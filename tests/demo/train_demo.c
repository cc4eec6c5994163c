/* The engine demo (the README's main job until the Lua harness lands): offline, on text that
 * every Debian machine has (/usr/share/common-licenses, from base-files).
 *  1. pretrain a small byte-level Llama from scratch on the GNU licences (full training);
 *  2. fine-tune it with LoRA (q, v, r = 8) on the Apache licence, a held-out text;
 *  3. report held-out loss before and after, merge the adapter and check the merged model
 *     gives the same loss, and save model + adapter checkpoints under results/demo/.
 * Not a benchmark and not a test: it shows the engine end to end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/formats/checkpoint.h"
#include "core/base/error.h"
#include "core/base/philox.h"
#include "core/model/schedule.h"
#include "core/model/train.h"

#define LICENSES "/usr/share/common-licenses/"

typedef struct Text {
    unsigned char *bytes;
    size_t n;
} Text;

static int text_append(Text *t, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot read %s: %s (it comes with Debian's base-files package).", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        t->bytes = realloc(t->bytes, t->n + got);
        memcpy(t->bytes + t->n, buf, got);
        t->n += got;
    }
    fclose(f);
    return LSC_OK;
}

/* B random windows of T+1 bytes from text[lo, hi): inputs and next-byte targets. */
static void sample_batch(const Text *t, size_t lo, size_t hi, int B, int T, uint64_t seed, long step,
                         int32_t *tokens, int32_t *targets) {
    for (int b = 0; b < B; b++) {
        size_t start = lo + philox_u32(seed, (uint64_t)step, (uint64_t)b) % (hi - lo - (size_t)T - 1);
        for (int i = 0; i < T; i++) {
            tokens[b * T + i] = t->bytes[start + i];
            targets[b * T + i] = t->bytes[start + i + 1];
        }
    }
}

/* Mean loss over consecutive windows covering text[lo, hi). */
static double evaluate(Llama *m, const Text *t, size_t lo, size_t hi, int T, int32_t *tokens,
                       int32_t *targets) {
    double sum = 0;
    int n = 0;
    for (size_t start = lo; start + (size_t)T + 1 <= hi; start += (size_t)T) {
        for (int i = 0; i < T; i++) {
            tokens[i] = t->bytes[start + (size_t)i];
            targets[i] = t->bytes[start + (size_t)i + 1];
        }
        if (llama_forward(m, tokens, targets, 1, T) != LSC_OK) return -1;
        sum += m->mean_loss;
        n++;
    }
    return n ? sum / n : 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int train(Llama *m, AdamW *opt, const Text *t, size_t lo, size_t hi, int B, int T, long steps,
                 const Schedule *sched, const char *what) {
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)B * T), *targets = malloc(sizeof(int32_t) * (size_t)B * T);
    const double t0 = now();
    int rc = LSC_OK;
    for (long s = 0; s < steps && rc == LSC_OK; s++) {
        StepResult r;
        sample_batch(t, lo, hi, B, T, 7, s, tokens, targets);
        rc = train_step(m, opt, tokens, targets, B, T, schedule_lr(sched, s, steps), &r);
        if (rc == LSC_OK && (s % 50 == 0 || s == steps - 1))
            printf("  %s step %4ld/%ld  loss %.4f  grad norm %.3f  lr %.2e  %.0f tok/s\n", what, s + 1,
                   steps, r.loss, r.grad_norm, (double)schedule_lr(sched, s, steps),
                   (double)(s + 1) * B * T / (now() - t0));
    }
    free(tokens);
    free(targets);
    return rc;
}

static int run(void) {
    Text pre = {0}, fine = {0};
    const char *pretrain_files[] = {LICENSES "GPL-2", LICENSES "GPL-3", LICENSES "LGPL-2.1",
                                    LICENSES "GFDL-1.3", LICENSES "MPL-2.0"};
    for (size_t i = 0; i < sizeof pretrain_files / sizeof pretrain_files[0]; i++)
        if (text_append(&pre, pretrain_files[i]) != LSC_OK) return LSC_ERR;
    if (text_append(&fine, LICENSES "Apache-2.0") != LSC_OK) return LSC_ERR;
    const size_t split = fine.n * 8 / 10; /* Apache: 80% fine-tuning, last 20% held out */
    printf("pretraining text: %zu bytes (GPL-2, GPL-3, LGPL-2.1, GFDL-1.3, MPL-2.0)\n", pre.n);
    printf("fine-tuning text: Apache-2.0, %zu bytes train / %zu held out\n", split, fine.n - split);

    Backend *be = backend_cpu_create(0);
    const LlamaConfig c = {.dim = 128, .hidden_dim = 344, .n_layers = 4, .n_heads = 4,
                           .n_kv_heads = 2, .vocab_size = 256, .seq_len = 128,
                           .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = 1,
                           .rope_style = ROPE_INTERLEAVED};
    const int B = 16, T = 128;
    Llama m;
    LoraAdapters lora;
    AdamW opt;
    ParamGroup group;
    int32_t tokens[128], targets[128];
    if (llama_create(&m, be, &c) != LSC_OK || llama_enable_full_grads(&m) != LSC_OK) return LSC_ERR;
    llama_init_random(&m, 1);
    printf("model: byte-level Llama, %zu parameters (dim %d, %d layers, %d heads, %d kv heads)\n",
           m.num_params, c.dim, c.n_layers, c.n_heads, c.n_kv_heads);

    printf("\n1. pretraining (full), 300 steps of %d x %d bytes, cosine schedule\n", B, T);
    AdamWConfig oc = adamw_default_config();
    train_param_groups(&m, 0.01f, &group);
    if (adamw_create(&opt, be, &oc, &group, 1) != LSC_OK) return LSC_ERR;
    const Schedule pre_sched = {.kind = SCHEDULE_COSINE, .peak_lr = 3e-3f, .warmup_steps = 20};
    if (train(&m, &opt, &pre, 0, pre.n, B, T, 300, &pre_sched, "pretrain") != LSC_OK) return LSC_ERR;
    adamw_free(&opt);
    const double before = evaluate(&m, &fine, split, fine.n, T, tokens, targets);

    /* freeze the base: drop its gradients, attach adapters */
    be->free(be, m.grads);
    m.grads = NULL;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    const LoraConfig lc = {.rank = 8, .alpha = 16, .targets = LORA_DEFAULT_TARGETS};
    if (lora_create(&lora, be, &lc, c.n_layers, in, out, 2) != LSC_OK) return LSC_ERR;
    llama_attach_lora(&m, &lora);
    printf("\n2. LoRA fine-tuning (q, v, r = 8, alpha 16: %zu trainable parameters), 150 steps\n",
           lora.num_params);
    train_param_groups(&m, 0.0f, &group);
    if (adamw_create(&opt, be, &oc, &group, 1) != LSC_OK) return LSC_ERR;
    const Schedule ft_sched = {.kind = SCHEDULE_LINEAR, .peak_lr = 5e-3f, .warmup_steps = 10};
    if (train(&m, &opt, &fine, 0, split, B, T, 150, &ft_sched, "lora") != LSC_OK) return LSC_ERR;
    const double after = evaluate(&m, &fine, split, fine.n, T, tokens, targets);

    llama_merge_lora(&m, +1.0f);
    const double merged = evaluate(&m, &fine, split, fine.n, T, tokens, targets);
    llama_merge_lora(&m, -1.0f);

    printf("\n3. held-out Apache-2.0 loss (nats/byte)\n");
    printf("   pretrained base          %.4f\n", before);
    printf("   base + LoRA adapter      %.4f\n", after);
    printf("   merged weights           %.4f  (|diff| %.2g)\n", merged, merged - after < 0 ? after - merged : merged - after);

    mkdir("results", 0755);
    mkdir("results/demo", 0755);
    if (checkpoint_save("results/demo/base.lsc", &m, NULL, NULL, 300) != LSC_OK ||
        checkpoint_save("results/demo/lora.lsc", NULL, &lora, &opt, 150) != LSC_OK)
        return LSC_ERR;
    printf("   saved results/demo/base.lsc and results/demo/lora.lsc\n");
    adamw_free(&opt);
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
    free(pre.bytes);
    free(fine.bytes);
    return after < before ? LSC_OK : error_set("LoRA fine-tuning did not lower the held-out loss.");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines show up even through a pipe */
    if (run() != LSC_OK) {
        fprintf(stderr, "train_demo: %s\n", error_last());
        return 1;
    }
    return 0;
}
