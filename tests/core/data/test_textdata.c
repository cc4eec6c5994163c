/* core/data/textdata.c: task names, positional splits, batches as a pure function of (seed, step),
 * and evaluation (loss and accuracy) against a direct computation. */
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
#include "core/tasks/text_eval.h"
#include "tests/model_fixture.h"

static void test_resolve(void **state) {
    (void)state;
    char buf[4096];
    assert_int_equal(textdata_resolve("text:apache", buf, sizeof buf), LSC_OK);
    assert_string_equal(buf, "/usr/share/common-licenses/Apache-2.0");
    assert_int_equal(textdata_resolve("text:/tmp/x.txt", buf, sizeof buf), LSC_OK);
    assert_string_equal(buf, "/tmp/x.txt");
    assert_int_equal(textdata_resolve("sst2", buf, sizeof buf), LSC_ERR);
    assert_non_null(strstr(error_last(), "unknown task 'sst2'"));
    assert_non_null(strstr(error_last(), "text:apache"));
    TextData d;
    assert_int_equal(textdata_load(&d, "text:/nonexistent/f.txt", 0.8, 0.1, 2), LSC_ERR);
    assert_non_null(strstr(error_last(), "/nonexistent/f.txt"));
    assert_int_equal(textdata_load(&d, "text:apache", 0.95, 0.1, 2), LSC_ERR);
    assert_non_null(strstr(error_last(), "fractions"));
}

static void test_splits_and_batches(void **state) {
    (void)state;
    TextData d;
    assert_int_equal(textdata_load(&d, "text:apache", 0.8, 0.1, 65), LSC_OK);
    assert_int_equal(d.n, d.len[0] + d.len[1] + d.len[2]);
    assert_int_equal(d.len[0], (size_t)floor(0.8 * (double)d.n));
    assert_int_equal(d.start[1], d.len[0]);
    assert_int_equal(d.start[2], d.len[0] + d.len[1]);
    assert_int_equal(textdata_split_parse("val"), TEXT_VAL);
    assert_int_equal(textdata_split_parse("dev"), -1);
    enum { B = 4, T = 16 };
    int32_t t1[B * T], y1[B * T], t2[B * T], y2[B * T];
    assert_int_equal(textdata_batch(&d, TEXT_VAL, 7, 3, B, T, t1, y1), LSC_OK);
    assert_int_equal(textdata_batch(&d, TEXT_VAL, 7, 3, B, T, t2, y2), LSC_OK);
    assert_memory_equal(t1, t2, sizeof t1); /* pure function of (seed, step) */
    assert_int_equal(textdata_batch(&d, TEXT_VAL, 7, 4, B, T, t2, y2), LSC_OK);
    assert_memory_not_equal(t1, t2, sizeof t1);
    for (int b = 0; b < B; b++) {
        /* each window lies in the split, and targets are the next bytes */
        const unsigned char *lo = d.bytes + d.start[TEXT_VAL];
        const unsigned char *hit = NULL;
        for (size_t p = 0; p + T < d.len[TEXT_VAL] && !hit; p++) {
            int same = 1;
            for (int i = 0; i < T && same; i++) same = lo[p + i] == t1[b * T + i] && lo[p + i + 1] == y1[b * T + i];
            if (same) hit = lo + p;
        }
        assert_non_null(hit);
    }
    assert_int_equal(textdata_steps_per_epoch(&d, B, T), (long)((d.len[0] + B * T - 1) / (B * T)));
    textdata_free(&d);
}

static void test_evaluate(void **state) {
    (void)state;
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = fixture_tiny_config(ROPE_INTERLEAVED, 1);
    c.vocab_size = 256;
    c.seq_len = 16;
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 3, 0.5);
    TextData d;
    assert_int_equal(textdata_load(&d, "text:apache", 0.8, 0.1, 17), LSC_OK);
    enum { T = 16 };
    double loss, acc;
    assert_int_equal(text_eval_run(&d, TEXT_TEST, &m, 3, T, 5, &loss, &acc), LSC_OK);
    /* direct: windows 0..4 of the test split one at a time */
    double sum = 0;
    long correct = 0;
    const unsigned char *base = d.bytes + d.start[TEXT_TEST];
    for (int w = 0; w < 5; w++) {
        int32_t tok[T], tgt[T];
        for (int i = 0; i < T; i++) tok[i] = base[w * T + i], tgt[i] = base[w * T + i + 1];
        assert_int_equal(llama_forward(&m, tok, tgt, 1, T), LSC_OK);
        sum += m.mean_loss;
        for (int i = 0; i < T; i++) {
            const Real *row = m.acts.logits + (size_t)i * 256;
            int best = 0;
            for (int v = 1; v < 256; v++) if (row[v] > row[best]) best = v;
            correct += best == tgt[i];
        }
    }
    assert_true(fabs(loss - sum / 5) < 1e-5 * (1 + fabs(loss)));
    assert_true(fabs(acc - (double)correct / (5.0 * T)) < 1e-12);
    assert_true(loss > 0 && acc >= 0 && acc <= 1);
    textdata_free(&d);
    llama_free(&m);
    backend_cpu_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_splits_and_batches),
        cmocka_unit_test(test_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
