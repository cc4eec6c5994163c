/* Checkpoints: round trips of the lorasc format and of llama2.c's legacy format, and every
 * bad file a user can hand us (missing, wrong magic, truncated, corrupt, mismatched config,
 * inconsistent sizes) giving one clear sentence and no crash. CI also runs this under
 * AddressSanitizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/formats/checkpoint.h"
#include "core/formats/llama2c.h"
#include "core/base/error.h"
#include "tests/model_fixture.h"

static char dir[] = "/tmp/lorasc_ckpt_XXXXXX";

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void build_model(Llama *m, Backend *be, int tied) {
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, tied);
    assert_int_equal(llama_create(m, be, &c), LSC_OK);
    fixture_randomize(m, 17, 0.5);
}

/* Expects `rc` to be an error whose message contains `needle`. */
static void expect_error(int rc, const char *needle) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" does not mention \"%s\"", error_last(), needle);
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_prefix(const char *src, const char *dst, long bytes) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    for (long i = 0; i < bytes; i++) fputc(fgetc(in), out);
    fclose(in);
    fclose(out);
}

static void test_roundtrip_model(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256];
    path_in_dir(path, sizeof path, "model.lsc");
    for (int tied = 0; tied <= 1; tied++) {
        Llama a, b;
        build_model(&a, be, tied);
        assert_int_equal(checkpoint_save(path, &a, NULL, NULL, 7), LSC_OK);
        if (checkpoint_load_model(path, &b, be) != LSC_OK) fail_msg("%s", error_last());
        assert_memory_equal(&a.config, &b.config, sizeof a.config);
        assert_int_equal(a.num_params, b.num_params);
        assert_memory_equal(a.params, b.params, a.num_params * sizeof(Real));
        llama_free(&a);
        llama_free(&b);
    }
    backend_cpu_destroy(be);
}

static void test_roundtrip_lora(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256];
    path_in_dir(path, sizeof path, "lora.lsc");
    LlamaConfig c = fixture_tiny_config(ROPE_HALF, 1);
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraConfig lc = {.rank = 2, .alpha = 5, .targets = LORA_DEFAULT_TARGETS | LORA_BIT(LORA_DOWN)};
    LoraAdapters a, b, wrong;
    assert_int_equal(lora_create(&a, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    fixture_randomize_lora(&a, 3, 0.5);
    assert_int_equal(checkpoint_save(path, NULL, &a, NULL, 0), LSC_OK);
    if (checkpoint_load_lora(path, &b, be, &c) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(b.config.rank, 2);
    assert_float_equal(b.config.alpha, 5, 0);
    assert_int_equal(b.config.targets, lc.targets);
    assert_memory_equal(a.params, b.params, a.num_params * sizeof(Real));
    /* restoring into an adapter of another rank names both ranks */
    lc.rank = 3;
    assert_int_equal(lora_create(&wrong, be, &lc, c.n_layers, in, out, 1), LSC_OK);
    expect_error(checkpoint_load_state(path, NULL, &wrong, NULL, NULL), "rank 2");
    /* DoRA adapters round-trip as DoRA (magnitudes included) and refuse a LoRA adapter */
    LoraConfig dc = {.rank = 2, .alpha = 5, .targets = LORA_DEFAULT_TARGETS, .use_dora = 1};
    LoraAdapters dora, dora_back, plain;
    assert_int_equal(lora_create(&dora, be, &dc, c.n_layers, in, out, 1), LSC_OK);
    fixture_randomize_lora(&dora, 4, 0.5); /* A, B and m */
    dora.magnitudes_set = 1;
    assert_int_equal(checkpoint_save(path, NULL, &dora, NULL, 0), LSC_OK);
    if (checkpoint_load_lora(path, &dora_back, be, &c) != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(dora_back.config.use_dora, 1);
    assert_int_equal(dora_back.magnitudes_set, 1);
    assert_memory_equal(dora.params, dora_back.params, dora.num_params * sizeof(Real));
    dc.use_dora = 0;
    assert_int_equal(lora_create(&plain, be, &dc, c.n_layers, in, out, 1), LSC_OK);
    expect_error(checkpoint_load_state(path, NULL, &plain, NULL, NULL), "holds DoRA adapters");
    lora_free(&dora);
    lora_free(&dora_back);
    lora_free(&plain);
    /* a model section that is not there */
    Llama m;
    build_model(&m, be, 1);
    expect_error(checkpoint_load_state(path, &m, NULL, NULL, NULL), "no section 'llama.config.i32'");
    llama_free(&m);
    lora_free(&a);
    lora_free(&b);
    lora_free(&wrong);
    backend_cpu_destroy(be);
}

static void test_bad_files(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char good[256], bad[256];
    path_in_dir(good, sizeof good, "good.lsc");
    path_in_dir(bad, sizeof bad, "bad.lsc");
    Llama a, b;
    build_model(&a, be, 0);
    assert_int_equal(checkpoint_save(good, &a, NULL, NULL, 0), LSC_OK);
    const long size = file_size(good);

    expect_error(checkpoint_load_model("/nonexistent/dir/x.lsc", &b, be), "Cannot open");

    /* wrong magic */
    FILE *f = fopen(bad, "wb");
    fputs("GARBAGE!not a checkpoint at all", f);
    fclose(f);
    expect_error(checkpoint_load_model(bad, &b, be), "not a lorasc checkpoint");

    /* truncated at many places: header, section header, payload */
    const long cuts[] = {4, 11, 20, 70, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_prefix(good, bad, cuts[i]);
        assert_int_equal(checkpoint_load_model(bad, &b, be), LSC_ERR);
        assert_non_null(strstr(error_last(), bad));
    }
    copy_prefix(good, bad, size - 1);
    expect_error(checkpoint_load_model(bad, &b, be), "truncated");

    /* one flipped bit in the last weight (wcls), which sits before the 56-byte train.step */
    const long flip = size - 56 - 3;
    copy_prefix(good, bad, size);
    f = fopen(bad, "r+b");
    fseek(f, flip, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, flip, SEEK_SET);
    fputc(ch ^ 0x10, f);
    fclose(f);
    expect_error(checkpoint_load_model(bad, &b, be), "checksum");

    /* a future version */
    copy_prefix(good, bad, size);
    f = fopen(bad, "r+b");
    fseek(f, 8, SEEK_SET);
    const uint32_t v = 99;
    fwrite(&v, 4, 1, f);
    fclose(f);
    expect_error(checkpoint_load_model(bad, &b, be), "version 99");

    /* restoring into a model of another shape */
    LlamaConfig other = a.config;
    other.dim = 16;
    assert_int_equal(llama_create(&b, be, &other), LSC_OK);
    expect_error(checkpoint_load_state(good, &b, NULL, NULL, NULL), "another shape");
    llama_free(&b);
    llama_free(&a);
    backend_cpu_destroy(be);
}

/* Writes m in llama2.c's legacy layout (header, weights, two rope tables, wcls if untied). */
static void write_llama2c(const char *path, const Llama *m) {
    const LlamaConfig *c = &m->config;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->tied_embeddings ? c->vocab_size : -c->vocab_size, c->seq_len};
    FILE *f = fopen(path, "wb");
    fwrite(h, 4, 7, f);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (i == LLAMA_WCLS)
            for (int k = 0; k < c->seq_len * (c->dim / c->n_heads); k++) fwrite(&(float){0.5f}, 4, 1, f);
        for (size_t j = 0; j < m->param_sizes[i]; j++) fwrite(&(float){(float)m->w.tensors[i][j]}, 4, 1, f);
    }
    fclose(f);
}

static void test_llama2c(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256], bad[256];
    path_in_dir(path, sizeof path, "model.bin");
    path_in_dir(bad, sizeof bad, "bad.bin");
    for (int tied = 0; tied <= 1; tied++) {
        Llama a, b;
        build_model(&a, be, tied);
        write_llama2c(path, &a);
        if (llama2c_load(path, &b, be) != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(b.config.tied_embeddings, tied);
        assert_memory_equal(a.params, b.params, a.num_params * sizeof(Real));
        llama_free(&b);
        /* one float short: the size check names both sizes */
        copy_prefix(path, bad, file_size(path) - 4);
        expect_error(llama2c_load(bad, &b, be), "truncated or not a legacy");
        llama_free(&a);
    }
    /* a header that cannot describe a model */
    FILE *f = fopen(bad, "wb");
    const int32_t h[7] = {64, 172, 5, 7, 4, 512, 512}; /* 64 % 7 != 0 */
    fwrite(h, 4, 7, f);
    fclose(f);
    expect_error(llama2c_load(bad, &(Llama){0}, be), "divisible by n_heads");
    f = fopen(bad, "wb");
    fwrite(h, 4, 3, f);
    fclose(f);
    expect_error(llama2c_load(bad, &(Llama){0}, be), "too short");
    expect_error(llama2c_load("/nonexistent.bin", &(Llama){0}, be), "Cannot open");
    backend_cpu_destroy(be);
}

static int make_dir(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_model),
        cmocka_unit_test(test_roundtrip_lora),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_llama2c),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
