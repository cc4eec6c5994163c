/* core/tasks/metrics.c: hand-computed cases, including the official SQuAD v1.1 normalisation rules
 * (case, punctuation, articles, whitespace), DROP's number handling, GSM8K's final number. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/tasks/metrics.h"

static void near(double got, double want, int line) {
    if (!(fabs(got - want) < 1e-12)) {
        fprintf(stderr, "  line %d: got %.15g, expected %.15g\n", line, got, want);
        fail();
    }
}
#define NEAR(got, want) near((got), (want), __LINE__)

static void check_norm(const char *in, const char *want) {
    char *s = metrics_squad_normalize(in);
    if (strcmp(s, want) != 0) fprintf(stderr, "  normalize(\"%s\") = \"%s\", expected \"%s\"\n", in, s, want);
    assert_string_equal(s, want);
    free(s);
}

static void test_classification(void **state) {
    (void)state;
    const int gold[] = {0, 0, 1, 2}, pred[] = {0, 1, 1, 2};
    NEAR(metrics_accuracy(pred, gold, 4), 0.75);
    /* class 0: tp 1 fn 1 -> 2/3; class 1: tp 1 fp 1 -> 2/3; class 2: 1; class 3 absent */
    NEAR(metrics_macro_f1(pred, gold, 4, 4), (2.0 / 3 + 2.0 / 3 + 1.0) / 3);
    NEAR(metrics_accuracy(pred, gold, 0), 0.0);
}

static void test_squad(void **state) {
    (void)state;
    check_norm("The  Cat, a dog!", "cat dog");
    check_norm("An apple-pie", "applepie");        /* '-' is punctuation: removed, not a space */
    check_norm("theater Anthem", "theater anthem"); /* articles only as whole words */
    check_norm("  A\tTHE an  ", "");
    check_norm("Paris (France).", "paris france");
    const char *g1[] = {"Eiffel Tower"};
    NEAR(metrics_squad_em("the Eiffel Tower.", g1, 1), 1.0);
    NEAR(metrics_squad_em("Eiffel", g1, 1), 0.0);
    const char *g2[] = {"the Eiffel Tower"};
    NEAR(metrics_squad_f1("Eiffel Tower in Paris", g2, 1), 2.0 / 3); /* p 1/2, r 1 */
    const char *g3[] = {"Paris", "in Paris France"};
    NEAR(metrics_squad_f1("Paris France", g3, 2), 0.8); /* max(2/3, 2*1*(2/3)/(5/3)) */
    NEAR(metrics_squad_em("paris", g3, 2), 1.0);
    const char *g4[] = {"x y y"};
    NEAR(metrics_squad_f1("x x y", g4, 1), 2.0 / 3); /* multiset overlap 2 of 3 each */
    NEAR(metrics_squad_f1("", g4, 1), 0.0);
    NEAR(metrics_squad_f1("anything", NULL, 0), 0.0);
}

static void test_drop(void **state) {
    (void)state;
    const char *g1[] = {"42.0"};
    NEAR(metrics_drop_em("42", g1, 1), 1.0);
    NEAR(metrics_drop_f1("42", g1, 1), 1.0);
    const char *g2[] = {"5"};
    NEAR(metrics_drop_f1("about 5 points", g2, 1), 0.5); /* p 1/3, r 1 */
    const char *g3[] = {"5 points"};
    NEAR(metrics_drop_f1("six points", g3, 1), 0.0);     /* gold number not predicted */
    NEAR(metrics_drop_f1("5 yards", g3, 1), 0.5);
    const char *g4[] = {"well known"};
    NEAR(metrics_drop_em("Well-known", g4, 1), 1.0);     /* split at hyphens */
    const char *g5[] = {"the Bears", "Chicago Bears"};
    NEAR(metrics_drop_em("bears", g5, 2), 1.0);
    NEAR(metrics_drop_f1("Chicago", g5, 2), 2.0 / 3);
}

static void test_gsm8k(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(metrics_gsm8k_extract("so 3 + 4 = 7\n#### 1,234", out, sizeof out), 1);
    assert_string_equal(out, "1234");
    assert_int_equal(metrics_gsm8k_extract("The answer is 18 dollars. Then 3.5.", out, sizeof out), 1);
    assert_string_equal(out, "3.5");
    assert_int_equal(metrics_gsm8k_extract("no digits here", out, sizeof out), 0);
    NEAR(metrics_gsm8k_em("She makes 9 * 2 = $18.", "18"), 1.0);
    NEAR(metrics_gsm8k_em("It is -3", "-3"), 1.0);
    NEAR(metrics_gsm8k_em("It is 18.00", "18"), 1.0);
    NEAR(metrics_gsm8k_em("It is 17", "18"), 0.0);
    NEAR(metrics_gsm8k_em("none", "18"), 0.0);
}

static void test_multirc_bbh(void **state) {
    (void)state;
    const int pred[] = {1, 0, 1, 0, 0}, gold[] = {1, 0, 0, 0, 0};
    const long group[] = {0, 0, 0, 1, 1};
    double f1a, em;
    metrics_multirc(pred, gold, group, 5, &f1a, &em);
    NEAR(f1a, 2.0 / 3); /* tp 1, fp 1, fn 0 */
    NEAR(em, 0.5);      /* question 0 wrong, question 1 right */
    char out[64];
    metrics_bbh_extract("Step one. So the answer is (B).\n\nQ: next", out, sizeof out);
    assert_string_equal(out, "(B)");
    NEAR(metrics_bbh_em("So the answer is True.", "True"), 1.0);
    NEAR(metrics_bbh_em("So the answer is False.", "True"), 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classification), cmocka_unit_test(test_squad), cmocka_unit_test(test_drop),
        cmocka_unit_test(test_gsm8k), cmocka_unit_test(test_multirc_bbh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
