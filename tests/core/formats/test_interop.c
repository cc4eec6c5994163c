/* Hugging Face in and out against files the real libraries made (tests/golden/interop, written
 * by tests/reference/make_interop_golden.py with transformers 4.44.2 and PEFT 0.12.0):
 *  - PEFT-made LoRA and DoRA adapters on a transformers-saved Llama give PEFT's logits;
 *  - what lorasc exports: the adapter (peft_save) equals PEFT's file tensor for tensor, and the
 *    merged model (hf_llama_save) read back gives PEFT's logits; the source's metadata survive
 *    (bos/eos/pad ids, rms_norm_eps 1e-05 exactly, rope_theta, unknown keys, generation_config
 *    and tokenizer files byte for byte); without a source, float fields are their shortest
 *    decimals;
 *  - adapters PEFT makes with what lorasc does not implement are refused, each by name;
 *  - ViT: a 224x224 checkpoint on 28x28 grey images resized to 224 (no interpolation), 32 and
 *    48 (position embeddings interpolated as transformers' interpolate_pos_encoding), with and
 *    without a PEFT adapter (LoRA + modules_to_save classifier), against transformers / PEFT;
 *    the resize against torch's bilinear; the adapter and merged-model exports.
 * With LORASC_EXPORT_KEEP=DIR set, the exports and lorasc's logits are also written to DIR for
 * make_interop_golden.py --verify (transformers and PEFT reading lorasc's files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/base/error.h"
#include "core/data/image_resize.h"
#include "core/formats/hf_llama.h"
#include "core/formats/peft.h"
#include "core/formats/safetensors.h"
#include "core/formats/vit_hf.h"
#include "tests/check.h"
#include "tests/golden_io.h"

#define GOLD LORASC_GOLDEN_DIR "/interop"

static Backend *be;
static Golden g;
static char tmpdir[64];
static const char *keep; /* LORASC_EXPORT_KEEP */

static void sub(char *out, size_t n, const char *dir, const char *name) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) fail_msg("path too long: %s/%s", dir, name);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0) assert_true(access(path, F_OK) == 0);
}

/* A fresh empty directory under tmpdir. */
static const char *fresh(const char *name) {
    static char path[4][256];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
    make_dir(p);
    return p;
}

/* Copies directory from to keep/name (for --verify) when LORASC_EXPORT_KEEP is set. */
static void keep_dir(const char *from, const char *name) {
    if (!keep) return;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && rm -rf '%s/%s' && cp -r '%s' '%s/%s'", keep, keep,
             name, from, keep, name);
    assert_int_equal(system(cmd), 0);
}

/* Writes a golden_io file: one i32 or f32 input record and the logits. */
static void keep_logits(const char *name, const char *in_name, const void *in, int in_f32,
                        int in_ndim, const int *in_dims, const Real *logits, size_t n_logits,
                        int rows, int cols) {
    if (!keep) return;
    char path[600];
    snprintf(path, sizeof path, "%s/%s.bin", keep, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const uint32_t count = 2;
    fwrite("LSCGOLD1", 1, 8, f);
    fwrite(&count, 4, 1, f);
    uint32_t nl = (uint32_t)strlen(in_name), dt = in_f32 ? 0 : 1, nd = (uint32_t)in_ndim;
    size_t nin = 1;
    fwrite(&nl, 4, 1, f), fwrite(in_name, 1, nl, f), fwrite(&dt, 4, 1, f), fwrite(&nd, 4, 1, f);
    for (int i = 0; i < in_ndim; i++) {
        const uint32_t d = (uint32_t)in_dims[i];
        fwrite(&d, 4, 1, f);
        nin *= (size_t)in_dims[i];
    }
    fwrite(in, 4, nin, f);
    nl = 6, dt = 0, nd = 2;
    fwrite(&nl, 4, 1, f), fwrite("logits", 1, 6, f), fwrite(&dt, 4, 1, f), fwrite(&nd, 4, 1, f);
    const uint32_t r = (uint32_t)rows, c = (uint32_t)cols;
    fwrite(&r, 4, 1, f), fwrite(&c, 4, 1, f);
    for (size_t i = 0; i < n_logits; i++) {
        const float x = (float)logits[i];
        fwrite(&x, 4, 1, f);
    }
    fclose(f);
}

/* ------------------------------------------------------------------------------------------
 * Llama */

static const int32_t *tokens;
static int TB, TT, V;

static Real *llama_logits(Llama *m) {
    assert_int_equal(llama_forward(m, tokens, NULL, TB, TT), LSC_OK);
    const size_t n = (size_t)TB * TT * V;
    Real *out = malloc(n * sizeof *out);
    be->to_host(be, out, m->acts.logits, n * sizeof *out);
    return out;
}

/* Max |diff| of m's logits against golden record `ref`; fails beyond 1e-4 absolute + 1e-4
 * relative (float32 against float32 computed in another order). */
static double check_llama(Llama *m, const char *ref, const char *what) {
    const float *want = golden_f32(&g, ref, GOLDEN_SHAPE(TB, TT, V));
    if (!want) fail_msg("%s", g.error);
    Real *got = llama_logits(m);
    const size_t n = (size_t)TB * TT * V;
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)got[i] - want[i]) > worst) worst = fabs((double)got[i] - want[i]);
    const size_t bad = check_close_real(what, got, want, n, 1e-4, 1e-4);
    free(got);
    if (bad) fail_msg("%s: %zu logits differ from the reference", what, bad);
    printf("  %-52s max |logit diff| %.3g\n", what, worst);
    return worst;
}

static void load_llama(const char *dir, Llama *m) {
    if (hf_llama_load(dir, m, be) != LSC_OK) fail_msg("%s", error_last());
}

/* Two safetensors files hold the same tensor names, shapes and values. */
static void same_tensors(const char *a, const char *b) {
    SafeTensors x, y;
    if (safetensors_open(&x, a) != LSC_OK || safetensors_open(&y, b) != LSC_OK)
        fail_msg("%s", error_last());
    assert_int_equal(x.n_tensors, y.n_tensors);
    for (int i = 0; i < x.n_tensors; i++) {
        const StTensor *s = &x.tensors[i], *t = safetensors_find(&y, s->name);
        if (!t) fail_msg("%s has %s, %s does not", a, s->name, b);
        assert_int_equal(s->ndim, t->ndim);
        for (int d = 0; d < s->ndim; d++) assert_int_equal(s->shape[d], t->shape[d]);
        Real *u = malloc(s->numel * sizeof *u), *v = malloc(s->numel * sizeof *v);
        assert_int_equal(safetensors_read(&x, s, u), LSC_OK);
        assert_int_equal(safetensors_read(&y, t, v), LSC_OK);
        assert_memory_equal(u, v, s->numel * sizeof *u);
        free(u), free(v);
    }
    safetensors_close(&x);
    safetensors_close(&y);
}

static json_t *load_json(const char *dir, const char *file) {
    char p[600];
    sub(p, sizeof p, dir, file);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) fail_msg("cannot read %s", p);
    return j;
}

/* The adapter configs agree on everything that decides the numbers. */
static void same_adapter_config(const char *a, const char *b) {
    json_t *x = load_json(a, "adapter_config.json"), *y = load_json(b, "adapter_config.json");
    static const char *const keys[] = {"peft_type",  "r",    "lora_alpha", "use_dora",
                                       "use_rslora", "bias", "task_type",  NULL};
    for (int i = 0; keys[i]; i++)
        if (!json_equal(json_object_get(x, keys[i]), json_object_get(y, keys[i])) &&
            !(json_is_null(json_object_get(x, keys[i])) && !json_object_get(y, keys[i])) &&
            !(json_is_number(json_object_get(x, keys[i])) &&
              json_number_value(json_object_get(x, keys[i])) ==
                  json_number_value(json_object_get(y, keys[i]))))
            fail_msg("adapter_config.json of %s and %s differ in %s", a, b, keys[i]);
    /* target_modules as sets */
    const json_t *tx = json_object_get(x, "target_modules"),
                 *ty = json_object_get(y, "target_modules");
    assert_int_equal(json_array_size(tx), json_array_size(ty));
    size_t i, j;
    const json_t *v, *w;
    json_array_foreach(tx, i, v) {
        int found = 0;
        json_array_foreach(ty, j, w) found |= json_equal(v, w);
        if (!found) fail_msg("%s targets %s, %s does not", a, json_string_value(v), b);
    }
    json_decref(x);
    json_decref(y);
}

static void test_peft_import_export(void **state) {
    (void)state;
    Llama base;
    load_llama(GOLD "/llama", &base);
    V = base.config.vocab_size;
    const GoldenTensor *tt = golden_find(&g, "tokens");
    assert_non_null(tt);
    TB = (int)tt->dims[0], TT = (int)tt->dims[1];
    tokens = tt->data;
    assert_int_equal(base.config.tied_embeddings, 1);
    check_llama(&base, "llama_logits", "bf16 HF Llama (save_pretrained)");
    static const char *const adapters[2] = {"peft_lora", "peft_dora"};
    static const char *const refs[2] = {"lora_logits", "dora_logits"};
    for (int a = 0; a < 2; a++) {
        char dir[600];
        sub(dir, sizeof dir, GOLD, adapters[a]);
        LoraAdapters lora;
        if (peft_load(dir, &base, &lora, be) != LSC_OK) fail_msg("%s", error_last());
        llama_attach_lora(&base, &lora);
        char what[128];
        snprintf(what, sizeof what, "PEFT-made %s adapter", a ? "DoRA" : "LoRA");
        check_llama(&base, refs[a], what);
        /* lorasc's export of the same adapter: PEFT's tensors, PEFT's config */
        const char *out = fresh(adapters[a]);
        if (peft_save(out, &base, &lora, "llama") != LSC_OK) fail_msg("%s", error_last());
        char x[600], y[600];
        sub(x, sizeof x, out, "adapter_model.safetensors");
        sub(y, sizeof y, dir, "adapter_model.safetensors");
        same_tensors(x, y);
        same_adapter_config(out, dir);
        if (a == 0) {
            keep_dir(out, "llama_peft");
            keep_dir(GOLD "/llama", "llama_base");
            Real *l = llama_logits(&base);
            keep_logits("llama_peft", "tokens", tokens, 0, 2, (int[]){TB, TT}, l,
                        (size_t)TB * TT * V, TB * TT, V);
            free(l);
        }
        /* the merged model as an HF directory, with the source's metadata */
        llama_merge_lora(&base, 1.0f);
        llama_attach_lora(&base, NULL);
        const char *hf = fresh("merged");
        HfLlamaSaveOptions o = hf_llama_save_defaults();
        o.source_dir = GOLD "/llama";
        if (hf_llama_save(hf, &base, &o) != LSC_OK) fail_msg("%s", error_last());
        Llama back;
        load_llama(hf, &back);
        snprintf(what, sizeof what, "merged %s export read back", a ? "DoRA" : "LoRA");
        check_llama(&back, refs[a], what);
        if (a == 0) {
            keep_dir(hf, "llama_hf");
            Real *l = llama_logits(&back);
            keep_logits("llama_hf", "tokens", tokens, 0, 2, (int[]){TB, TT}, l, (size_t)TB * TT * V,
                        TB * TT, V);
            free(l);
        }
        llama_free(&back);
        llama_free(&base); /* the merge changed it: reload */
        load_llama(GOLD "/llama", &base);
        lora_free(&lora);
    }
    llama_free(&base);
}

static void same_file(const char *a, const char *b) {
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    if (!x || !y) fail_msg("cannot open %s or %s", a, b);
    int c, d;
    do {
        c = fgetc(x), d = fgetc(y);
        if (c != d) fail_msg("%s and %s differ", a, b);
    } while (c != EOF);
    fclose(x), fclose(y);
}

/* Metadata round trip: source config.json -> lorasc -> config.json. */
static void test_metadata(void **state) {
    (void)state;
    Llama m;
    load_llama(GOLD "/llama", &m);
    const char *out = fresh("meta");
    HfLlamaSaveOptions o = hf_llama_save_defaults();
    o.source_dir = GOLD "/llama";
    o.dtype = ST_BF16;
    if (hf_llama_save(out, &m, &o) != LSC_OK) fail_msg("%s", error_last());
    json_t *src = load_json(GOLD "/llama", "config.json"), *dst = load_json(out, "config.json");
    static const char *const same[] = {"bos_token_id",
                                       "eos_token_id",
                                       "pad_token_id",
                                       "rms_norm_eps",
                                       "rope_theta",
                                       "initializer_range",
                                       "tie_word_embeddings",
                                       "vocab_size",
                                       "hidden_size",
                                       "num_key_value_heads",
                                       "max_position_embeddings",
                                       "torch_dtype",
                                       "pretraining_tp",
                                       NULL};
    for (int i = 0; same[i]; i++)
        if (!json_equal(json_object_get(src, same[i]), json_object_get(dst, same[i])))
            fail_msg("config.json key %s was not kept", same[i]);
    assert_true(json_real_value(json_object_get(dst, "rms_norm_eps")) == 1e-5); /* exactly */
    printf("  metadata kept: bos %lld, eos %lld, pad %lld, rms_norm_eps %.17g, rope_theta %g\n",
           json_integer_value(json_object_get(dst, "bos_token_id")),
           json_integer_value(json_object_get(dst, "eos_token_id")),
           json_integer_value(json_object_get(dst, "pad_token_id")),
           json_real_value(json_object_get(dst, "rms_norm_eps")),
           json_real_value(json_object_get(dst, "rope_theta")));
    json_decref(src);
    json_decref(dst);
    static const char *const files[] = {"generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json", NULL};
    for (int i = 0; files[i]; i++) {
        char a[600], b[600];
        sub(a, sizeof a, GOLD "/llama", files[i]);
        sub(b, sizeof b, out, files[i]);
        same_file(a, b);
    }
    /* the bf16 export holds the bf16 weights exactly */
    char a[600], b[600];
    sub(a, sizeof a, GOLD "/llama", "model.safetensors");
    sub(b, sizeof b, out, "model.safetensors");
    same_tensors(a, b);
    /* without a source: the float32 eps written as 1e-05, ids as given */
    const char *bare = fresh("bare");
    o = hf_llama_save_defaults();
    o.bos_id = 5, o.eos_id = 6, o.pad_id = 7;
    if (hf_llama_save(bare, &m, &o) != LSC_OK) fail_msg("%s", error_last());
    dst = load_json(bare, "config.json");
    assert_true(json_real_value(json_object_get(dst, "rms_norm_eps")) == 1e-5);
    assert_true(json_real_value(json_object_get(dst, "rope_theta")) == 500000.0);
    assert_int_equal(json_integer_value(json_object_get(dst, "pad_token_id")), 7);
    json_decref(dst);
    llama_free(&m);
}

/* Each refused adapter: LSC_ERR with a sentence naming what it holds. */
static void test_refused(void **state) {
    (void)state;
    Llama m;
    load_llama(GOLD "/refused/base", &m);
    static const char *const cases[][2] = {
        {"modules_to_save", "modules_to_save"},
        {"layer_replication", "layer_replication"},
        {"rslora", "use_rslora"},
        {"rank_pattern", "rank_pattern"},
        {"alpha_pattern", "alpha_pattern"},
        {"regex", "regular expression"},
        {"embeddings", "does not have"},
        {"bias", "bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[600];
        sub(dir, sizeof dir, GOLD "/refused", cases[i][0]);
        LoraAdapters lora;
        assert_int_equal(peft_load(dir, &m, &lora, be), LSC_ERR);
        if (!strstr(error_last(), cases[i][1]))
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i][0], error_last(), cases[i][1]);
        PeftInfo info;
        if (strcmp(cases[i][0], "embeddings") != 0)
            assert_int_equal(peft_read_info(dir, PEFT_LLAMA, &info), LSC_ERR);
        printf("  refused %-18s %s\n", cases[i][0], error_last());
    }
    /* a ViT adapter on a Llama, a Llama adapter for other layer counts */
    LoraAdapters lora;
    assert_int_equal(peft_load(GOLD "/vit_peft", &m, &lora, be), LSC_ERR);
    printf("  refused %-18s %s\n", "ViT adapter", error_last());
    llama_free(&m);
}

/* ------------------------------------------------------------------------------------------
 * ViT */

static Real *vit_logits(ViT *m, const Real *images, int B) {
    assert_int_equal(vit_forward(m, images, NULL, B), LSC_OK);
    const size_t n = (size_t)B * m->config.n_classes;
    Real *out = malloc(n * sizeof *out);
    be->to_host(be, out, m->acts.logits, n * sizeof *out);
    return out;
}

static void check_vit(ViT *m, const Real *images, int B, const char *ref, const char *what) {
    const int K = m->config.n_classes;
    const float *want = golden_f32(&g, ref, GOLDEN_SHAPE(B, K));
    if (!want) fail_msg("%s", g.error);
    Real *got = vit_logits(m, images, B);
    double worst = 0;
    for (int i = 0; i < B * K; i++)
        if (fabs((double)got[i] - want[i]) > worst) worst = fabs((double)got[i] - want[i]);
    const size_t bad = check_close_real(what, got, want, (size_t)B * K, 1e-4, 1e-4);
    free(got);
    if (bad) fail_msg("%s: %zu logits differ", what, bad);
    printf("  %-52s max |logit diff| %.3g\n", what, worst);
}

static void test_vit(void **state) {
    (void)state;
    const GoldenTensor *gi = golden_find(&g, "vit_images");
    assert_non_null(gi);
    const int B = (int)gi->dims[0];
    Real *grey = malloc((size_t)B * 28 * 28 * sizeof *grey);
    for (int i = 0; i < B * 28 * 28; i++) grey[i] = ((const float *)gi->data)[i];
    static const int sizes[3] = {224, 32, 48};
    for (int k = 0; k < 3; k++) {
        const int N = sizes[k];
        Real *img = malloc((size_t)B * N * N * sizeof *img);
        for (int b = 0; b < B; b++)
            assert_int_equal(image_resize_bilinear(img + (size_t)b * N * N, N, N,
                                                   grey + (size_t)b * 784, 1, 28, 28),
                             LSC_OK);
        char name[64];
        if (N != 224) {
            snprintf(name, sizeof name, "resized_%d", N);
            const float *want = golden_f32(&g, name, GOLDEN_SHAPE(B, 1, N, N));
            assert_non_null(want);
            assert_int_equal(check_close_real(name, img, want, (size_t)B * N * N, 1e-6, 1e-6), 0);
        }
        /* the base, its 5-class head, on grey images (folded RGB patch weights) */
        ViT m;
        ViTHfOptions o = {.channels = 1, .image_size = N};
        if (vit_hf_load(GOLD "/vit", &m, be, &o) != LSC_OK) fail_msg("%s", error_last());
        if (N != 224) {
            snprintf(name, sizeof name, "pos_%d", N);
            const int T = 1 + (N / 16) * (N / 16);
            const float *want = golden_f32(&g, name, GOLDEN_SHAPE(T, 16));
            assert_non_null(want);
            Real *pos = malloc((size_t)T * 16 * sizeof *pos);
            be->to_host(be, pos, m.w.tensors[VIT_POS], (size_t)T * 16 * sizeof *pos);
            assert_int_equal(check_close_real(name, pos, want, (size_t)T * 16, 1e-6, 1e-5), 0);
            free(pos);
        }
        char what[128];
        snprintf(name, sizeof name, "vit_logits_%d", N);
        snprintf(what, sizeof what, "ViT 224 on 28x28 resized to %d%s", N,
                 N == 224 ? "" : " (interpolated)");
        check_vit(&m, img, B, name, what);
        vit_free(&m);
        /* with the PEFT adapter: a new 3-class head, then the adapter's classifier */
        o.n_classes = 3;
        if (vit_hf_load(GOLD "/vit", &m, be, &o) != LSC_OK) fail_msg("%s", error_last());
        LoraAdapters lora;
        if (peft_load_vit(GOLD "/vit_peft", &m, &lora, be) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(lora.config.targets, LORA_BIT(LORA_Q) | LORA_BIT(LORA_V) |
                                                  LORA_BIT(LORA_UP) | LORA_BIT(LORA_DOWN));
        assert_int_equal(vit_attach_lora(&m, &lora), LSC_OK);
        snprintf(name, sizeof name, "vit_peft_logits_%d", N);
        snprintf(what, sizeof what, "PEFT ViT adapter at %d", N);
        check_vit(&m, img, B, name, what);
        if (N == 32) {
            /* exports: the adapter as PEFT's file; the merged model as HF, read back */
            const char *out = fresh("vit_peft");
            if (peft_save_vit(out, &m, &lora, "vit") != LSC_OK) fail_msg("%s", error_last());
            char x[600];
            sub(x, sizeof x, out, "adapter_model.safetensors");
            same_tensors(x, GOLD "/vit_peft/adapter_model.safetensors");
            same_adapter_config(out, GOLD "/vit_peft");
            keep_dir(out, "vit_peft");
            keep_dir(GOLD "/vit", "vit_base");
            Real *l = vit_logits(&m, img, B);
            keep_logits("vit_peft", "images", img, 1, 4, (int[]){B, 1, N, N}, l, (size_t)B * 3, B,
                        3);
            vit_merge_lora(&m, 1.0f);
            assert_int_equal(vit_attach_lora(&m, NULL), LSC_OK);
            const char *hf = fresh("vit_hf");
            if (vit_hf_save(hf, &m, NULL) != LSC_OK) fail_msg("%s", error_last());
            ViT back;
            if (vit_hf_load(hf, &back, be, NULL) != LSC_OK) fail_msg("%s", error_last());
            assert_int_equal(back.config.image_size, 32);
            assert_int_equal(back.config.channels, 1);
            check_vit(&back, img, B, name, "merged ViT export (1 channel, 32x32) read back");
            keep_dir(hf, "vit_hf");
            keep_logits("vit_hf", "images", img, 1, 4, (int[]){B, 1, N, N}, l, (size_t)B * 3, B, 3);
            free(l);
            vit_free(&back);
        }
        vit_attach_lora(&m, NULL);
        lora_free(&lora);
        vit_free(&m);
        free(img);
    }
    /* sizes that are no multiple of the patch, and CLIP interpolation, are refused */
    ViT m;
    ViTHfOptions o = {.channels = 1, .image_size = 28};
    assert_int_equal(vit_hf_load(GOLD "/vit", &m, be, &o), LSC_ERR);
    printf("  refused: %s\n", error_last());
    free(grey);
}

static int setup(void **state) {
    (void)state;
    be = backend_cpu_create(1);
    keep = getenv("LORASC_EXPORT_KEEP");
    if (golden_load(&g, GOLD "/interop.bin") != 0) {
        fprintf(stderr, "%s\n", g.error);
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lorasc_interop_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    golden_free(&g);
    backend_cpu_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_peft_import_export),
                                       cmocka_unit_test(test_metadata),
                                       cmocka_unit_test(test_refused), cmocka_unit_test(test_vit)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
