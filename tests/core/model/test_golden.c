/* PyTorch parity: the C engine against golden files from tests/reference/make_golden.py.
 * For each scenario: base-model logits, loss and the gradient of every weight (full mode);
 * LoRA-model logits, loss and every adapter gradient; a 10-step AdamW loss trajectory.
 * The DoRA scenario does the same with PEFT's DoRA layers (gradients of A, B and m), and
 * checks the magnitudes llama_attach_lora initialises against PEFT's initialisation.
 * Not here: kernel-level checks (tests/kernels/) and finite differences
 * (test_gradcheck_model.c, test_gradcheck_vit.c). */
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
#include "core/model/llama.h"
#include "core/model/lora.h"
#include "core/model/adamw.h"
#include "kernels/backend.h"
#include "tests/check.h"
#include "tests/golden_io.h"

/* Logits and gradients: GOLDEN_LOGITS_* and GOLDEN_GRAD_* (golden_io.h).
 * Ten AdamW steps on the same batch: losses drift from float64 by ~2e-7 only. rtol 1e-5
 * (not 1e-4) so that dropping the weight decay (a 4e-4 change in the losses) fails by 10x.
 * The pre-clip gradient norm of each step (> 1, so clipping acts) uses the gradient
 * tolerances. */
#define TRAJ_ATOL 1e-6
#define TRAJ_RTOL 1e-5

/* Golden-file names, in the LLAMA_* order of core/model/llama.h and the LoraTarget order. */
static const char *const WEIGHT_NAMES[LLAMA_NUM_PARAM_TENSORS] = {
    "token_embedding", "rms_att", "wq", "wk", "wv", "wo",
    "rms_ffn", "w1", "w2", "w3", "rms_final", "wcls",
};
static const char *const TARGET_NAMES[LORA_NUM_TARGETS] = GOLDEN_TARGET_NAMES;

/* Indices into the golden "config" (i32) and "config_f" (f32) records (see make_golden.py). */
enum { CFG_C, CFG_H, CFG_L, CFG_NH, CFG_NKV, CFG_V, CFG_SEQ, CFG_TIED, CFG_ROPE, CFG_B, CFG_T,
       CFG_RANK, CFG_TARGETS, CFG_STEPS, CFG_COUNT };
enum { CFGF_THETA, CFGF_EPS, CFGF_ALPHA, CFGF_LR, CFGF_WD, CFGF_CLIP, CFGF_BETA1, CFGF_BETA2,
       CFGF_ADAM_EPS, CFGF_COUNT };

typedef struct Fixture {
    const char *scenario;
    int dora;                       /* the scenario's adapters are DoRA (records lora.<t>.m...) */
    Golden g;
    int golden_loaded;
    Backend *be;
    LlamaConfig c;
    Llama m;
    int model_created;
    LoraAdapters lora;
    int lora_created;
    const int32_t *cfg;
    const float *cfgf;
    int B, T;
    const int32_t *tokens, *targets; /* [B*T] host */
    size_t tolerance_failures;      /* tensors out of tolerance in the current test */
} Fixture;

/* ---------------------------------------------------------------- helpers */

#define REQUIRE(f, cond, ...)                                         \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "[%s] ", (f)->scenario);                  \
            fprintf(stderr, __VA_ARGS__);                             \
            fprintf(stderr, "\n");                                    \
            fail_msg("%s: %s", (f)->scenario, #cond);                 \
        }                                                             \
    } while (0)

/* The golden tensor or a failed test naming the problem. */
static const float *need_f32(Fixture *f, const char *name, int ndim, const int64_t *dims) {
    const float *p = golden_f32(&f->g, name, ndim, dims);
    REQUIRE(f, p != NULL, "%s", f->g.error);
    return p;
}

static void upload(Backend *be, Real *dst, const float *src, size_t n) {
    Real *tmp = malloc(n * sizeof *tmp);
    assert_non_null(tmp);
    for (size_t i = 0; i < n; i++) tmp[i] = (Real)src[i];
    be->to_device(be, dst, tmp, n * sizeof *tmp);
    free(tmp);
}

/* Device tensor to a malloc'd host copy. */
static Real *download(Backend *be, const Real *src, size_t n) {
    Real *tmp = malloc((n ? n : 1) * sizeof *tmp);
    assert_non_null(tmp);
    be->to_host(be, tmp, src, n * sizeof *tmp);
    return tmp;
}

/* Prints one line per tensor with its worst error, details of failures via check.h, and
 * counts the tensor in f->tolerance_failures when any element is out of tolerance. */
static void compare(Fixture *f, const char *what, const Real *got, const float *ref, size_t n,
                    double atol, double rtol) {
    double worst_abs = 0.0, worst_ratio = 0.0, max_ref = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)ref[i]);
        double ratio = err / (atol + rtol * fabs((double)ref[i]));
        if (isnan(err)) ratio = INFINITY;
        if (ratio > worst_ratio || (isinf(ratio) && !isinf(worst_ratio))) { worst_ratio = ratio; worst_i = i; }
        if (err > worst_abs) worst_abs = err;
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    size_t bad = check_close_real(what, got, ref, n, atol, rtol);
    printf("  [%s] %-24s n=%-5zu max|ref| %-9.3g max|diff| %-9.3g worst diff/tol %.3f at %zu "
           "(got %.8g, ref %.8g)%s\n",
           f->scenario, what, n, max_ref, worst_abs, worst_ratio, worst_i, n ? (double)got[worst_i] : 0.0,
           n ? (double)ref[worst_i] : 0.0, bad ? "  FAIL" : "");
    fflush(stdout);
    if (bad) f->tolerance_failures++;
}

static void finish(Fixture *f) {
    if (f->tolerance_failures)
        fail_msg("%s: %zu tensor(s) out of tolerance (see the lines above)", f->scenario,
                 f->tolerance_failures);
}

/* Shape of weight tensor i for config c (as in core/model/llama.h); returns ndim, 0 if absent. */
static int weight_shape(const LlamaConfig *c, int i, int64_t dims[3]) {
    int64_t C = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t HD = C / c->n_heads, Q = c->n_heads * HD, KV = c->n_kv_heads * HD;
    switch (i) {
    case LLAMA_TOKEN_EMBEDDING: dims[0] = V; dims[1] = C; return 2;
    case LLAMA_RMS_ATT: case LLAMA_RMS_FFN: dims[0] = L; dims[1] = C; return 2;
    case LLAMA_WQ: dims[0] = L; dims[1] = Q; dims[2] = C; return 3;
    case LLAMA_WK: case LLAMA_WV: dims[0] = L; dims[1] = KV; dims[2] = C; return 3;
    case LLAMA_WO: dims[0] = L; dims[1] = C; dims[2] = Q; return 3;
    case LLAMA_W1: case LLAMA_W3: dims[0] = L; dims[1] = H; dims[2] = C; return 3;
    case LLAMA_W2: dims[0] = L; dims[1] = C; dims[2] = H; return 3;
    case LLAMA_RMS_FINAL: dims[0] = C; return 1;
    case LLAMA_WCLS: if (c->tied_embeddings) return 0; dims[0] = V; dims[1] = C; return 2;
    default: return 0;
    }
}

static size_t shape_count(int ndim, const int64_t *dims) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)dims[d];
    return n;
}

/* ---------------------------------------------------------------- fixture */

static int teardown(void **state) {
    Fixture *f = *state;
    if (f->model_created) llama_free(&f->m);
    if (f->lora_created) lora_free(&f->lora);
    if (f->be) backend_cpu_destroy(f->be);
    if (f->golden_loaded) golden_free(&f->g);
    f->model_created = f->lora_created = f->golden_loaded = 0;
    f->be = NULL;
    return 0;
}

/* Loads the scenario's golden file and builds the base model with its weights. */
static int setup_inner(void **state) {
    Fixture *f = *state;
    f->tolerance_failures = 0;
    char path[600];
    snprintf(path, sizeof path, "%s/%s.bin", LORASC_GOLDEN_DIR, f->scenario);
    f->golden_loaded = 1;
    if (golden_load(&f->g, path)) {
        fprintf(stderr, "%s\n", f->g.error);
        return -1;
    }
    f->cfg = golden_i32(&f->g, "config", GOLDEN_SHAPE(CFG_COUNT));
    f->cfgf = golden_f32(&f->g, "config_f", GOLDEN_SHAPE(CFGF_COUNT));
    if (!f->cfg || !f->cfgf) {
        fprintf(stderr, "%s\n", f->g.error);
        return -1;
    }
    const int32_t *k = f->cfg;
    f->c = (LlamaConfig){
        .dim = k[CFG_C], .hidden_dim = k[CFG_H], .n_layers = k[CFG_L], .n_heads = k[CFG_NH],
        .n_kv_heads = k[CFG_NKV], .vocab_size = k[CFG_V], .seq_len = k[CFG_SEQ],
        .rope_theta = f->cfgf[CFGF_THETA], .norm_eps = f->cfgf[CFGF_EPS],
        .tied_embeddings = k[CFG_TIED], .rope_style = (RopeStyle)k[CFG_ROPE],
    };
    f->B = k[CFG_B];
    f->T = k[CFG_T];
    f->tokens = golden_i32(&f->g, "tokens", GOLDEN_SHAPE(f->B, f->T));
    f->targets = golden_i32(&f->g, "targets", GOLDEN_SHAPE(f->B, f->T));
    if (!f->tokens || !f->targets) {
        fprintf(stderr, "%s\n", f->g.error);
        return -1;
    }
    if (llama_config_validate(&f->c) != LSC_OK) {
        fprintf(stderr, "[%s] config rejected: %s\n", f->scenario, error_last());
        return -1;
    }
    f->be = backend_cpu_create(0);
    if (!f->be) {
        fprintf(stderr, "[%s] backend_cpu_create failed: %s\n", f->scenario, error_last());
        return -1;
    }
    if (llama_create(&f->m, f->be, &f->c) != LSC_OK) {
        fprintf(stderr, "[%s] llama_create failed: %s\n", f->scenario, error_last());
        return -1;
    }
    f->model_created = 1;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        int64_t dims[3];
        int nd = weight_shape(&f->c, i, dims);
        size_t n = nd ? shape_count(nd, dims) : 0;
        if (f->m.param_sizes[i] != n) {
            fprintf(stderr, "[%s] param_sizes[%s] is %zu, expected %zu\n", f->scenario,
                    WEIGHT_NAMES[i], f->m.param_sizes[i], n);
            return -1;
        }
        if (!nd) continue;
        const float *w = golden_f32(&f->g, WEIGHT_NAMES[i], nd, dims);
        if (!w) {
            fprintf(stderr, "%s\n", f->g.error);
            return -1;
        }
        upload(f->be, f->m.w.tensors[i], w, n);
    }
    return 0;
}

/* cmocka skips the teardown when a setup fails: release what was built here. */
static int setup(void **state) {
    int rc = setup_inner(state);
    if (rc) teardown(state);
    return rc;
}

/* Slot-by-slot upload of a golden [L, n] record into per-layer device vectors. */
static void upload_layers(Fixture *f, Real *(*dst)(const LoraAdapters *, int, int), int t,
                          const float *src, size_t n) {
    for (int l = 0; l < f->c.n_layers; l++) upload(f->be, dst(&f->lora, l, t), src + (size_t)l * n, n);
}

/* Gathers per-layer device vectors dst(lora, l, t) [n] into one malloc'd host [L, n] array. */
static Real *download_layers(Fixture *f, Real *(*src)(const LoraAdapters *, int, int), int t,
                             size_t n) {
    Real *host = malloc((size_t)f->c.n_layers * n * sizeof *host);
    assert_non_null(host);
    for (int l = 0; l < f->c.n_layers; l++)
        f->be->to_host(f->be, host + (size_t)l * n, src(&f->lora, l, t), n * sizeof *host);
    return host;
}

/* Creates the scenario's adapters from the golden A and B and attaches them. DoRA: attaching
 * initialises m (PEFT's ||W + sBA||_row), checked against lora.<t>.m_init when check_init,
 * then m is overwritten with the scenario's perturbed lora.<t>.m. */
static void attach_lora(Fixture *f, int check_init) {
    const int32_t *k = f->cfg;
    LoraConfig lc = {.rank = k[CFG_RANK], .alpha = f->cfgf[CFGF_ALPHA], .targets = (unsigned)k[CFG_TARGETS],
                     .use_dora = f->dora};
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&f->c, in, out);
    int rc = lora_create(&f->lora, f->be, &lc, f->c.n_layers, in, out, 1);
    REQUIRE(f, rc == LSC_OK, "lora_create failed: %s", error_last());
    f->lora_created = 1;
    int L = f->c.n_layers, r = lc.rank;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        int want = (lc.targets >> t) & 1;
        REQUIRE(f, lora_enabled(&f->lora, t) == want, "lora_enabled(%s) is %d, expected %d",
                TARGET_NAMES[t], lora_enabled(&f->lora, t), want);
        if (!want) continue;
        char name[64];
        snprintf(name, sizeof name, "lora.%s.A", TARGET_NAMES[t]);
        const float *a = need_f32(f, name, GOLDEN_SHAPE(L, r, in[t]));
        snprintf(name, sizeof name, "lora.%s.B", TARGET_NAMES[t]);
        const float *b = need_f32(f, name, GOLDEN_SHAPE(L, out[t], r));
        for (int l = 0; l < L; l++) {
            upload(f->be, lora_a(&f->lora, l, t), a + (size_t)l * r * in[t], (size_t)r * in[t]);
            upload(f->be, lora_b(&f->lora, l, t), b + (size_t)l * out[t] * r, (size_t)out[t] * r);
        }
    }
    llama_attach_lora(&f->m, &f->lora);
    if (!f->dora) return;
    REQUIRE(f, f->lora.magnitudes_set, "llama_attach_lora did not initialise the DoRA magnitudes");
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(&f->lora, t)) continue;
        char name[64];
        if (check_init) {
            snprintf(name, sizeof name, "lora.%s.m_init", TARGET_NAMES[t]);
            const float *ref = need_f32(f, name, GOLDEN_SHAPE(L, out[t]));
            Real *got = download_layers(f, lora_magnitude, t, (size_t)out[t]);
            compare(f, name, got, ref, (size_t)L * out[t], GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
            free(got);
        }
        snprintf(name, sizeof name, "lora.%s.m", TARGET_NAMES[t]);
        upload_layers(f, lora_magnitude, t, need_f32(f, name, GOLDEN_SHAPE(L, out[t])), (size_t)out[t]);
    }
}

static int count_unmasked(const Fixture *f) {
    int n = 0;
    for (int i = 0; i < f->B * f->T; i++) n += f->targets[i] >= 0;
    return n;
}

/* Forward with targets, then logits and mean loss against the golden records. */
static void forward_and_check(Fixture *f, const char *logits_name, const char *loss_name) {
    int rc = llama_forward(&f->m, f->tokens, f->targets, f->B, f->T);
    REQUIRE(f, rc == LSC_OK, "llama_forward failed: %s", error_last());
    REQUIRE(f, f->m.n_loss_tokens == count_unmasked(f), "n_loss_tokens is %d, expected %d",
            f->m.n_loss_tokens, count_unmasked(f));
    size_t n = (size_t)f->B * f->T * f->c.vocab_size;
    const float *ref = need_f32(f, logits_name, GOLDEN_SHAPE(f->B * f->T, f->c.vocab_size));
    Real *got = download(f->be, f->m.acts.logits, n); /* before backward overwrites them */
    compare(f, logits_name, got, ref, n, GOLDEN_LOGITS_ATOL, GOLDEN_LOGITS_RTOL);
    free(got);
    const float *loss = need_f32(f, loss_name, GOLDEN_SHAPE(1));
    Real mean = (Real)f->m.mean_loss;
    compare(f, loss_name, &mean, loss, 1, GOLDEN_LOGITS_ATOL, GOLDEN_LOGITS_RTOL);
}

/* ---------------------------------------------------------------- tests */

/* Base model (no adapters), full training: logits, loss, gradient of every weight tensor. */
static void test_full_grads(void **state) {
    Fixture *f = *state;
    int rc = llama_enable_full_grads(&f->m);
    REQUIRE(f, rc == LSC_OK, "llama_enable_full_grads failed: %s", error_last());
    llama_zero_grad(&f->m);
    forward_and_check(f, "base_logits", "base_loss");
    rc = llama_backward(&f->m);
    REQUIRE(f, rc == LSC_OK, "llama_backward failed: %s", error_last());
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        int64_t dims[3];
        int nd = weight_shape(&f->c, i, dims);
        if (!nd) {
            /* Tied classifier: no tensor of its own; its gradient is folded into
             * full_grad.token_embedding. llama.c may alias it to the embedding. */
            REQUIRE(f, f->m.dw.tensors[i] == NULL ||
                           f->m.dw.tensors[i] == f->m.dw.tensors[LLAMA_TOKEN_EMBEDDING],
                    "dw.%s should be NULL or alias dw.token_embedding when tied", WEIGHT_NAMES[i]);
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "full_grad.%s", WEIGHT_NAMES[i]);
        const float *ref = need_f32(f, name, nd, dims);
        size_t n = shape_count(nd, dims);
        REQUIRE(f, f->m.dw.tensors[i] != NULL, "dw.%s is NULL after llama_enable_full_grads",
                WEIGHT_NAMES[i]);
        Real *got = download(f->be, f->m.dw.tensors[i], n);
        compare(f, name, got, ref, n, GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
        free(got);
    }
    finish(f);
}

/* LoRA model, base frozen: logits, loss, the gradient of every A and B (DoRA: and m). */
static void test_lora_grads(void **state) {
    Fixture *f = *state;
    attach_lora(f, 1);
    llama_zero_grad(&f->m);
    forward_and_check(f, "logits", "loss");
    int rc = llama_backward(&f->m);
    REQUIRE(f, rc == LSC_OK, "llama_backward failed: %s", error_last());
    const int L = f->c.n_layers, r = f->lora.config.rank;
    Real *(*const grad[3])(const LoraAdapters *, int, int) = {lora_da, lora_db, lora_dmagnitude};
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!lora_enabled(&f->lora, t)) continue;
        const int in = f->lora.in_dim[t], out = f->lora.out_dim[t];
        const int rows[3] = {r, out, out}, cols[3] = {in, r, 1}; /* A, B, DoRA's m */
        for (int k = 0; k < (f->dora ? 3 : 2); k++) {
            char name[64];
            snprintf(name, sizeof name, "lora_grad.%s.%c", TARGET_NAMES[t], "ABm"[k]);
            const float *ref = k < 2 ? need_f32(f, name, GOLDEN_SHAPE(L, rows[k], cols[k]))
                                     : need_f32(f, name, GOLDEN_SHAPE(L, out));
            const size_t n = (size_t)rows[k] * (size_t)cols[k];
            Real *got = download_layers(f, grad[k], t, n);
            compare(f, name, got, ref, (size_t)L * n, GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
            free(got);
        }
    }
    finish(f);
}

/* Ten AdamW steps (clipped, decoupled weight decay) on the adapters, same batch each step. */
static void test_lora_adamw(void **state) {
    Fixture *f = *state;
    attach_lora(f, 0);
    int steps = f->cfg[CFG_STEPS];
    const float *ref_loss = need_f32(f, "adamw_losses", GOLDEN_SHAPE(steps + 1));
    const float *ref_norm = need_f32(f, "adamw_grad_norms", GOLDEN_SHAPE(steps));
    AdamWConfig oc = adamw_default_config();
    oc.beta1 = f->cfgf[CFGF_BETA1];
    oc.beta2 = f->cfgf[CFGF_BETA2];
    oc.eps = f->cfgf[CFGF_ADAM_EPS];
    oc.weight_decay = f->cfgf[CFGF_WD];
    oc.grad_clip = f->cfgf[CFGF_CLIP];
    ParamGroup pg = {.p = f->lora.params, .g = f->lora.grads, .n = f->lora.num_params,
                     .lr_scale = 1.0f, .weight_decay = f->cfgf[CFGF_WD]};
    AdamW opt;
    int rc = adamw_create(&opt, f->be, &oc, &pg, 1);
    REQUIRE(f, rc == LSC_OK, "adamw_create failed: %s", error_last());
    Real losses[64], norms[64];
    REQUIRE(f, steps >= 1 && steps < 64, "adamw_steps %d out of range", steps);
    for (int s = 0; s < steps; s++) {
        llama_zero_grad(&f->m);
        rc = llama_forward(&f->m, f->tokens, f->targets, f->B, f->T);
        REQUIRE(f, rc == LSC_OK, "llama_forward failed at step %d: %s", s, error_last());
        losses[s] = (Real)f->m.mean_loss;
        rc = llama_backward(&f->m);
        REQUIRE(f, rc == LSC_OK, "llama_backward failed at step %d: %s", s, error_last());
        norms[s] = (Real)adamw_step(&opt, f->cfgf[CFGF_LR]);
    }
    rc = llama_forward(&f->m, f->tokens, f->targets, f->B, f->T);
    REQUIRE(f, rc == LSC_OK, "llama_forward failed after the last step: %s", error_last());
    losses[steps] = (Real)f->m.mean_loss;
    adamw_free(&opt);
    for (int s = 0; s <= steps; s++)
        printf("  [%s] adamw step %2d: loss %.7f (ref %.7f)%s\n", f->scenario, s, (double)losses[s],
               (double)ref_loss[s], s < steps ? "" : "  after the last update");
    compare(f, "adamw_losses", losses, ref_loss, (size_t)steps + 1, TRAJ_ATOL, TRAJ_RTOL);
    compare(f, "adamw_grad_norms", norms, ref_norm, (size_t)steps, GOLDEN_GRAD_ATOL, GOLDEN_GRAD_RTOL);
    finish(f);
}

/* ---------------------------------------------------------------- main */

static Fixture tied = {.scenario = "llama_interleaved_tied"};
static Fixture untied = {.scenario = "llama_half_untied"};
static Fixture dora = {.scenario = "llama_dora", .dora = 1};

#define GOLDEN_TEST(fn, fx) \
    {#fn "/" #fx, fn, setup, teardown, &fx}

int main(void) {
    const struct CMUnitTest tests[] = {
        GOLDEN_TEST(test_full_grads, tied),
        GOLDEN_TEST(test_lora_grads, tied),
        GOLDEN_TEST(test_lora_adamw, tied),
        GOLDEN_TEST(test_full_grads, untied),
        GOLDEN_TEST(test_lora_grads, untied),
        GOLDEN_TEST(test_lora_adamw, untied),
        GOLDEN_TEST(test_full_grads, dora),
        GOLDEN_TEST(test_lora_grads, dora),
        GOLDEN_TEST(test_lora_adamw, dora),
    };
    return cmocka_run_group_tests_name("golden", tests, NULL, NULL);
}
