/* core/data/datasets.c + datafetch.c + the whole task pipeline: every loader on small files this
 * test writes in the original formats, the MeZO sampler (seeded, disjoint, notes when short),
 * missing-dataset errors, mirror copies with sha256 checks, and an end-to-end run of every task
 * (loader -> sampler -> prompt -> tokenizer -> tiny random Llama -> metric), on the mirror
 * ($LORASC_DATA) where it holds the task and on the self-written files always. */
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

#include "core/data/datafetch.h"
#include "core/data/datasets.h"
#include "core/base/error.h"
#include "core/tasks/metrics.h"
#include "core/tasks/prompts.h"
#include "core/base/sha256.h"
#include "tests/model_fixture.h"
#include "tests/task_fixture.h"

static char g_dir[256];   /* self-written task files */
static char g_tok[300];   /* self-written tokenizer */

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lorasc_test_datasets_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_tok, sizeof g_tok, "%s/tok.bin", g_dir);
    return fixture_write_tasks(g_dir) | fixture_write_tokenizer(g_tok);
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_loaders(void **state) {
    (void)state;
    Dataset d;
    assert_int_equal(datasets_load_raw(&d, TASK_SST2, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TRAIN], 5);
    assert_int_equal(d.n[DS_TEST], 2);
    assert_string_equal(d.split[DS_TRAIN][0].text, "it 's a charming journey ."); /* trailing space dropped */
    assert_int_equal(d.split[DS_TRAIN][0].label, 1);
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_CB, g_dir), LSC_OK);
    assert_int_equal(d.split[DS_TRAIN][0].label, 2); /* neutral */
    assert_int_equal(d.split[DS_TRAIN][1].label, 1); /* contradiction */
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_MULTIRC, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TRAIN], 3); /* one example per answer option */
    assert_int_equal(d.split[DS_TRAIN][0].group, d.split[DS_TRAIN][1].group);
    assert_true(d.split[DS_TRAIN][1].group != d.split[DS_TRAIN][2].group);
    assert_string_equal(d.split[DS_TRAIN][1].extra, "Three");
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_RECORD, g_dir), LSC_OK);
    const Example *r = &d.split[DS_TRAIN][0];
    assert_int_equal(r->n_cands, 2); /* Bhutto (twice) and Sindh */
    assert_string_equal(r->cands[1], "Sindh");
    assert_int_equal(r->label, 0);
    assert_int_equal(r->group, 7);
    assert_int_equal(d.subset, 0);
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_SQUAD, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TEST], 2);
    assert_string_equal(d.split[DS_TEST][0].extra, "Paris");
    assert_int_equal(d.split[DS_TEST][0].n_answers, 2);
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_DROP, g_dir), LSC_OK);
    assert_int_equal(d.split[DS_TEST][0].n_answers, 1); /* duplicate validated answer merged */
    assert_string_equal(d.split[DS_TEST][0].answers[0], "10");
    assert_string_equal(d.split[DS_TEST][1].answers[0], "the Bears");
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_GSM8K, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TRAIN], 2); /* the first 8 are the few-shot exemplars */
    assert_string_equal(d.split[DS_TEST][3].answers[0], "3001");
    assert_non_null(strstr(d.split[DS_TEST][0].shots, "Question: What is 7000 + 1?\nAnswer: "));
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_MMLU, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TEST], 2);
    assert_string_equal(d.split[DS_TEST][1].text, "A \"quoted\", multi\nline question");
    assert_int_equal(d.split[DS_TEST][1].label, 3);
    assert_non_null(strstr(d.split[DS_TEST][0].shots, "about toy math.\n\nWhat is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"));
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_BBH, g_dir), LSC_OK);
    assert_int_equal(d.n[DS_TRAIN], 0);
    assert_string_equal(d.split[DS_TEST][0].answers[0], "False");
    datasets_free(&d);

    assert_int_equal(datasets_load_raw(&d, TASK_ALPACA, g_dir), LSC_OK);
    assert_string_equal(d.split[DS_TRAIN][1].text2, "1 2");
    datasets_free(&d);

    /* a missing dataset names itself, the path and the fetch command */
    assert_int_equal(datasets_load_raw(&d, TASK_WIC, "/nonexistent/data"), LSC_ERR);
    assert_non_null(strstr(error_last(), "'wic'"));
    assert_non_null(strstr(error_last(), "/nonexistent/data/wic/train.jsonl"));
    assert_non_null(strstr(error_last(), "lorasc data fetch wic --from DIR"));
    assert_int_equal(datasets_parse("squad"), TASK_SQUAD);
    assert_int_equal(datasets_parse("sst-2"), -1);
    assert_non_null(strstr(error_last(), "sst2, rte"));
    /* a malformed record names file and line */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad", g_dir);
    assert_int_equal(fixture_write(bad, "rte/train.jsonl", "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": \"entailment\"}\n{oops\n"), 0);
    assert_int_equal(fixture_write(bad, "rte/val.jsonl", ""), 0);
    assert_int_equal(datasets_load_raw(&d, TASK_RTE, bad), LSC_ERR);
    assert_non_null(strstr(error_last(), "rte/train.jsonl line 2"));
}

static int str_same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* The MeZO sampler's contract, checked against the raw train split it draws from: every train
 * and val example is one of the raw train split's, none is taken twice (so train and val are
 * disjoint), train holds n_train whole units and val n_val (units: an SST-2 sentence, a MultiRC
 * question with all its options), and when the split is too small for the sizes asked
 * (all_taken) every raw example is in one of them. */
static void expect_train_val(TaskId task, DatasetSizes sz, uint64_t seed, size_t n_train,
                             size_t n_val, int all_taken) {
    Dataset raw, d;
    assert_int_equal(datasets_load_raw(&raw, task, g_dir), LSC_OK);
    assert_int_equal(datasets_load(&d, task, g_dir, &sz, seed), LSC_OK);
    char what[160];
    snprintf(what, sizeof what, "%s, %zu train + %zu val asked, seed %llu", datasets_name(task),
             sz.train, sz.val, (unsigned long long)seed);
    const size_t nr = raw.n[DS_TRAIN];
    int *taken_by = calloc(nr ? nr : 1, sizeof *taken_by); /* 0, or 1 + the split */
    assert_non_null(taken_by);
    const DataSplit splits[2] = {DS_TRAIN, DS_VAL};
    const char *names[2] = {"train", "val"};
    size_t units[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < d.n[splits[k]]; i++) {
            const Example *e = &d.split[splits[k]][i];
            size_t j = 0;
            for (; j < nr; j++) {
                const Example *r = &raw.split[DS_TRAIN][j];
                if (r->group == e->group && str_same(r->text, e->text) &&
                    str_same(r->text2, e->text2) && str_same(r->extra, e->extra))
                    break;
            }
            if (j == nr)
                fail_msg("%s: %s example %zu (group %ld, text \"%s\") is none of the raw train "
                         "split's %zu examples%s", what, names[k], i, e->group,
                         e->text ? e->text : "(null)", nr,
                         e->text ? "" : " (an emptied example: one unit taken twice?)");
            if (taken_by[j])
                fail_msg("%s: raw train example %zu (group %ld) is in %s and again in %s, expected "
                         "train and val disjoint", what, j, e->group, names[taken_by[j] - 1], names[k]);
            taken_by[j] = 1 + k;
            /* a new unit: no earlier example of this split shares its group */
            int seen = 0;
            for (size_t h = 0; h < i && !seen; h++) seen = d.split[splits[k]][h].group == e->group;
            units[k] += !seen;
        }
    for (int k = 0; k < 2; k++)
        if (units[k] != (k ? n_val : n_train))
            fail_msg("%s: %s holds %zu units, expected %zu", what, names[k], units[k],
                     k ? n_val : n_train);
    for (size_t j = 0; all_taken && j < nr; j++)
        if (!taken_by[j])
            fail_msg("%s: raw train example %zu is in neither train nor val, expected all %zu taken",
                     what, j, nr);
    free(taken_by);
    datasets_free(&d);
    datasets_free(&raw);
}

static void test_sampler(void **state) {
    (void)state;
    Dataset a, b;
    DatasetSizes sz = {.train = 2, .val = 2, .test = 1};
    assert_int_equal(datasets_load(&a, TASK_SST2, g_dir, &sz, 11), LSC_OK);
    assert_int_equal(datasets_load(&b, TASK_SST2, g_dir, &sz, 11), LSC_OK);
    assert_int_equal(a.n[DS_TRAIN], 2);
    assert_int_equal(a.n[DS_VAL], 2);
    assert_int_equal(a.n[DS_TEST], 1);
    assert_string_equal(a.note, "");
    for (int s = 0; s < DS_NUM_SPLITS; s++)
        for (size_t i = 0; i < a.n[s]; i++) assert_string_equal(a.split[s][i].text, b.split[s][i].text); /* seeded */
    for (size_t i = 0; i < a.n[DS_TRAIN]; i++)
        for (size_t j = 0; j < a.n[DS_VAL]; j++) assert_string_not_equal(a.split[DS_TRAIN][i].text, a.split[DS_VAL][j].text);
    datasets_free(&b);
    int differs = 0;
    for (uint64_t seed = 1; seed < 6 && !differs; seed++) {
        assert_int_equal(datasets_load(&b, TASK_SST2, g_dir, &sz, seed), LSC_OK);
        for (size_t i = 0; i < a.n[DS_TRAIN]; i++) differs |= strcmp(a.split[DS_TRAIN][i].text, b.split[DS_TRAIN][i].text) != 0;
        datasets_free(&b);
    }
    assert_true(differs);
    datasets_free(&a);

    /* smaller than asked: all taken, proportionally, and said */
    DatasetSizes big = {.train = 1000, .val = 500, .test = 1000};
    assert_int_equal(datasets_load(&a, TASK_SST2, g_dir, &big, 1), LSC_OK);
    assert_int_equal(a.n[DS_TRAIN] + a.n[DS_VAL], 5);
    assert_int_equal(a.n[DS_VAL], 2); /* round(5 * 500 / 1500) */
    assert_int_equal(a.n[DS_TEST], 2);
    assert_non_null(strstr(a.note, "fewer than the 1000 train + 500 val asked"));
    assert_non_null(strstr(a.note, "fewer than the 1000 test asked"));
    datasets_free(&a);

    /* train and val from disjoint units whatever the sizes: equal, unequal either way (a val
     * drawn from the wrong offset overlaps train only when they differ), and clamped (too few
     * examples: the sizes shrink in proportion and everything is taken) */
    expect_train_val(TASK_SST2, sz, 11, 2, 2, 0);
    expect_train_val(TASK_SST2, (DatasetSizes){.train = 3, .val = 1, .test = 1}, 11, 3, 1, 0);
    expect_train_val(TASK_SST2, (DatasetSizes){.train = 4, .val = 1, .test = 1}, 5, 4, 1, 1);
    expect_train_val(TASK_SST2, (DatasetSizes){.train = 1, .val = 3, .test = 1}, 7, 1, 3, 0);
    expect_train_val(TASK_SST2, big, 1, 3, 2, 1);
    expect_train_val(TASK_SST2, (DatasetSizes){.train = 8, .val = 2, .test = 1}, 2, 4, 1, 1);
    expect_train_val(TASK_SST2, (DatasetSizes){.train = 2, .val = 8, .test = 1}, 3, 1, 4, 1);

    /* MultiRC samples questions: options of one question stay together */
    DatasetSizes one = {.train = 1, .val = 1, .test = 2};
    assert_int_equal(datasets_load(&a, TASK_MULTIRC, g_dir, &one, 3), LSC_OK);
    assert_int_equal(a.n[DS_TRAIN] + a.n[DS_VAL], 3);
    assert_int_equal(a.n[DS_TEST], 3);
    datasets_free(&a);
    expect_train_val(TASK_MULTIRC, one, 3, 1, 1, 1);
}

static void sha_of(const char *content, char hex[65]) { sha256_buffer_hex(content, strlen(content), hex); }

static void test_datafetch(void **state) {
    (void)state;
    char mirror[400], dest[400], src_txt[1024], h1[65], h2[65];
    snprintf(mirror, sizeof mirror, "%s/mirror", g_dir);
    snprintf(dest, sizeof dest, "%s/dest", g_dir);
    const char *f1 = "{\"a\": 1}\n", *f2 = "x\ty\n";
    sha_of(f1, h1), sha_of(f2, h2);
    snprintf(src_txt, sizeof src_txt, "dataset: toy\nfiles (sha256  bytes  path):\n  %s  %zu  train.jsonl\n  %s  %zu  sub/dev.tsv\n",
             h1, strlen(f1), h2, strlen(f2));
    assert_int_equal(fixture_write(mirror, "toy/SOURCE.txt", src_txt), 0);
    assert_int_equal(fixture_write(mirror, "toy/train.jsonl", f1), 0);
    assert_int_equal(fixture_write(mirror, "toy/sub/dev.tsv", f2), 0);
    assert_int_equal(fixture_write(mirror, "toy/extra.txt", "not listed"), 0);
    assert_int_equal(fixture_write(mirror, "plain/file.txt", "no SOURCE.txt"), 0);
    const char *names[] = {"toy"};
    size_t unverified = 99;
    assert_int_equal(datafetch_from_dir(names, 1, mirror, dest, &unverified), LSC_OK);
    assert_int_equal(unverified, 0);
    char path[600], hex[65];
    snprintf(path, sizeof path, "%s/toy/sub/dev.tsv", dest);
    assert_int_equal(sha256_file_hex(path, hex, NULL), LSC_OK);
    assert_string_equal(hex, h2);
    snprintf(path, sizeof path, "%s/toy/extra.txt", dest);
    assert_int_equal(access(path, F_OK), -1); /* only listed files are copied */
    /* all folders: those with a SOURCE.txt */
    assert_int_equal(datafetch_from_dir(NULL, 0, mirror, dest, &unverified), LSC_OK);
    snprintf(path, sizeof path, "%s/plain/file.txt", dest);
    assert_int_equal(access(path, F_OK), -1);
    /* a folder without a file list is copied whole and counted as unverified */
    const char *plain[] = {"plain"};
    assert_int_equal(datafetch_from_dir(plain, 1, mirror, dest, &unverified), LSC_OK);
    assert_int_equal(unverified, 1);
    assert_int_equal(access(path, F_OK), 0);
    /* a corrupt mirror file: error naming it, copy removed */
    assert_int_equal(fixture_write(mirror, "toy/train.jsonl", "{\"a\": 2}\n"), 0);
    snprintf(path, sizeof path, "%s/toy/train.jsonl", dest);
    remove(path);
    assert_int_equal(datafetch_from_dir(names, 1, mirror, dest, NULL), LSC_ERR);
    assert_non_null(strstr(error_last(), "toy/train.jsonl has sha256"));
    assert_non_null(strstr(error_last(), h1));
    assert_int_equal(access(path, F_OK), -1);
    const char *none[] = {"nope"};
    assert_int_equal(datafetch_from_dir(none, 1, mirror, dest, NULL), LSC_ERR);
    assert_non_null(strstr(error_last(), "'nope' is not in the mirror"));
    assert_int_equal(datafetch_online(names, 1), LSC_ERR);
    assert_non_null(strstr(error_last(), "--from DIR"));
}

/* ---------------------------------------------------------------------------------------------
 * End to end */

static const char *mirror_dir(void) {
    const char *e = getenv("LORASC_DATA");
    return e && *e ? e : NULL;
}

/* One task through the pipeline with a tiny random model; returns the test metric. */
static double run_task(TaskId task, const char *dir, const Tokenizer *tok, Llama *m) {
    Dataset d;
    DatasetSizes sz = {.train = 3, .val = 2, .test = 2};
    if (datasets_load(&d, task, dir, &sz, 5) != LSC_OK) fail_msg("%s", error_last());
    const TaskKind kind = datasets_kind(task);
    const int T = m->config.seq_len;
    int32_t *tokens = malloc((size_t)T * sizeof *tokens), *targets = malloc((size_t)T * sizeof *targets);
    /* training rows: the loss is on the continuation only and finite */
    for (size_t i = 0; i < d.n[DS_TRAIN]; i++) {
        PromptSeq s;
        if (prompts_encode(tok, task, &d.split[DS_TRAIN][i], -1, 0, &s) != LSC_OK) fail_msg("%s", error_last());
        int len = prompts_row(&s, T, tok->eos_id, tokens, targets);
        int masked = 0;
        for (int k = 0; k < len; k++) masked += targets[k] < 0;
        assert_true(masked < len);
        prompts_seq_free(&s);
        assert_int_equal(llama_forward(m, tokens, targets, 1, len), LSC_OK);
        assert_true(isfinite(m->mean_loss) && m->mean_loss > 0);
    }
    /* evaluation on test (BBH / MMLU few-shot, GSM8K 8-shot) */
    const size_t n = d.n[DS_TEST];
    int *pred = calloc(n + 1, sizeof *pred), *gold = calloc(n + 1, sizeof *gold);
    long *group = calloc(n + 1, sizeof *group);
    double metric = 0.0;
    for (size_t i = 0; i < n; i++) {
        const Example *e = &d.split[DS_TEST][i];
        if (kind != TASK_KIND_GENERATE) {
            double scores[64];
            assert_true(prompts_num_candidates(task, e) <= 64);
            if (prompts_predict(m, tok, task, e, 1, 0, &pred[i], scores) != LSC_OK) fail_msg("%s", error_last());
            assert_true(pred[i] >= 0 && pred[i] < prompts_num_candidates(task, e));
            assert_true(isfinite(scores[pred[i]]) && scores[pred[i]] < 0);
            gold[i] = e->label, group[i] = e->group;
        } else {
            char *out;
            if (prompts_generate(m, tok, task, e, 1, 3, &out) != LSC_OK) fail_msg("%s", error_last());
            const char *const *ans = (const char *const *)e->answers;
            switch (task) {
            case TASK_GSM8K: metric += metrics_gsm8k_em(out, e->answers[0]); break;
            case TASK_DROP: metric += metrics_drop_f1(out, ans, e->n_answers); break;
            case TASK_BBH: metric += metrics_bbh_em(out, e->answers[0]); break;
            case TASK_ALPACA: break;
            default: metric += metrics_squad_f1(out, ans, e->n_answers); break;
            }
            /* generated together with the next example (one decoding forward for both): the
             * same answer as alone (greedy; the rows' logits agree to float rounding) */
            if (i + 1 < n) {
                const Example *two[2] = {e, &d.split[DS_TEST][i + 1]};
                char *both[2], *next;
                if (prompts_generate_many(m, tok, task, two, 2, 1, 3, both) != LSC_OK ||
                    prompts_generate(m, tok, task, two[1], 1, 3, &next) != LSC_OK)
                    fail_msg("%s", error_last());
                if (strcmp(both[0], out) || strcmp(both[1], next))
                    fail_msg("%s: generated together \"%s\" / \"%s\", alone \"%s\" / \"%s\"",
                             datasets_name(task), both[0], both[1], out, next);
                free(both[0]), free(both[1]), free(next);
            }
            free(out);
        }
    }
    if (kind != TASK_KIND_GENERATE) {
        if (task == TASK_MULTIRC) {
            double f1a, em;
            metrics_multirc(pred, gold, group, n, &f1a, &em);
            metric = em;
        } else {
            metric = metrics_accuracy(pred, gold, n) * (double)n;
        }
    }
    if (task != TASK_MULTIRC) metric = n ? metric / (double)n : 0.0;
    assert_true(metric >= 0.0 && metric <= 1.0);
    printf("  %-8s %-6s train %zu val %zu test %zu  metric %.3f  majority %.3f%s%s\n", datasets_name(task),
           dir == g_dir ? "files" : "mirror", d.n[DS_TRAIN], d.n[DS_VAL], n, metric, datasets_majority(&d, DS_TEST),
           d.note[0] ? "\n           note: " : "", d.note);
    free(pred), free(gold), free(group), free(tokens), free(targets);
    datasets_free(&d);
    return metric;
}

static void run_all(const char *dir, const char *tok_path, int mirror) {
    Tokenizer tok;
    if (tokenizer_load(&tok, tok_path) != LSC_OK) fail_msg("%s", error_last());
    Backend *be = backend_cpu_create(1);
    LlamaConfig c = {.dim = 16, .hidden_dim = 24, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                     .vocab_size = tok.vocab_size, .seq_len = 96, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                     .tied_embeddings = 1, .rope_style = ROPE_INTERLEAVED};
    Llama m;
    assert_int_equal(llama_create(&m, be, &c), LSC_OK);
    fixture_randomize(&m, 42, 0.3);
    for (int t = 0; t < TASK_COUNT; t++) {
        char probe[4300];
        snprintf(probe, sizeof probe, "%s/%s", dir, datasets_name((TaskId)t));
        if (mirror && access(probe, R_OK) != 0) {
            printf("  %-8s mirror: not held (%s is absent), unavailable here\n", datasets_name((TaskId)t), probe);
            continue;
        }
        run_task((TaskId)t, dir, &tok, &m);
    }
    llama_free(&m);
    backend_cpu_destroy(be);
    tokenizer_free(&tok);
}

static void test_end_to_end_files(void **state) {
    (void)state;
    run_all(g_dir, g_tok, 0);
}

static void test_end_to_end_mirror(void **state) {
    (void)state;
    const char *mir = mirror_dir();
    char tok[4200];
    if (mir) snprintf(tok, sizeof tok, "%s/llama2c_stories260K/tok512.bin", mir);
    if (!mir || access(tok, R_OK) != 0) {
        printf("  SKIP: no mirror (set LORASC_DATA to a directory holding the datasets and "
               "llama2c_stories260K/tok512.bin); the self-written files were tested above\n");
        skip();
    }
    run_all(mir, tok, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaders), cmocka_unit_test(test_sampler), cmocka_unit_test(test_datafetch),
        cmocka_unit_test(test_end_to_end_files), cmocka_unit_test(test_end_to_end_mirror),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
