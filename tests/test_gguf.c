/* The GGUF reader (core/base/gguf.h) on files the `gguf` Python package wrote
 * (tests/reference/make_gguf_golden.py): every metadata value type, string arrays, alignment,
 * dequantisation of F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 bit for bit equal to
 * gguf.quants.dequantize; malformed variants (each a sentence, never a crash); and the llama
 * loader (core/formats/gguf_llama.h) on a tiny llama GGUF against the PyTorch golden logits.
 * The real SmolLM2 file is tests/test_gguf_smollm2.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/base/gguf.h"
#include "core/formats/gguf_llama.h"
#include "tests/check.h"
#include "tests/golden_io.h"

#define GOLDEN(f) LORASC_GOLDEN_DIR "/" f

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (regenerate with tests/reference/make_gguf_golden.py)", path);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void open_ok(Gguf *g, const char *path) {
    if (gguf_open(g, path) != LSC_OK) fail_msg("%s", error_last());
}

/* ------------------------------------------------------------------------------------------
 * metadata */

static void test_metadata(void **state) {
    (void)state;
    Gguf g;
    open_ok(&g, GOLDEN("gguf_tiny.gguf"));
    assert_int_equal(g.version, 3);
    assert_int_equal(g.alignment, 64);
    assert_int_equal(g.data_offset % 64, 0);
    assert_int_equal(g.n_tensors, 6);
    GgufString s;
    assert_int_equal(gguf_get_string(&g, "general.architecture", &s), LSC_OK);
    assert_true(gguf_string_eq(s, "lorasc-test"));
    const struct { const char *key; int64_t v; } ints[] = {
        {"lorasc.u8", 200},          {"lorasc.i8", -100},
        {"lorasc.u16", 60000},       {"lorasc.i16", -30000},
        {"lorasc.u32", 4000000000LL}, {"lorasc.i32", -2000000000LL},
        {"lorasc.u64", 1LL << 40},   {"lorasc.i64", -(1LL << 40)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        if (gguf_get_int(&g, ints[i].key, &v) != LSC_OK) fail_msg("%s", error_last());
        if (v != ints[i].v) fail_msg("%s: got %lld, expected %lld", ints[i].key, (long long)v, (long long)ints[i].v);
    }
    double f;
    assert_int_equal(gguf_get_float(&g, "lorasc.f32", &f), LSC_OK);
    assert_true(f == 0.15625);
    assert_int_equal(gguf_get_float(&g, "lorasc.f64", &f), LSC_OK);
    assert_true(f == 1e-300);
    assert_int_equal(gguf_get_float(&g, "lorasc.u8", &f), LSC_OK); /* integers read as numbers */
    assert_true(f == 200.0);
    int b = 0;
    assert_int_equal(gguf_get_bool(&g, "lorasc.bool", &b), LSC_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gguf_get_string(&g, "lorasc.str", &s), LSC_OK);
    assert_true(gguf_string_eq(s, "h\xc3\xa9llo"));
    const GgufKV *a;
    assert_int_equal(gguf_get_array(&g, "lorasc.strs", GGUF_TYPE_STRING, &a), LSC_OK);
    const char *want[] = {"a", "", "\xc4\xa0t\xc4\xa0h", "<|im_start|>"};
    assert_int_equal(a->n, 4);
    for (int i = 0; i < 4; i++)
        if (!gguf_string_eq(a->strings[i], want[i])) fail_msg("lorasc.strs[%d] differs", i);
    assert_int_equal(gguf_get_array(&g, "lorasc.ints", GGUF_TYPE_COUNT, &a), LSC_OK);
    assert_int_equal(a->n, 3);
    assert_int_equal(gguf_array_int(a, 0), 3);
    assert_int_equal(gguf_array_int(a, 1), -1);
    assert_true(gguf_array_float(a, 2) == 7.0);
    /* wrong types and absent keys: a sentence naming file and key */
    int64_t v;
    assert_int_equal(gguf_get_int(&g, "lorasc.str", &v), LSC_ERR);
    assert_non_null(strstr(error_last(), "\"lorasc.str\" is a string"));
    assert_non_null(strstr(error_last(), "gguf_tiny.gguf"));
    assert_int_equal(gguf_get_array(&g, "lorasc.ints", GGUF_TYPE_STRING, &a), LSC_ERR);
    assert_non_null(strstr(error_last(), "array of"));
    assert_int_equal(gguf_get_string(&g, "no.such.key", &s), LSC_ERR);
    assert_non_null(strstr(error_last(), "no metadata key \"no.such.key\""));
    assert_null(gguf_find(&g, "lorasc"));
    assert_null(gguf_tensor_find(&g, "t_f3"));
    gguf_close(&g);
}

/* ------------------------------------------------------------------------------------------
 * dequantisation against gguf.quants.dequantize */

static void check_tensors(const Gguf *g, Golden *gold) {
    static const struct { const char *name; uint32_t type; int n_dims; int64_t dims[3]; } want[] = {
        {"t_f32", GGML_TYPE_F32, 2, {32, 2, 1}},    {"t_f16", GGML_TYPE_F16, 3, {32, 2, 3}},
        {"t_bf16", GGML_TYPE_BF16, 1, {64, 1, 1}},  {"t_q8_0", GGML_TYPE_Q8_0, 2, {64, 2, 1}},
        {"t_q4_0", GGML_TYPE_Q4_0, 2, {32, 3, 1}},  {"t_q4_1", GGML_TYPE_Q4_1, 2, {96, 2, 1}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const GgufTensor *t = gguf_tensor_find(g, want[i].name);
        if (!t) fail_msg("%s: no tensor %s", g->name, want[i].name);
        assert_int_equal(t->type, want[i].type);
        assert_int_equal(t->n_dims, want[i].n_dims);
        for (int d = 0; d < 3; d++) assert_int_equal(t->dims[d], want[i].dims[d]);
        assert_int_equal(t->offset % g->alignment, 0);
        const size_t n = (size_t)t->n_elements;
        const float *ref = golden_f32(gold, want[i].name, GOLDEN_SHAPE((int64_t)n));
        if (!ref) fail_msg("%s", gold->error);
        float *got = malloc(n * sizeof *got);
        assert_int_equal(gguf_tensor_to_float(g, t, got, n), LSC_OK);
        /* numpy and the C dequantiser round the same operations: equal bit for bit (NaNs too) */
        for (size_t j = 0; j < n; j++)
            if (memcmp(&got[j], &ref[j], 4) != 0)
                fail_msg("%s %s[%zu]: got %.9g, gguf.quants.dequantize gives %.9g", g->name,
                         want[i].name, j, (double)got[j], (double)ref[j]);
        assert_int_equal(gguf_tensor_to_float(g, t, got, n - 1), LSC_ERR);
        free(got);
    }
}

static void test_dequantize(void **state) {
    (void)state;
    Golden gold;
    if (golden_load(&gold, GOLDEN("gguf_tiny.bin")) != 0) fail_msg("%s", gold.error);
    Gguf g;
    open_ok(&g, GOLDEN("gguf_tiny.gguf"));
    check_tensors(&g, &gold);
    gguf_close(&g);
    open_ok(&g, GOLDEN("gguf_tiny_a32.gguf"));
    assert_int_equal(g.alignment, 32);
    check_tensors(&g, &gold);
    gguf_close(&g);
    /* version 2 has the same little-endian layout */
    size_t size;
    unsigned char *buf = slurp(GOLDEN("gguf_tiny_a32.gguf"), &size);
    buf[4] = 2;
    if (gguf_open_mem(&g, buf, size, "v2.gguf") != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(g.version, 2);
    check_tensors(&g, &gold);
    gguf_close(&g);
    free(buf);
    golden_free(&gold);
    /* special halves beyond the golden ones, and the not-dequantised types */
    assert_true(ggml_f16_to_f32(0x3c00) == 1.0f && ggml_f16_to_f32(0xc000) == -2.0f);
    assert_true(ggml_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    assert_true(ggml_bf16_to_f32(0x3f80) == 1.0f);
    float out[256];
    const unsigned char zeros[256] = {0};
    assert_int_equal(ggml_dequantize(GGML_TYPE_Q4_K, zeros, out, 256), LSC_ERR);
    assert_non_null(strstr(error_last(), "Q4_K"));
    assert_int_equal(ggml_dequantize(GGML_TYPE_Q8_0, zeros, out, 31), LSC_ERR);
    assert_int_equal(ggml_block_size(GGML_TYPE_Q4_1), 32);
    assert_int_equal(ggml_type_size(GGML_TYPE_Q4_1), 20);
    assert_int_equal(ggml_type_size(4), 0); /* removed Q4_2 */
}

/* ------------------------------------------------------------------------------------------
 * malformed files: a copy of a valid file with one field changed */

typedef struct Fixture {
    unsigned char *buf;
    size_t size;
    Gguf g; /* the valid file, parsed: field offsets come from its pointers */
} Fixture;

static void fixture_open(Fixture *f, const char *path) {
    f->buf = slurp(path, &f->size);
    if (gguf_open_mem(&f->g, f->buf, f->size, "orig.gguf") != LSC_OK) fail_msg("%s", error_last());
}

static void fixture_close(Fixture *f) {
    gguf_close(&f->g);
    free(f->buf);
}

static size_t at(const Fixture *f, const void *p) { return (size_t)((const unsigned char *)p - f->buf); }

/* Opens a copy of the file with `len` bytes at `off` replaced by `bytes` (truncated to
 * `size`) and checks that it fails with one sentence naming the file and containing want. */
static void expect_error(const Fixture *f, size_t size, size_t off, const void *bytes, size_t len,
                         const char *want) {
    unsigned char *copy = malloc(f->size ? f->size : 1);
    memcpy(copy, f->buf, f->size);
    if (len) memcpy(copy + off, bytes, len);
    Gguf g;
    error_clear();
    const int rc = gguf_open_mem(&g, copy, size, "bad.gguf");
    if (rc == LSC_OK) {
        gguf_close(&g);
        fail_msg("a file that should be refused (%s) was opened", want);
    }
    const char *msg = error_last();
    const size_t n = strlen(msg);
    if (strncmp(msg, "bad.gguf ", 9) != 0 || n < 2 || msg[n - 1] != '.' || strchr(msg, '\n'))
        fail_msg("not one sentence naming the file: \"%s\"", msg);
    if (want && !strstr(msg, want)) fail_msg("expected \"%s\" in \"%s\"", want, msg);
    free(copy);
}

static void put_u32(unsigned char *b, uint32_t v) { memcpy(b, &v, 4); }
static void put_u64(unsigned char *b, uint64_t v) { memcpy(b, &v, 8); }

static void test_malformed(void **state) {
    (void)state;
    Fixture f;
    fixture_open(&f, GOLDEN("gguf_tiny.gguf"));
    const Gguf *g = &f.g;
    unsigned char b[8];
    /* every truncation before the end of the last tensor's data */
    size_t data_end = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const size_t e = at(&f, g->tensors[i].data) + g->tensors[i].n_bytes;
        if (e > data_end) data_end = e;
    }
    for (size_t n = 0; n < data_end; n++) expect_error(&f, n, 0, NULL, 0, NULL);
    expect_error(&f, 3, 0, NULL, 0, "magic");
    expect_error(&f, 20, 0, NULL, 0, "truncated");
    expect_error(&f, data_end - 1, 0, NULL, 0, "runs past the end");

    expect_error(&f, f.size, 0, "GGUX", 4, "does not start with the magic");
    put_u32(b, 1);
    expect_error(&f, f.size, 4, b, 4, "version 1");
    put_u32(b, 4);
    expect_error(&f, f.size, 4, b, 4, "version 4");
    put_u64(b, 1ULL << 60); /* huge counts */
    expect_error(&f, f.size, 8, b, 8, "claims");
    put_u64(b, UINT64_MAX);
    expect_error(&f, f.size, 16, b, 8, "claims");

    /* key/values */
    const GgufKV *kv0 = &g->kv[0];
    put_u64(b, UINT64_MAX); /* a key longer than the file */
    expect_error(&f, f.size, at(&f, kv0->key.data) - 8, b, 8, "runs past the end");
    put_u32(b, 13); /* unknown value type */
    expect_error(&f, f.size, at(&f, kv0->key.data) + kv0->key.len, b, 4, "unknown value type 13");
    const GgufKV *ints = gguf_find(g, "lorasc.ints"), *strs = gguf_find(g, "lorasc.strs");
    put_u32(b, 99); /* unknown array element type */
    expect_error(&f, f.size, at(&f, ints->data) - 12, b, 4, "unknown element type 99");
    put_u64(b, 1ULL << 62); /* an array longer than the file (would overflow n * 4) */
    expect_error(&f, f.size, at(&f, ints->data) - 8, b, 8, "runs past the end");
    put_u64(b, 1ULL << 61); /* a string array longer than the file */
    expect_error(&f, f.size, at(&f, strs->data) - 8, b, 8, "runs past the end");
    put_u64(b, UINT64_MAX - 3); /* a string inside an array, longer than the file */
    expect_error(&f, f.size, at(&f, strs->strings[2].data) - 8, b, 8, "runs past the end");
    const GgufKV *al = gguf_find(g, "general.alignment");
    put_u32(b, 48);
    expect_error(&f, f.size, at(&f, al->data), b, 4, "power of two");
    put_u32(b, 0);
    expect_error(&f, f.size, at(&f, al->data), b, 4, "power of two");
    put_u32(b, GGUF_TYPE_UINT64); /* the alignment must be a uint32 */
    expect_error(&f, f.size, at(&f, al->data) - 4, b, 4, NULL);
    const GgufKV *u8 = gguf_find(g, "lorasc.u8");
    expect_error(&f, f.size, at(&f, u8->key.data), "lorasc.i8", 9, "has the key \"lorasc.i8\" twice");

    /* tensor infos: name, n_dims, dims, type, offset */
    const GgufTensor *t0 = &g->tensors[0], *t1 = &g->tensors[1], *tl = &g->tensors[g->n_tensors - 1];
    const size_t nd0 = at(&f, t0->name.data) + t0->name.len;   /* t_f32: 2 dims */
    const size_t type0 = nd0 + 4 + 8 * t0->n_dims, off0 = type0 + 4;
    const size_t nd1 = at(&f, t1->name.data) + t1->name.len;   /* t_f16: 3 dims */
    const size_t off1 = nd1 + 4 + 8 * t1->n_dims + 4;
    const size_t ndl = at(&f, tl->name.data) + tl->name.len;   /* t_q4_1 */
    const size_t offl = ndl + 4 + 8 * tl->n_dims + 4;
    put_u32(b, 0);
    expect_error(&f, f.size, nd0, b, 4, "0 dimensions");
    put_u32(b, 5);
    expect_error(&f, f.size, nd0, b, 4, "5 dimensions");
    put_u64(b, 1ULL << 40);
    {
        unsigned char two[16];
        memcpy(two, b, 8);
        memcpy(two + 8, b, 8);
        expect_error(&f, f.size, nd0 + 4, two, 16, "overflow");
    }
    put_u64(b, 1ULL << 63);
    expect_error(&f, f.size, nd0 + 4, b, 8, "overflow");
    put_u64(b, 33); /* a Q4_1 row that is not whole blocks */
    expect_error(&f, f.size, ndl + 4, b, 8, "block size 32");
    put_u32(b, 4); /* removed Q4_2 */
    expect_error(&f, f.size, type0, b, 4, "unknown type 4");
    put_u32(b, 1000);
    expect_error(&f, f.size, type0, b, 4, "unknown type 1000");
    put_u64(b, t1->offset + 1); /* misaligned */
    expect_error(&f, f.size, off1, b, 8, "not a multiple of the alignment 64");
    put_u64(b, t1->offset + 32);
    expect_error(&f, f.size, off1, b, 8, "not a multiple of the alignment 64");
    put_u64(b, tl->offset + 1024); /* data past the end */
    expect_error(&f, f.size, offl, b, 8, "runs past the end");
    put_u64(b, UINT64_MAX - 63); /* aligned, and offset + size overflows */
    expect_error(&f, f.size, off0, b, 8, "runs past the end");
    put_u64(b, 1ULL << 40); /* a 2-d tensor whose byte size exceeds the file */
    expect_error(&f, f.size, nd0 + 4 + 8, b, 8, "runs past the end");
    expect_error(&f, f.size, at(&f, t1->name.data), "t_f32", 5, "has the tensor name \"t_f32\" twice");
    /* the llama loader refuses what is not a llama */
    Llama m;
    Backend *be = backend_cpu_create(0);
    assert_int_equal(gguf_llama_load_gguf(g, &m, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "holds a \"lorasc-test\" model"));
    backend_cpu_destroy(be);
    fixture_close(&f);
    /* a file of zero bytes and a path that does not exist */
    Gguf e;
    assert_int_equal(gguf_open(&e, "/nonexistent/x.gguf"), LSC_ERR);
    assert_non_null(strstr(error_last(), "/nonexistent/x.gguf"));
}

/* ------------------------------------------------------------------------------------------
 * the llama loader on a tiny llama GGUF (llama_dora.bin's weights, q/k permuted the way
 * llama.cpp's converter does): its base logits are llama_dora.bin's */

static void test_llama_tiny(void **state) {
    (void)state;
    Golden gold;
    if (golden_load(&gold, GOLDEN("llama_dora.bin")) != 0) fail_msg("%s", gold.error);
    Backend *be = backend_cpu_create(0);
    Llama m;
    if (gguf_llama_load(GOLDEN("gguf_llama_tiny.gguf"), &m, be) != LSC_OK) fail_msg("%s", error_last());
    const LlamaConfig *c = &m.config;
    assert_int_equal(c->dim, 16);
    assert_int_equal(c->hidden_dim, 24);
    assert_int_equal(c->n_layers, 2);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->vocab_size, 23);
    assert_int_equal(c->seq_len, 8);
    assert_int_equal(c->tied_embeddings, 0);
    assert_int_equal(c->rope_style, ROPE_INTERLEAVED);
    assert_true(c->rope_theta == 10000.0f && c->norm_eps == 1e-5f);
    const int B = 2, T = 5, V = 23;
    const int32_t *tokens = golden_i32(&gold, "tokens", GOLDEN_SHAPE(B, T));
    const float *ref = golden_f32(&gold, "base_logits", GOLDEN_SHAPE(B * T, V));
    if (!tokens || !ref) fail_msg("%s", gold.error);
    assert_int_equal(llama_forward(&m, tokens, NULL, B, T), LSC_OK);
    Real *logits = malloc((size_t)B * T * V * sizeof *logits);
    be->to_host(be, logits, m.acts.logits, (size_t)B * T * V * sizeof(Real));
    /* test_golden.c's logits tolerance */
    assert_int_equal(check_close_real("gguf_llama_tiny logits", logits, ref, (size_t)B * T * V, 1e-5, 1e-4), 0);
    free(logits);
    llama_free(&m);
    golden_free(&gold);

    /* a missing tensor, an extra one, a wrong shape: sentences naming the tensor */
    Fixture f;
    fixture_open(&f, GOLDEN("gguf_llama_tiny.gguf"));
    const GgufTensor *q = gguf_tensor_find(&f.g, "blk.1.attn_q.weight");
    const GgufTensor *out = gguf_tensor_find(&f.g, "output_norm.weight");
    Gguf g;
    unsigned char *copy = malloc(f.size);
    const struct { const GgufTensor *t; const char *rename; const char *want; } cases[] = {
        {q, "blk.1.attn_x.weight", "holds tensor \"blk.1.attn_x.weight\""},
        {q, "blk.7.attn_q.weight", "holds tensor \"blk.7.attn_q.weight\""},
        {out, "output_bias.weight", "holds tensor \"output_bias.weight\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, f.buf, f.size);
        assert_int_equal(strlen(cases[i].rename), cases[i].t->name.len);
        memcpy(copy + at(&f, cases[i].t->name.data), cases[i].rename, cases[i].t->name.len);
        if (gguf_open_mem(&g, copy, f.size, "tiny.gguf") != LSC_OK) fail_msg("%s", error_last());
        assert_int_equal(gguf_llama_load_gguf(&g, &m, be), LSC_ERR);
        if (!strstr(error_last(), cases[i].want)) fail_msg("expected \"%s\" in \"%s\"", cases[i].want, error_last());
        gguf_close(&g);
    }
    memcpy(copy, f.buf, f.size); /* llama.block_count 3: layer 2 is missing */
    unsigned char b[8];
    put_u32(b, 3);
    memcpy(copy + at(&f, gguf_find(&f.g, "llama.block_count")->data), b, 4);
    if (gguf_open_mem(&g, copy, f.size, "tiny.gguf") != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(gguf_llama_load_gguf(&g, &m, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "has no tensor \"blk.2.attn_norm.weight\" (llama.block_count is 3)"));
    gguf_close(&g);
    memcpy(copy, f.buf, f.size);
    put_u64(b, 8); /* blk.1.attn_q [16, 16] claims 8 columns */
    memcpy(copy + at(&f, q->name.data) + q->name.len + 4, b, 8);
    if (gguf_open_mem(&g, copy, f.size, "tiny.gguf") != LSC_OK) fail_msg("%s", error_last());
    assert_int_equal(gguf_llama_load_gguf(&g, &m, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "blk.1.attn_q.weight\" has dims [8, 16]"));
    gguf_close(&g);
    free(copy);
    fixture_close(&f);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_llama_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
