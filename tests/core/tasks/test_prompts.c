/* core/tasks/prompts.c: MeZO's template strings per task, rows with the loss on the
 * continuation only (including left truncation and Alpaca's EOS), and the candidate
 * log-probability against a hand computation. Uses a self-written byte tokenizer, and
 * stories260K's tok512.bin from the mirror ($LORASC_DATA) when present. */
#include <math.h>
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
#include "core/tasks/prompts.h"
#include "tests/task_fixture.h"

static void check_prompt(TaskId task, const Example *e, int fewshot, const char *want_prompt, int c,
                         const char *want_cont) {
    char *p, *k;
    assert_int_equal(prompts_text(task, e, fewshot, &p), LSC_OK);
    if (strcmp(p, want_prompt) != 0) fprintf(stderr, "  %s prompt:\n[%s]\nexpected\n[%s]\n", datasets_name(task), p, want_prompt);
    assert_string_equal(p, want_prompt);
    assert_int_equal(prompts_continuation(task, e, c, &k), LSC_OK);
    assert_string_equal(k, want_cont);
    free(p), free(k);
}

static void test_templates(void **state) {
    (void)state;
    Example e = {.text = "a gem", .label = 1};
    check_prompt(TASK_SST2, &e, 0, "a gem It was", -1, " great");
    check_prompt(TASK_SST2, &e, 0, "a gem It was", 0, " terrible");
    e = (Example){.text = "Cats sleep.", .text2 = "Cats rest.", .label = 0};
    check_prompt(TASK_RTE, &e, 0, "Cats sleep.\nDoes this mean that \"Cats rest.\" is true? Yes or No?\n", -1, "Yes");
    e.label = 2;
    check_prompt(TASK_CB, &e, 0, "Cats sleep.\nDoes this mean that \"Cats rest.\" is true? Yes, No, or Maybe?\n", -1, "Maybe");
    e = (Example){.text = "The sky is blue.", .text2 = "is sky blue", .label = 1};
    check_prompt(TASK_BOOLQ, &e, 0, "The sky is blue. is sky blue?", -1, " Yes");
    e = (Example){.text = "Mark told Pete he was late .", .extra = "Mark", .extra2 = "He", .label = 0};
    check_prompt(TASK_WSC, &e, 0, "Mark told Pete he was late .\nIn the previous sentence, does the pronoun \"he\" refer to Mark? Yes or No?\n", -1, "No");
    e = (Example){.text = "The river bank.", .text2 = "The bank lends.", .extra = "bank", .label = 0};
    check_prompt(TASK_WIC, &e, 0, "Does the word \"bank\" have the same meaning in these two sentences? Yes, No?\nThe river bank.\nThe bank lends.\n", -1, "No");
    e = (Example){.text = "Tom has two dogs.", .text2 = "How many dogs?", .extra = "Two", .label = 1};
    check_prompt(TASK_MULTIRC, &e, 0, "Tom has two dogs.\nQuestion: How many dogs?\nI found this answer \"Two\". Is that correct? Yes or No?\n", -1, "Yes");
    char *copa[] = {"The toilet filled.", "Water flowed from the spout."};
    e = (Example){.text = "The man turned on the faucet.", .extra = "effect", .cands = copa, .n_cands = 2, .label = 1};
    check_prompt(TASK_COPA, &e, 0, "The man turned on the faucet so ", -1, "water flowed from the spout.");
    e.extra = "cause";
    check_prompt(TASK_COPA, &e, 0, "The man turned on the faucet because ", 0, "the toilet filled.");
    char *ents[] = {"Bhutto", "Sindh"};
    e = (Example){.text = "Bhutto spoke.\n@highlight\nBhutto won", .text2 = "@placeholder gave a speech.", .cands = ents, .n_cands = 2, .label = 0};
    check_prompt(TASK_RECORD, &e, 0, "Bhutto spoke.\n- Bhutto won\n- ", 1, "Sindh gave a speech.");
    char *ans[] = {"Paris"};
    e = (Example){.text = "Paris is the capital.", .text2 = "What is the capital?", .extra = "France", .answers = ans, .n_answers = 1};
    check_prompt(TASK_SQUAD, &e, 0, "Title: France\nContext: Paris is the capital.\nQuestion: What is the capital?\nAnswer:", -1, " Paris\n");
    check_prompt(TASK_DROP, &e, 0, "Passage: Paris is the capital.\nQuestion: What is the capital?\nAnswer:", -1, " Paris\n");
    e = (Example){.text = "What is 1 + 1?", .extra2 = "1 + 1 = 2\n#### 2", .shots = "Question: q\nAnswer: a\n\n"};
    check_prompt(TASK_GSM8K, &e, 0, "Question: What is 1 + 1?\nAnswer:", -1, " 1 + 1 = 2\n#### 2\n\n");
    check_prompt(TASK_GSM8K, &e, 1, "Question: q\nAnswer: a\n\nQuestion: What is 1 + 1?\nAnswer:", -1, " 1 + 1 = 2\n#### 2\n\n");
    e = (Example){.text = "Say hi.", .text2 = "", .extra2 = "Hi."};
    check_prompt(TASK_ALPACA, &e, 0, "Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n", -1, "Hi.");
    e.text2 = "now";
    check_prompt(TASK_ALPACA, &e, 0, "Below is an instruction that describes a task, paired with an input that provides "
                 "further context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                 "Say hi.\n\n### Input:\nnow\n\n### Response:\n", -1, "Hi.");
    char *opts[] = {"1", "2", "3", "4"};
    e = (Example){.text = "What is 1+1?", .cands = opts, .n_cands = 4, .label = 1, .shots = "SHOTS\n\n"};
    check_prompt(TASK_MMLU, &e, 1, "SHOTS\n\nWhat is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", -1, " B");
    char *tgt[] = {"False"};
    e = (Example){.text = "not True is", .answers = tgt, .n_answers = 1, .shots = "Evaluate."};
    check_prompt(TASK_BBH, &e, 1, "Evaluate.\n\nQ: not True is\nA: Let's think step by step.", -1, " False\n");
    e = (Example){.text = "x", .label = 5};
    char *k;
    assert_int_equal(prompts_continuation(TASK_SST2, &e, -1, &k), LSC_ERR);
    assert_non_null(strstr(error_last(), "out of range"));
}

static void check_rows(const Tokenizer *tok) {
    Example e = {.text = "Cats sleep.", .text2 = "Cats rest.", .label = 1};
    PromptSeq s;
    assert_int_equal(prompts_encode(tok, TASK_RTE, &e, -1, 0, &s), LSC_OK);
    assert_int_equal(s.tokens[0], tok->bos_id);
    char *cont;
    assert_int_equal(tokenizer_decode(tok, s.tokens + s.n_prompt, (size_t)(s.n - s.n_prompt), &cont, NULL), LSC_OK);
    assert_string_equal(cont, "No"); /* the continuation tokens spell the label word */
    free(cont);
    enum { T = 512 };
    int32_t tokens[T], targets[T];
    int len = prompts_row(&s, T, 0, tokens, targets);
    assert_int_equal(len, s.n);
    for (int i = 0; i < T; i++) {
        int want = (i >= s.n_prompt - 1 && i < s.n - 1) ? s.tokens[i + 1] : -1;
        assert_int_equal(targets[i], want);
    }
    /* too long: the prompt is cut on the left, the continuation kept */
    const int short_T = s.n - s.n_prompt + 3;
    len = prompts_row(&s, short_T, 0, tokens, targets);
    assert_int_equal(len, short_T);
    assert_int_equal(tokens[short_T - 1], s.tokens[s.n - 1]);
    int unmasked = 0;
    for (int i = 0; i < short_T; i++) unmasked += targets[i] >= 0;
    assert_int_equal(unmasked, s.n - s.n_prompt);
    prompts_seq_free(&s);
    /* Alpaca: the response ends with EOS, which carries loss */
    Example a = {.text = "Say hi.", .text2 = "", .extra2 = "Hi."};
    assert_int_equal(prompts_encode(tok, TASK_ALPACA, &a, -1, 0, &s), LSC_OK);
    assert_int_equal(s.tokens[s.n - 1], tok->eos_id);
    len = prompts_row(&s, T, 0, tokens, targets);
    assert_int_equal(targets[s.n - 2], tok->eos_id);
    prompts_seq_free(&s);
}

static void test_rows_bytes(void **state) {
    (void)state;
    char path[] = "/tmp/lorasc_test_prompts_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(fixture_write_tokenizer(path), 0);
    Tokenizer tok;
    assert_int_equal(tokenizer_load(&tok, path), LSC_OK);
    check_rows(&tok);
    tokenizer_free(&tok);
    remove(path);
}

static void test_rows_mirror(void **state) {
    (void)state;
    const char *mir = getenv("LORASC_DATA");
    char path[4200];
    snprintf(path, sizeof path, "%s/llama2c_stories260K/tok512.bin", mir ? mir : "");
    if (!mir || access(path, R_OK) != 0) {
        printf("  SKIP: no mirror tokenizer (LORASC_DATA/llama2c_stories260K/tok512.bin); byte tokenizer tested\n");
        skip();
    }
    Tokenizer tok;
    assert_int_equal(tokenizer_load(&tok, path), LSC_OK);
    check_rows(&tok);
    tokenizer_free(&tok);
}

static void test_logprob(void **state) {
    (void)state;
    /* V = 3, T = 2; row 0 masked, row 1 target 2: log softmax([1, 2, 3])[2] = 3 - log(e + e^2 + e^3) */
    const Real logits[6] = {5, 5, 5, 1, 2, 3};
    const int32_t targets[2] = {-1, 2};
    const double want = 3.0 - log(exp(1.0) + exp(2.0) + exp(3.0));
    assert_true(fabs(prompts_row_logprob(logits, 3, targets, 2, 0) - want) < 1e-6);
    const int32_t both[2] = {0, 2};
    const double want2 = want + (5.0 - log(3 * exp(5.0)));
    assert_true(fabs(prompts_row_logprob(logits, 3, both, 2, 0) - want2) < 1e-6);
    assert_true(fabs(prompts_row_logprob(logits, 3, both, 2, 1) - want2 / 2) < 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates), cmocka_unit_test(test_rows_bytes), cmocka_unit_test(test_rows_mirror),
        cmocka_unit_test(test_logprob),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
