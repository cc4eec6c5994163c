/* The limits a model config is checked against before anything is allocated (seq_len, the
 * parameter count, computed without overflow), the out-of-memory sentence naming the real
 * size (it read the count after freeing: "0 parameters"), and LoRA ranks above an adapted
 * matrix's rank refused. CI runs this under AddressSanitizer (tests/run.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/error.h"
#include "core/model/finetune.h"
#include "core/model/lora.h"
#include "core/model/vit.h"
#include "tests/model_fixture.h"

static void expect_error(int rc, const char *needle) {
    assert_int_equal(rc, LSC_ERR);
    if (!strstr(error_last(), needle)) fail_msg("error \"%s\" does not mention \"%s\"", error_last(), needle);
}

static void test_llama_limits(void **state) {
    (void)state;
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    assert_int_equal(llama_config_validate(&c), LSC_OK);
    c.seq_len = LLAMA_MAX_SEQ_LEN;
    assert_int_equal(llama_config_validate(&c), LSC_OK);
    c.seq_len = 100000000;
    expect_error(llama_config_validate(&c), "seq_len 100000000 is above lorasc's limit of 1048576 positions");
    /* a 7B Llama is valid; dimensions whose size table would overflow 64 bits are not */
    const LlamaConfig big = {.dim = 4096, .hidden_dim = 11008, .n_layers = 32, .n_heads = 32,
                             .n_kv_heads = 32, .vocab_size = 32000, .seq_len = 4096,
                             .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    assert_int_equal(llama_config_validate(&big), LSC_OK);
    LlamaConfig huge = big;
    huge.dim = huge.hidden_dim = huge.vocab_size = 1 << 30;
    huge.n_layers = 1 << 30;
    expect_error(llama_config_validate(&huge), "above lorasc's limit of 6.87e+10");
}

static void test_vit_limits(void **state) {
    (void)state;
    ViTConfig c = {.image_size = 28, .patch_size = 7, .channels = 1, .dim = 16, .n_layers = 1,
                   .n_heads = 2, .mlp_dim = 32, .n_classes = 10, .norm_eps = 1e-6f};
    assert_int_equal(vit_config_validate(&c), LSC_OK);
    c.dim = c.mlp_dim = 1 << 30;
    c.n_heads = 1;
    expect_error(vit_config_validate(&c), "above lorasc's limit");
}

/* A CPU backend whose allocations fail: llama_create / vit_create report the size asked. */
static void *no_alloc(Backend *be, size_t bytes) {
    (void)be, (void)bytes;
    return NULL;
}

static void test_out_of_memory_message(void **state) {
    (void)state;
    Backend *cpu = backend_cpu_create(1);
    Backend failing = *cpu;
    failing.alloc = no_alloc;
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    size_t sizes[LLAMA_NUM_PARAM_TENSORS], n = 0;
    llama_param_sizes(&c, sizes);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) n += sizes[i];
    char want[128];
    snprintf(want, sizeof want, "Out of memory allocating a Llama model with %zu parameters", n);
    Llama m;
    expect_error(llama_create(&m, &failing, &c), want);
    ViTConfig vc = {.image_size = 28, .patch_size = 7, .channels = 1, .dim = 16, .n_layers = 1,
                    .n_heads = 2, .mlp_dim = 32, .n_classes = 10, .norm_eps = 1e-6f};
    ViT v;
    expect_error(vit_create(&v, &failing, &vc), "Out of memory allocating a ViT with");
    assert_null(strstr(error_last(), "with 0 parameters"));
    backend_cpu_destroy(cpu);
}

static void test_lora_rank(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    const LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1); /* dim 8, kv dim 4 */
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    llama_lora_shapes(&c, in, out);
    LoraAdapters lora;
    LoraConfig lc = {.rank = 4, .alpha = 8, .targets = LORA_BIT(LORA_Q) | LORA_BIT(LORA_V)};
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK); /* rank 4 = kv dim */
    lora_free(&lora);
    lc.rank = 5; /* above v's 4 x 8 */
    expect_error(lora_check_rank(&lc, in, out), "LoRA rank 5 is larger than the 4 x 8 matrix of target v");
    lc.targets = LORA_BIT(LORA_Q);
    lc.rank = 9;
    expect_error(lora_check_rank(&lc, in, out), "use rank <= 8");
    /* training refuses it: finetune_begin checks the fast adapter's rank */
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    assert_int_equal(lora_create(&lora, be, &lc, c.n_layers, in, out, 1), LSC_OK); /* an export may */
    FinetuneConfig fc = {.total_steps = 4, .batch = 1, .seq = 4, .lora_plus_ratio = 1.0f,
                         .adamw = adamw_default_config()};
    cascade_preset("lora", &fc.cascade);
    Finetune ft;
    const FinetuneModel fm = finetune_model_llama(&m);
    expect_error(finetune_begin(&ft, &fm, &lora, &fc), "use rank <= 8");
    lora_free(&lora);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_limits), cmocka_unit_test(test_vit_limits),
        cmocka_unit_test(test_out_of_memory_message), cmocka_unit_test(test_lora_rank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
