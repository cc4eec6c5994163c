/* Byte-level text tasks: file loading, positional splits, Philox batches, evaluation.
 * Not a tokenizer: a token is a byte (vocab 256). */
#include "core/data/textdata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/base/philox.h"

#define LICENSES "/usr/share/common-licenses/"

static const struct {
    const char *name, *files;
} TASKS[] = {
    {"text:apache", LICENSES "Apache-2.0"},
    {"text:gpl2", LICENSES "GPL-2"},
    {"text:gpl3", LICENSES "GPL-3"},
    {"text:lgpl2", LICENSES "LGPL-2.1"},
    {"text:lgpl3", LICENSES "LGPL-3"},
    {"text:gfdl", LICENSES "GFDL-1.3"},
    {"text:mpl", LICENSES "MPL-2.0"},
    {"text:artistic", LICENSES "Artistic"},
    {"text:gnu", LICENSES "GPL-2:" LICENSES "GPL-3:" LICENSES "LGPL-2.1:" LICENSES "GFDL-1.3"},
};
enum { N_TASKS = sizeof TASKS / sizeof TASKS[0] };

const char *textdata_task_names(void) {
    return "text:apache, text:gpl2, text:gpl3, text:lgpl2, text:lgpl3, text:gfdl, text:mpl, "
           "text:artistic, text:gnu (GPL-2 + GPL-3 + LGPL-2.1 + GFDL-1.3), or text:PATH for any file";
}

int textdata_resolve(const char *task, char *out, size_t size) {
    for (int i = 0; i < N_TASKS; i++) {
        if (strcmp(task, TASKS[i].name) == 0) {
            if ((size_t)snprintf(out, size, "%s", TASKS[i].files) >= size)
                return error_set("task '%s': path too long", task);
            return LSC_OK;
        }
    }
    if (strncmp(task, "text:", 5) == 0 && strchr(task + 5, '/')) {
        if ((size_t)snprintf(out, size, "%s", task + 5) >= size)
            return error_set("task '%s': path too long", task);
        return LSC_OK;
    }
    return error_set("unknown task '%s'; valid tasks: %s", task, textdata_task_names());
}

static int append_file(TextData *d, const char *task, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("task '%s': cannot read file '%s'", task, path);
    int rc = LSC_OK;
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        unsigned char *grown = realloc(d->bytes, d->n + got);
        if (!grown) {
            rc = error_set("task '%s': out of memory reading '%s'", task, path);
            break;
        }
        d->bytes = grown;
        memcpy(d->bytes + d->n, buf, got);
        d->n += got;
    }
    if (rc == LSC_OK && ferror(f)) rc = error_set("task '%s': error reading '%s'", task, path);
    fclose(f);
    return rc;
}

int textdata_load(TextData *d, const char *task, double train_frac, double val_frac,
                  size_t min_split) {
    memset(d, 0, sizeof *d);
    char files[4096];
    if (textdata_resolve(task, files, sizeof files) != LSC_OK) return LSC_ERR;
    if (!(train_frac > 0 && val_frac > 0 && train_frac + val_frac < 1))
        return error_set("task '%s': split fractions train %g, val %g must be > 0 with "
                         "train + val < 1 (test gets the rest)", task, train_frac, val_frac);
    snprintf(d->name, sizeof d->name, "%s", task);
    for (char *p = files, *next; p; p = next) {
        next = strchr(p, ':');
        if (next) *next++ = '\0';
        if (append_file(d, task, p) != LSC_OK) {
            textdata_free(d);
            return LSC_ERR;
        }
    }
    const size_t n_train = (size_t)floor(train_frac * (double)d->n);
    const size_t n_val = (size_t)floor(val_frac * (double)d->n);
    d->start[TEXT_TRAIN] = 0, d->len[TEXT_TRAIN] = n_train;
    d->start[TEXT_VAL] = n_train, d->len[TEXT_VAL] = n_val;
    d->start[TEXT_TEST] = n_train + n_val, d->len[TEXT_TEST] = d->n - n_train - n_val;
    static const char *names[] = {"train", "val", "test"};
    for (int s = 0; s < TEXT_NUM_SPLITS; s++) {
        if (d->len[s] < min_split) {
            const size_t len = d->len[s];
            textdata_free(d);
            return error_set("task '%s': the %s split has %zu bytes, fewer than the %zu needed "
                             "(sequence length + 1); use a longer text or larger fraction",
                             task, names[s], len, min_split);
        }
    }
    return LSC_OK;
}

void textdata_free(TextData *d) {
    free(d->bytes);
    memset(d, 0, sizeof *d);
}

int textdata_split_parse(const char *name) {
    if (strcmp(name, "train") == 0) return TEXT_TRAIN;
    if (strcmp(name, "val") == 0) return TEXT_VAL;
    if (strcmp(name, "test") == 0) return TEXT_TEST;
    return -1;
}

int textdata_batch(const TextData *d, TextSplit split, uint64_t seed, long step, int B, int T,
                   int32_t *tokens, int32_t *targets) {
    const size_t len = d->len[split];
    if (len < (size_t)T + 1)
        return error_set("task '%s': split too short (%zu bytes) for sequence length %d", d->name,
                         len, T);
    const unsigned char *base = d->bytes + d->start[split];
    const uint64_t stream = philox_stream(RNG_PURPOSE_DATA, (uint32_t)split, 0, 0);
    for (int b = 0; b < B; b++) {
        const uint64_t index = (uint64_t)step * (uint64_t)B + (uint64_t)b;
        const size_t pos = philox_u32(seed, stream, index) % (len - (size_t)T);
        for (int i = 0; i < T; i++) {
            tokens[b * T + i] = base[pos + (size_t)i];
            targets[b * T + i] = base[pos + (size_t)i + 1];
        }
    }
    return LSC_OK;
}

long textdata_steps_per_epoch(const TextData *d, int B, int T) {
    const size_t per = (size_t)B * (size_t)T;
    return (long)((d->len[TEXT_TRAIN] + per - 1) / per);
}
