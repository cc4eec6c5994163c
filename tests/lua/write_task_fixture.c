/* Writes the language-task fixture (tests/task_fixture.h: every dataset's original file names
 * and formats, a few examples each, plus a byte-fallback llama2.c tokenizer) under DIR, for the
 * process-level harness test test_lang_cli.sh. usage: write_task_fixture DIR */
#include <stdio.h>

#include "tests/task_fixture.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: write_task_fixture DIR\n");
        return 2;
    }
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tok/tokenizer.bin", argv[1]);
    if (fixture_write_tasks(argv[1]) != 0 || fixture_write(argv[1], "tok/README", "fixture\n") != 0 ||
        fixture_write_tokenizer(tok) != 0) {
        fprintf(stderr, "write_task_fixture: cannot write under %s\n", argv[1]);
        return 1;
    }
    return 0;
}
