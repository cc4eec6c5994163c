/* Test fixtures for the language tasks: a byte-fallback llama2.c tokenizer written to disk,
 * and tiny files in every dataset's original format (so every loader runs without the
 * mirror, and SQuAD / DROP / full ReCoRD, absent from the mirror, are still exercised).
 * Header-only, shared by test_datasets.c and test_prompts.c. */
#ifndef LORASC_TESTS_TASK_FIXTURE_H
#define LORASC_TESTS_TASK_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* mkdir -p dir/rel's parents, then write content. Returns 0 on success. */
static inline int fixture_write(const char *dir, const char *rel, const char *content) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(content, f);
    return fclose(f);
}

/* llama2.c tokenizer.bin: <unk>, <s>, </s>, the 256 byte pieces and "▁" (id 259). */
static inline int fixture_write_tokenizer(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int32_t max_len = 8;
    fwrite(&max_len, 4, 1, f);
    const char *special[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    float zero = 0.0f;
    for (int i = 0; i < 3; i++) {
        int32_t l = (int32_t)strlen(special[i]);
        fwrite(&zero, 4, 1, f), fwrite(&l, 4, 1, f), fwrite(special[i], 1, (size_t)l, f);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        int32_t l = 6;
        fwrite(&zero, 4, 1, f), fwrite(&l, 4, 1, f), fwrite(s, 1, 6, f);
    }
    int32_t l = 3;
    float score = -1.0f;
    fwrite(&score, 4, 1, f), fwrite(&l, 4, 1, f), fwrite("\xe2\x96\x81", 1, 3, f);
    return fclose(f);
}

/* Every task's original file names and formats, two or three examples per split. */
static inline int fixture_write_tasks(const char *d) {
    int rc = 0;
    rc |= fixture_write(d, "sst2/train.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nbleak and desperate \t0\n"
                                             "a gem \t1\nflat \t0\ndull , dull \t0\n");
    rc |= fixture_write(d, "sst2/dev.tsv", "sentence\tlabel\nfine work \t1\nawful \t0\n");
    const char *rte = "{\"premise\": \"Cats sleep.\", \"hypothesis\": \"Cats rest.\", \"label\": \"entailment\", \"idx\": 0}\n"
                      "{\"premise\": \"Dogs bark.\", \"hypothesis\": \"Dogs fly.\", \"label\": \"not_entailment\", \"idx\": 1}\n"
                      "{\"premise\": \"It rains.\", \"hypothesis\": \"It is wet.\", \"label\": \"entailment\", \"idx\": 2}\n";
    rc |= fixture_write(d, "rte/train.jsonl", rte) | fixture_write(d, "rte/val.jsonl", rte);
    const char *cb = "{\"premise\": \"He said it.\", \"hypothesis\": \"it is so\", \"label\": \"neutral\", \"idx\": 0}\n"
                     "{\"premise\": \"No way.\", \"hypothesis\": \"a way\", \"label\": \"contradiction\", \"idx\": 1}\n"
                     "{\"premise\": \"Yes.\", \"hypothesis\": \"yes\", \"label\": \"entailment\", \"idx\": 2}\n";
    rc |= fixture_write(d, "cb/train.jsonl", cb) | fixture_write(d, "cb/val.jsonl", cb);
    rc |= fixture_write(d, "boolq/train.jsonl",
                        "{\"question\": \"is sky blue\", \"passage\": \"Sky -- The sky is blue.\", \"idx\": 0, \"label\": true}\n"
                        "{\"question\": \"is fire cold\", \"passage\": \"Fire -- Fire is hot.\", \"idx\": 1, \"label\": false}\n");
    rc |= fixture_write(d, "boolq/val.jsonl",
                        "{\"question\": \"is ice cold\", \"passage\": \"Ice -- Ice is cold.\", \"idx\": 0, \"label\": true}\n");
    const char *wsc = "{\"text\": \"Mark told Pete he was late .\", \"target\": {\"span2_index\": 3, \"span1_index\": 0, "
                      "\"span1_text\": \"Mark\", \"span2_text\": \"He\"}, \"idx\": 0, \"label\": true}\n";
    rc |= fixture_write(d, "wsc/train.jsonl", wsc) | fixture_write(d, "wsc/val.jsonl", wsc);
    const char *wic = "{\"word\": \"bank\", \"sentence1\": \"The river bank.\", \"sentence2\": \"The bank lends.\", \"idx\": 0, "
                      "\"label\": false, \"start1\": 10, \"start2\": 4, \"end1\": 14, \"end2\": 8, \"version\": 1.1}\n";
    rc |= fixture_write(d, "wic/train.jsonl", wic) | fixture_write(d, "wic/val.jsonl", wic);
    const char *mrc = "{\"idx\": 0, \"version\": 1.1, \"passage\": {\"text\": \"Tom has two dogs.\", \"questions\": ["
                      "{\"question\": \"How many dogs?\", \"answers\": [{\"text\": \"Two\", \"idx\": 0, \"label\": 1}, "
                      "{\"text\": \"Three\", \"idx\": 1, \"label\": 0}], \"idx\": 0}, "
                      "{\"question\": \"Who has dogs?\", \"answers\": [{\"text\": \"Tom\", \"idx\": 2, \"label\": 1}], \"idx\": 1}]}}\n";
    rc |= fixture_write(d, "multirc/train.jsonl", mrc) | fixture_write(d, "multirc/val.jsonl", mrc);
    const char *copa = "{\"premise\": \"The man turned on the faucet.\", \"choice1\": \"The toilet filled.\", \"choice2\": "
                       "\"Water flowed from the spout.\", \"question\": \"effect\", \"label\": 1, \"idx\": 0}\n"
                       "{\"premise\": \"I fell.\", \"choice1\": \"The floor was wet.\", \"choice2\": \"I sang.\", "
                       "\"question\": \"cause\", \"label\": 0, \"idx\": 1}\n";
    rc |= fixture_write(d, "copa/train.jsonl", copa) | fixture_write(d, "copa/val.jsonl", copa);
    const char *rec = "{\"source\": \"CNN\", \"passage\": {\"text\": \"Bhutto spoke in Sindh.\\n@highlight\\nBhutto won\", "
                      "\"entities\": [{\"start\": 0, \"end\": 5}, {\"start\": 16, \"end\": 20}, {\"start\": 34, \"end\": 39}]}, "
                      "\"qas\": [{\"query\": \"@placeholder gave a speech.\", \"answers\": [{\"start\": 0, \"end\": 5, "
                      "\"text\": \"Bhutto\"}], \"idx\": 7}], \"idx\": 3}\n";
    rc |= fixture_write(d, "record/train.jsonl", rec) | fixture_write(d, "record/val.jsonl", rec);
    const char *squad = "{\"data\": [{\"title\": \"Paris\", \"paragraphs\": [{\"context\": \"Paris is the capital of France.\", "
                        "\"qas\": [{\"answers\": [{\"answer_start\": 0, \"text\": \"Paris\"}, {\"answer_start\": 0, \"text\": "
                        "\"Paris\"}], \"question\": \"What is the capital of France?\", \"id\": \"q1\"}, {\"answers\": "
                        "[{\"answer_start\": 24, \"text\": \"France\"}], \"question\": \"Paris is the capital of what?\", "
                        "\"id\": \"q2\"}]}]}], \"version\": \"1.1\"}";
    rc |= fixture_write(d, "squad/train-v1.1.json", squad) | fixture_write(d, "squad/dev-v1.1.json", squad);
    const char *drop = "{\"nfl_1\": {\"passage\": \"The Bears scored 7 points, then 3 more.\", \"qa_pairs\": ["
                       "{\"question\": \"How many points in total?\", \"answer\": {\"number\": \"10\", \"date\": {\"day\": \"\", "
                       "\"month\": \"\", \"year\": \"\"}, \"spans\": []}, \"query_id\": \"a\", \"validated_answers\": [{\"number\": "
                       "\"10\", \"date\": {\"day\": \"\", \"month\": \"\", \"year\": \"\"}, \"spans\": []}]}, "
                       "{\"question\": \"Who scored?\", \"answer\": {\"number\": \"\", \"date\": {\"day\": \"\", \"month\": \"\", "
                       "\"year\": \"\"}, \"spans\": [\"the Bears\"]}, \"query_id\": \"b\", \"validated_answers\": []}]}}";
    rc |= fixture_write(d, "drop/drop_dataset_train.json", drop) | fixture_write(d, "drop/drop_dataset_dev.json", drop);
    char gsm[4096] = "";
    for (int i = 0; i < 10; i++)
        snprintf(gsm + strlen(gsm), sizeof gsm - strlen(gsm),
                 "{\"question\": \"What is %d + 1?\", \"answer\": \"%d + 1 = <<%d+1=%d>>%d\\n#### %d\"}\n", i * 1000, i * 1000,
                 i * 1000, i * 1000 + 1, i * 1000 + 1, i * 1000 + 1);
    rc |= fixture_write(d, "gsm8k/train.jsonl", gsm) | fixture_write(d, "gsm8k/test.jsonl", gsm);
    rc |= fixture_write(d, "alpaca/alpaca_data.json",
                        "[\n  {\n    \"instruction\": \"Say hi.\",\n    \"input\": \"\",\n    \"output\": \"Hi.\"\n  },\n"
                        "  {\n    \"instruction\": \"Add.\",\n    \"input\": \"1 2\",\n    \"output\": \"3\"\n  }\n]");
    const char *csv = "What is 1+1?,1,2,3,4,B\n\"A \"\"quoted\"\", multi\nline question\",x,y,z,w,D\n";
    rc |= fixture_write(d, "mmlu/dev/toy_math_dev.csv", csv) | fixture_write(d, "mmlu/val/toy_math_val.csv", csv) |
          fixture_write(d, "mmlu/test/toy_math_test.csv", csv);
    rc |= fixture_write(d, "bbh/data/toy_logic.json",
                        "{\"canary\": \"x\", \"examples\": [{\"input\": \"not True is\", \"target\": \"False\"}, "
                        "{\"input\": \"True and True is\", \"target\": \"True\"}]}");
    rc |= fixture_write(d, "bbh/lib_prompt/toy_logic.txt", "Evaluate.\n\nQ: True is\nA: Let's think step by step. So the answer is True.");
    return rc;
}

#endif
