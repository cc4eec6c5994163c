/* ViT checkpoints (core/formats/vit_checkpoint.h): a save/load round trip gives the same config,
 * bit-identical weights and the same logits; missing, truncated, corrupt and foreign files
 * fail with a sentence naming the file. */
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
#include "core/base/philox.h"
#include "core/formats/vit_checkpoint.h"
#include "kernels/backend.h"

static void test_round_trip(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    const ViTConfig vc = {.image_size = 8, .patch_size = 4, .channels = 1, .dim = 16, .n_layers = 2,
                          .n_heads = 2, .mlp_dim = 32, .n_classes = 3, .norm_eps = 1e-6f,
                          .gelu = GELU_ERF, .patch_bias = 1};
    ViT a, b;
    assert_int_equal(vit_create(&a, be, &vc), LSC_OK);
    vit_init_random(&a, 7);
    char path[] = "/tmp/lorasc_vitckpt_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    if (vit_checkpoint_save(path, &a) != LSC_OK) fail_msg("%s", error_last());
    if (vit_checkpoint_load(path, &b, be) != LSC_OK) fail_msg("%s", error_last());
    assert_memory_equal(&a.config, &b.config, sizeof a.config);
    assert_int_equal(a.num_params, b.num_params);
    assert_memory_equal(a.params, b.params, a.num_params * sizeof(Real));
    Real img[2 * 64];
    philox_normal(img, 2 * 64, 3, 4, 0, 1);
    assert_int_equal(vit_forward(&a, img, NULL, 2), LSC_OK);
    assert_int_equal(vit_forward(&b, img, NULL, 2), LSC_OK);
    assert_memory_equal(a.acts.logits, b.acts.logits, 2 * 3 * sizeof(Real));
    vit_free(&b);

    /* a flipped byte in the weights: the CRC catches it */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -5, SEEK_END);
    const int ch = fgetc(f);
    fseek(f, -5, SEEK_END);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_int_equal(vit_checkpoint_load(path, &b, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "checksum"));
    /* truncated */
    assert_int_equal(truncate(path, 200), 0);
    assert_int_equal(vit_checkpoint_load(path, &b, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "truncated"));
    /* not a checkpoint */
    f = fopen(path, "wb");
    fputs("hello, this is not a checkpoint at all", f);
    fclose(f);
    assert_int_equal(vit_checkpoint_load(path, &b, be), LSC_ERR);
    assert_non_null(strstr(error_last(), "bad magic"));
    remove(path);
    assert_int_equal(vit_checkpoint_load(path, &b, be), LSC_ERR);
    assert_non_null(strstr(error_last(), path));
    vit_free(&a);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
