/* Hugging Face checkpoints and PEFT adapters against tests/golden/hf_tiny (written by
 * tests/reference/make_golden.py): the same tiny Llama as a llama2.c .bin (Meta layout,
 * interleaved RoPE) and as HF safetensors (q/k rows permuted, rotate_half RoPE; F32, BF16,
 * F16, 2 shards) must give torch's logits; a PEFT adapter written by the script must give
 * torch's LoRA logits on both layouts; exports (HF safetensors, PEFT) read back identically
 * and match the script's files key for key and value for value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>

#include "core/formats/llama2c.h"
#include "core/base/error.h"
#include "core/formats/hf_llama.h"
#include "core/formats/peft.h"
#include "core/formats/safetensors.h"
#include "tests/check.h"

#define GOLD LORASC_GOLDEN_DIR "/hf_tiny"

typedef struct Expected {
    int B, T, V;
    int32_t *tokens;
    float *base, *lora;
} Expected;

static Expected ex;
static Backend *be;

static void load_expected(void) {
    FILE *f = fopen(GOLD "/expected.bin", "rb");
    assert_non_null(f);
    int32_t h[3];
    assert_int_equal(fread(h, 4, 3, f), 3);
    ex.B = h[0], ex.T = h[1], ex.V = h[2];
    const size_t n = (size_t)ex.B * ex.T, nl = n * (size_t)ex.V;
    ex.tokens = malloc(n * 4);
    ex.base = malloc(nl * 4);
    ex.lora = malloc(nl * 4);
    assert_int_equal(fread(ex.tokens, 4, n, f), n);
    assert_int_equal(fread(ex.base, 4, nl, f), nl);
    assert_int_equal(fread(ex.lora, 4, nl, f), nl);
    fclose(f);
}

static void check_logits(Llama *m, const float *ref, const char *what, double atol) {
    assert_int_equal(llama_forward(m, ex.tokens, NULL, ex.B, ex.T), LSC_OK);
    const size_t n = (size_t)ex.B * ex.T * ex.V;
    Real *got = malloc(n * sizeof *got);
    be->to_host(be, got, m->acts.logits, n * sizeof *got);
    const size_t bad = check_close_real(what, got, ref, n, atol, 1e-4);
    free(got);
    if (bad) fail_msg("%s: %zu logits differ from torch", what, bad);
}

static Real *params_host(const Llama *m) {
    Real *h = malloc(m->num_params * sizeof *h);
    be->to_host(be, h, m->params, m->num_params * sizeof *h);
    return h;
}

static void load_hf(const char *dir, Llama *m) {
    if (hf_llama_load(dir, m, be) != LSC_OK) fail_msg("%s", error_last());
}

/* Meta layout (llama2.c) and HF layout give torch's logits; shards are identical to the
 * single file; BF16 / F16 files hold exactly the rounded F32 weights. */
static void test_layouts(void **state) {
    (void)state;
    Llama meta, hf, sh, h16;
    if (llama2c_load(GOLD "/meta.bin", &meta, be) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(meta.config.rope_style, ROPE_INTERLEAVED);
    check_logits(&meta, ex.base, "llama2.c layout", 1e-4);
    load_hf(GOLD "/hf", &hf);
    assert_int_equal(hf.config.rope_style, ROPE_HALF);
    assert_int_equal(hf.config.n_kv_heads, 2);
    assert_int_equal(hf.config.tied_embeddings, 0);
    check_logits(&hf, ex.base, "HF layout", 1e-4);
    load_hf(GOLD "/hf_sharded", &sh);
    Real *a = params_host(&hf), *b = params_host(&sh);
    assert_int_equal(hf.num_params, sh.num_params);
    assert_memory_equal(a, b, hf.num_params * sizeof *a);
    free(b);
    const char *dirs[2] = {GOLD "/hf_bf16", GOLD "/hf_f16"};
    for (int k = 0; k < 2; k++) {
        load_hf(dirs[k], &h16);
        b = params_host(&h16);
        for (size_t i = 0; i < hf.num_params; i++) {
            const float want = k == 0 ? safetensors_bf16_to_f32(safetensors_f32_to_bf16((float)a[i]))
                                      : safetensors_f16_to_f32(safetensors_f32_to_f16((float)a[i]));
            if ((float)b[i] != want)
                fail_msg("%s: parameter %zu is %.9g, expected %.9g", dirs[k], i, (double)b[i], (double)want);
        }
        check_logits(&h16, ex.base, dirs[k], k == 0 ? 0.1 : 0.01);
        free(b);
        llama_free(&h16);
    }
    printf("llama2.c and HF layouts give torch's logits; shards, BF16, F16 read exactly\n");
    free(a);
    llama_free(&meta);
    llama_free(&hf);
    llama_free(&sh);
}

/* The script's PEFT adapter (HF layout) gives torch's LoRA logits on both layouts. */
static void test_peft_import(void **state) {
    (void)state;
    Llama meta, hf;
    LoraAdapters la, lb;
    assert_int_equal(llama2c_load(GOLD "/meta.bin", &meta, be), LSC_OK);
    load_hf(GOLD "/hf", &hf);
    if (peft_load(GOLD "/peft", &hf, &la, be) != LSC_OK) fail_msg("%s", error_last());
    if (peft_load(GOLD "/peft", &meta, &lb, be) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(la.config.rank, 4);
    assert_true(la.scaling == 2.0f);
    assert_int_equal(la.config.targets, 0x7f);
    llama_attach_lora(&hf, &la);
    llama_attach_lora(&meta, &lb);
    check_logits(&hf, ex.lora, "HF layout + PEFT adapter", 1e-4);
    check_logits(&meta, ex.lora, "llama2.c layout + PEFT adapter (B of q/k un-permuted)", 1e-4);
    /* merged: same logits without the adapter */
    llama_merge_lora(&meta, 1.0f);
    llama_attach_lora(&meta, NULL);
    check_logits(&meta, ex.lora, "merged llama2.c layout", 1e-4);
    printf("PEFT adapter: torch's LoRA logits on both layouts and merged\n");
    llama_free(&meta);
    llama_free(&hf);
    lora_free(&la);
    lora_free(&lb);
}

static char tmpdir[64];

static void make_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lorasc_hf_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static void rm_tmp(const char *const *files) {
    char p[256];
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
        remove(p);
    }
    rmdir(tmpdir);
}

/* Two safetensors files hold the same keys, shapes and (bitwise) values. */
static void same_safetensors(const char *a, const char *b) {
    SafeTensors x, y;
    if (safetensors_open(&x, a) != LSC_OK || safetensors_open(&y, b) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(x.n_tensors, y.n_tensors);
    for (int i = 0; i < x.n_tensors; i++) {
        const StTensor *s = &x.tensors[i], *t = safetensors_find(&y, s->name);
        if (!t) fail_msg("%s lacks %s", b, s->name);
        assert_int_equal(s->ndim, t->ndim);
        assert_int_equal(s->dtype, t->dtype);
        for (int d = 0; d < s->ndim; d++) assert_int_equal(s->shape[d], t->shape[d]);
        if (memcmp(x.base + x.data_offset + s->begin, y.base + y.data_offset + t->begin,
                   s->end - s->begin) != 0)
            fail_msg("tensor %s differs between %s and %s", s->name, a, b);
    }
    safetensors_close(&x);
    safetensors_close(&y);
}

/* Merged-model export: the llama2.c-layout model saved as HF is the script's HF file. */
static void test_model_export(void **state) {
    (void)state;
    Llama meta, back;
    assert_int_equal(llama2c_load(GOLD "/meta.bin", &meta, be), LSC_OK);
    make_tmp();
    if (hf_llama_save(tmpdir, &meta, NULL) != LSC_OK) fail_msg("%s", error_last());
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    same_safetensors(p, GOLD "/hf/model.safetensors");
    load_hf(tmpdir, &back);
    check_logits(&back, ex.base, "exported HF model read back", 1e-4);
    llama_free(&back);
    if (hf_llama_save(tmpdir, &meta,
                      &(HfLlamaSaveOptions){
                          .dtype = ST_BF16, .bos_id = 1, .eos_id = 2, .pad_id = -1}) != LSC_OK)
        fail_msg("%s", error_last());
    same_safetensors(p, GOLD "/hf_bf16/model.safetensors");
    /* a ROPE_HALF model is written as it is */
    Llama hf;
    load_hf(GOLD "/hf", &hf);
    if (hf_llama_save(tmpdir, &hf,
                      &(HfLlamaSaveOptions){
                          .dtype = ST_F16, .bos_id = 1, .eos_id = 2, .pad_id = -1}) != LSC_OK)
        fail_msg("%s", error_last());
    same_safetensors(p, GOLD "/hf_f16/model.safetensors");
    printf("HF export of both layouts is byte-identical to the script's F32 / BF16 / F16 files\n");
    llama_free(&hf);
    llama_free(&meta);
    static const char *const files[] = {"config.json", "model.safetensors", NULL};
    rm_tmp(files);
}

/* PEFT export: keys, shapes and values as the script's PEFT file (for the interleaved
 * model, B of q/k re-permuted), the config's fields; DoRA magnitudes named and permuted. */
static void test_peft_export(void **state) {
    (void)state;
    Llama meta, hf;
    LoraAdapters lb;
    assert_int_equal(llama2c_load(GOLD "/meta.bin", &meta, be), LSC_OK);
    assert_int_equal(peft_load(GOLD "/peft", &meta, &lb, be), LSC_OK);
    make_tmp();
    if (peft_save(tmpdir, &meta, &lb, "hf_tiny") != LSC_OK) fail_msg("%s", error_last());
    char p[256];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", tmpdir);
    same_safetensors(p, GOLD "/peft/adapter_model.safetensors");
    snprintf(p, sizeof p, "%s/adapter_config.json", tmpdir);
    json_t *cfg = json_load_file(p, 0, NULL);
    assert_non_null(cfg);
    assert_string_equal(json_string_value(json_object_get(cfg, "peft_type")), "LORA");
    assert_int_equal(json_integer_value(json_object_get(cfg, "r")), 4);
    assert_true(json_number_value(json_object_get(cfg, "lora_alpha")) == 8.0);
    assert_int_equal(json_array_size(json_object_get(cfg, "target_modules")), 7);
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "target_modules"), 0)), "q_proj");
    assert_true(json_is_false(json_object_get(cfg, "use_dora")));
    assert_string_equal(json_string_value(json_object_get(cfg, "base_model_name_or_path")), "hf_tiny");
    json_decref(cfg);
    lora_free(&lb);

    /* DoRA: m = ||W||_row initialised on the interleaved model, exported in HF row order,
     * must equal the row norms of the HF checkpoint's q_proj / k_proj */
    LoraConfig dc = {.rank = 2, .alpha = 4.0f, .targets = LORA_BIT(LORA_Q) | LORA_BIT(LORA_K), .use_dora = 1};
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&meta.config, in, out);
    assert_int_equal(lora_create(&lb, be, &dc, meta.config.n_layers, in, out, 5), LSC_OK);
    llama_attach_lora(&meta, &lb);
    assert_int_equal(peft_save(tmpdir, &meta, &lb, NULL), LSC_OK);
    load_hf(GOLD "/hf", &hf);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", tmpdir);
    SafeTensors st;
    assert_int_equal(safetensors_open(&st, p), LSC_OK);
    assert_int_equal(st.n_tensors, 2 * 2 * 3);
    for (int l = 0; l < 2; l++)
        for (int t = 0; t < 2; t++) {
            char name[160];
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.self_attn.%s.lora_magnitude_vector",
                     l, t == 0 ? "q_proj" : "k_proj");
            const StTensor *m = safetensors_find(&st, name);
            if (!m) fail_msg("missing %s", name);
            assert_int_equal(m->ndim, 1);
            assert_int_equal(m->shape[0], out[t]);
            Real *mv = malloc((size_t)out[t] * sizeof *mv), *w = malloc((size_t)out[t] * in[t] * sizeof *w);
            float *norms = malloc((size_t)out[t] * sizeof *norms);
            assert_int_equal(safetensors_read(&st, m, mv), LSC_OK);
            be->to_host(be, w, llama_target_weight(&hf, t, l), (size_t)out[t] * in[t] * sizeof *w);
            for (int o = 0; o < out[t]; o++) {
                double s = 0;
                for (int i = 0; i < in[t]; i++) s += (double)w[(size_t)o * in[t] + i] * w[(size_t)o * in[t] + i];
                norms[o] = (float)sqrt(s);
            }
            assert_int_equal(check_close_real(name, mv, norms, (size_t)out[t], 1e-6, 1e-5), 0);
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.self_attn.%s.lora_B.weight",
                     l, t == 0 ? "q_proj" : "k_proj");
            assert_non_null(safetensors_find(&st, name));
            free(mv);
            free(w);
            free(norms);
        }
    safetensors_close(&st);
    snprintf(p, sizeof p, "%s/adapter_config.json", tmpdir);
    cfg = json_load_file(p, 0, NULL);
    assert_true(json_is_true(json_object_get(cfg, "use_dora")));
    assert_true(json_is_null(json_object_get(cfg, "base_model_name_or_path")));
    json_decref(cfg);
    /* and the DoRA file loads back into the same adapter */
    LoraAdapters back;
    if (peft_load(tmpdir, &meta, &back, be) != LSC_OK) fail_msg("%s", error_last());
    Real *x = malloc(lb.num_params * sizeof *x), *y = malloc(lb.num_params * sizeof *y);
    assert_int_equal(back.num_params, lb.num_params);
    be->to_host(be, x, lb.params, lb.num_params * sizeof *x);
    be->to_host(be, y, back.params, back.num_params * sizeof *y);
    assert_memory_equal(x, y, lb.num_params * sizeof *x);
    free(x);
    free(y);
    printf("PEFT export: keys, shapes and values equal the script's file; DoRA magnitudes in HF row order\n");
    lora_free(&back);
    llama_attach_lora(&meta, NULL);
    lora_free(&lb);
    llama_free(&hf);
    llama_free(&meta);
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors", NULL};
    rm_tmp(files);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

static void expect_load_error(const char *config, const char *needle) {
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    FILE *f = fopen(p, "w");
    fputs(config, f);
    fclose(f);
    Llama m;
    assert_int_equal(hf_llama_load(tmpdir, &m, be), LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" lacks \"%s\"", error_last(), needle);
    printf("  ok: %s\n", error_last());
}

static void test_malformed(void **state) {
    (void)state;
    make_tmp();
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    copy_file(GOLD "/hf/model.safetensors", p);
#define CFG(extra) "{\"hidden_size\": 32, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
                   "\"vocab_size\": 48, \"rms_norm_eps\": 1e-5" extra "}"
    expect_load_error(CFG(", \"num_hidden_layers\": 2, \"intermediate_size\": 65"), "the config implies [65, 32]");
    expect_load_error(CFG(", \"intermediate_size\": 64, \"num_hidden_layers\": 3"), "no tensor \"model.layers.2");
    expect_load_error(CFG(", \"num_hidden_layers\": 2"), "lacks \"intermediate_size\"");
    expect_load_error(CFG(", \"num_hidden_layers\": 2, \"intermediate_size\": 64, \"rope_scaling\": {\"type\": \"linear\"}"), "rope_scaling");
    expect_load_error(CFG(", \"num_hidden_layers\": 2, \"intermediate_size\": 64, \"model_type\": \"mistral\""), "mistral");
    expect_load_error("{\"hidden_size\": 32,", "config.json");
    expect_load_error("{\"hidden_size\": 32, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                      "\"num_hidden_layers\": 2, \"intermediate_size\": 64, \"vocab_size\": 49}",
                      "[49, 32]");
    /* a truncated weight file */
    FILE *f = fopen(p, "r+b");
    assert_int_equal(ftruncate(fileno(f), 5000), 0);
    fclose(f);
    expect_load_error(CFG(", \"num_hidden_layers\": 2, \"intermediate_size\": 64"), "truncated");
    remove(p);
    expect_load_error(CFG(", \"num_hidden_layers\": 2, \"intermediate_size\": 64"), "model.safetensors");
    static const char *const files[] = {"config.json", "model.safetensors", NULL};
    rm_tmp(files);
}

static int setup(void **state) {
    (void)state;
    be = backend_cpu_create(0);
    load_expected();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(ex.tokens);
    free(ex.base);
    free(ex.lora);
    backend_cpu_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),      cmocka_unit_test(test_peft_import),
        cmocka_unit_test(test_model_export), cmocka_unit_test(test_peft_export),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
