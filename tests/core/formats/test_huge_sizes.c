/* Sizes read from a model file are checked before anything is allocated by them: a lorasc
 * checkpoint whose section claims 2^62 elements, whose config claims a 7B model over a few
 * bytes of weights or a seq_len of 10^8, a ViT checkpoint likewise, llama2.c headers whose
 * sizes overflow or exceed the file, a GGUF block_count of 2^24 and 2^30, and Hugging Face
 * config.json files of a 7B Llama and a 4B ViT over a tiny safetensors file. Each is one sentence, no crash, and no
 * allocation of what the file claims (CI runs this under AddressSanitizer, which fails an
 * allocation of tens of gigabytes). */
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

#include "core/base/error.h"
#include "core/base/gguf.h"
#include "core/formats/checkpoint.h"
#include "core/formats/container.h"
#include "core/formats/gguf_llama.h"
#include "core/formats/hf_llama.h"
#include "core/formats/llama2c.h"
#include "core/formats/safetensors.h"
#include "core/formats/vit_checkpoint.h"
#include "core/formats/vit_hf.h"

static char dir[] = "/tmp/lorasc_huge_XXXXXX";

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* Expects `rc` to be an error whose message contains every needle. */
static void expect_error(int rc, const char *needle, const char *needle2) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle) || (needle2 && !strstr(error_last(), needle2)))
        fail_msg("error \"%s\" does not mention \"%s\"%s%s", error_last(), needle,
                 needle2 ? " and " : "", needle2 ? needle2 : "");
}

/* A Llama checkpoint of config ci (dim, hidden, layers, heads, kv heads, vocab, seq, tied,
 * rope style) whose every weight section holds 4 floats. */
static void write_llama_ckpt(const char *path, const int32_t ci[9]) {
    ContainerWriter w;
    assert_int_equal(container_write_begin(&w, path), LSC_OK);
    const float cf[2] = {10000.0f, 1e-5f}, four[4] = {1, 2, 3, 4};
    container_write_section(&w, "llama.config.i32", CONTAINER_I32, ci, 9);
    container_write_section(&w, "llama.config.f32", CONTAINER_F32, cf, 2);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        container_write_section(&w, name, CONTAINER_F32, four, 4);
    }
    assert_int_equal(container_write_end(&w), LSC_OK);
}

static void test_lorasc_checkpoint(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256];
    path_in_dir(path, sizeof path, "huge.lsc");
    Llama m;

    /* a section whose element count is 2^62: 8-byte elements make 2^65 bytes, which wrapped to
     * 0 ("needs 0 bytes") before the count was checked against the file */
    FILE *f = fopen(path, "wb");
    const uint32_t version = 1, n = 1, dtype = CONTAINER_I64, crc = 0;
    const uint64_t count = (uint64_t)1 << 62;
    char name[CONTAINER_NAME_LEN] = "train.step";
    fwrite("LSCCKPT", 1, 8, f);
    fwrite(&version, 4, 1, f);
    fwrite(&n, 4, 1, f);
    fwrite(name, 1, sizeof name, f);
    fwrite(&dtype, 4, 1, f);
    fwrite(&crc, 4, 1, f);
    fwrite(&count, 8, 1, f);
    fwrite(&count, 8, 1, f);
    fclose(f);
    expect_error(checkpoint_load_model(path, &m, be), "claims 4611686018427387904 elements of 8 bytes", "truncated or corrupt");
    assert_null(strstr(error_last(), "needs 0 bytes"));

    /* a valid 7B config (6.7e9 parameters, 27 GB) over 4-float sections: refused by the
     * section sizes before the model is allocated */
    const int32_t big[9] = {4096, 11008, 32, 32, 32, 32000, 2048, 0, 0};
    write_llama_ckpt(path, big);
    expect_error(checkpoint_load_model(path, &m, be), "section 'llama.token_embedding' holds 4 elements", "implies 131072000");
    /* a seq_len past the limit (the RoPE tables are seq_len x head_size / 2 each) */
    const int32_t long_seq[9] = {8, 12, 1, 2, 2, 11, 100000000, 1, 0};
    write_llama_ckpt(path, long_seq);
    expect_error(checkpoint_load_model(path, &m, be), "seq_len 100000000 is above lorasc's limit of 1048576", NULL);
    /* dimensions whose parameter count passes 2^36 (and would overflow the size table) */
    const int32_t overflow[9] = {1 << 30, 1 << 30, 1 << 30, 1, 1, 1 << 30, 8, 0, 0};
    write_llama_ckpt(path, overflow);
    expect_error(checkpoint_load_model(path, &m, be), "above lorasc's limit of", "parameters");
    backend_cpu_destroy(be);
}

static void test_vit_checkpoint(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256];
    path_in_dir(path, sizeof path, "huge_vit.ckpt");
    /* image 224, patch 16, 3 channels, dim 4096, 48 layers, 32 heads, mlp 16384, 1000
     * classes: 10^10 parameters claimed over 4-float sections */
    const int32_t ci[11] = {224, 16, 3, 4096, 48, 32, 16384, 1000, 0, 0, 1};
    const float eps = 1e-6f, four[4] = {1, 2, 3, 4};
    ContainerWriter w;
    assert_int_equal(container_write_begin(&w, path), LSC_OK);
    container_write_section(&w, "vit.config.i32", CONTAINER_I32, ci, 11);
    container_write_section(&w, "vit.config.f32", CONTAINER_F32, &eps, 1);
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        char name[CONTAINER_NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        container_write_section(&w, name, CONTAINER_F32, four, 4);
    }
    assert_int_equal(container_write_end(&w), LSC_OK);
    ViT m;
    expect_error(vit_checkpoint_load(path, &m, be), "holds 4 elements, but its ViT config", "dim 4096");
    backend_cpu_destroy(be);
}

static void test_llama2c(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char path[256];
    path_in_dir(path, sizeof path, "huge.bin");
    Llama m;
    /* dimensions whose products overflow 64 bits: refused by the parameter limit */
    const int32_t overflow[7] = {1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 1 << 20};
    FILE *f = fopen(path, "wb");
    fwrite(overflow, 4, 7, f);
    fclose(f);
    expect_error(llama2c_load(path, &m, be), "above lorasc's limit of", "parameters");
    /* a plausible 7B header over a 28-byte file: the size check comes before any allocation */
    const int32_t big[7] = {4096, 11008, 32, 32, 32, 32000, 2048};
    f = fopen(path, "wb");
    fwrite(big, 4, 7, f);
    fclose(f);
    expect_error(llama2c_load(path, &m, be), "has 28 bytes but its header", "implies");
    /* seq_len past the limit */
    const int32_t seq[7] = {8, 12, 1, 2, 2, 11, 100000000};
    f = fopen(path, "wb");
    fwrite(seq, 4, 7, f);
    fclose(f);
    expect_error(llama2c_load(path, &m, be), "seq_len 100000000 is above", NULL);
    backend_cpu_destroy(be);
}

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*size);
    assert_int_equal(fread(buf, 1, *size, f), *size);
    fclose(f);
    return buf;
}

static void test_gguf(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    size_t size;
    unsigned char *buf = slurp(LORASC_GOLDEN_DIR "/gguf_llama_tiny.gguf", &size);
    Gguf g;
    assert_int_equal(gguf_open_mem(&g, buf, size, "tiny.gguf"), LSC_OK);
    const GgufKV *kv = gguf_find(&g, "llama.block_count");
    assert_non_null(kv);
    const size_t off = (size_t)((const unsigned char *)kv->data - buf);
    gguf_close(&g);
    /* llama.block_count 2^24 (a model under the parameter limit) sized a table of 12 x 2^24
     * bytes before any tensor was looked at; 2^30 is refused by the parameter limit */
    const uint32_t layers = 1u << 24;
    memcpy(buf + off, &layers, 4);
    assert_int_equal(gguf_open_mem(&g, buf, size, "tiny.gguf"), LSC_OK);
    Llama m;
    expect_error(gguf_llama_load_gguf(&g, &m, be), "llama.block_count is 16777216 but the file holds only", NULL);
    gguf_close(&g);
    const uint32_t more = 1u << 30;
    memcpy(buf + off, &more, 4);
    assert_int_equal(gguf_open_mem(&g, buf, size, "tiny.gguf"), LSC_OK);
    expect_error(gguf_llama_load_gguf(&g, &m, be), "1073741824 layers", "above lorasc's limit");
    gguf_close(&g);
    free(buf);
    backend_cpu_destroy(be);
}

static void test_hf(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char sub[256], path[300];
    path_in_dir(sub, sizeof sub, "hf7b");
    mkdir(sub, 0777);
    snprintf(path, sizeof path, "%s/config.json", sub);
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\": \"llama\", \"hidden_size\": 4096, \"intermediate_size\": 11008, "
          "\"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"vocab_size\": 32000, "
          "\"tie_word_embeddings\": true}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", sub);
    const float four[4] = {1, 2, 3, 4};
    const StWriteEntry e = {.name = "model.embed_tokens.weight", .ndim = 2, .shape = {2, 2}, .data = four};
    assert_int_equal(safetensors_write(path, &e, 1, ST_F32, NULL), LSC_OK);
    Llama m;
    /* the shapes are checked against config.json before the 27 GB model is allocated */
    expect_error(hf_llama_load(sub, &m, be), "model.embed_tokens.weight", "[32000, 4096]");
    backend_cpu_destroy(be);
}

static void test_vit_hf(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    char sub[256], path[300];
    path_in_dir(sub, sizeof sub, "vithf");
    mkdir(sub, 0777);
    snprintf(path, sizeof path, "%s/config.json", sub);
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\": \"vit\", \"hidden_size\": 4096, \"num_hidden_layers\": 48, "
          "\"num_attention_heads\": 32, \"intermediate_size\": 16384, \"image_size\": 224, "
          "\"patch_size\": 16, \"num_channels\": 3, \"hidden_act\": \"gelu\"}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", sub);
    const float four[4] = {1, 2, 3, 4};
    const StWriteEntry e = {.name = "vit.embeddings.cls_token", .ndim = 3, .shape = {1, 1, 4}, .data = four};
    assert_int_equal(safetensors_write(path, &e, 1, ST_F32, NULL), LSC_OK);
    ViT m;
    /* 4 x 10^9 parameters claimed: the tensors are checked before the model is allocated */
    const ViTHfOptions opt = {.n_classes = 10};
    expect_error(vit_hf_load(sub, &m, be, &opt), "vit.embeddings", NULL);
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
        cmocka_unit_test(test_lorasc_checkpoint), cmocka_unit_test(test_vit_checkpoint),
        cmocka_unit_test(test_llama2c),           cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_hf),                cmocka_unit_test(test_vit_hf),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
