/* Reader for the LSCGOLD1 golden files (see golden_io.h for the format).
 * Every length read from the file is checked against the bytes left, so a truncated or
 * corrupt file gives a sentence, never a crash. */
#include "tests/golden_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_MAGIC "LSCGOLD1"
#define REGEN_HINT "regenerate with /usr/bin/python3 tests/reference/make_golden.py"

static int fail(Golden *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A cursor over the file bytes. */
typedef struct Reader {
    const unsigned char *p;
    size_t left;
} Reader;

static int take(Reader *r, void *dst, size_t n) {
    if (n > r->left) return -1;
    if (dst) memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

static int take_u32(Reader *r, uint32_t *v) {
    unsigned char b[4];
    if (take(r, b, 4)) return -1;
    *v = le32(b);
    return 0;
}

static int read_file(Golden *g, const char *path, unsigned char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(g, "golden file %s cannot be opened (missing? run the test from the repository "
                       "root or set LORASC_GOLDEN_DIR; " REGEN_HINT ")", path);
    int rc = -1;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fail(g, "golden file %s cannot be sized", path);
        goto done;
    }
    *buf = malloc(size ? (size_t)size : 1);
    if (!*buf) {
        fail(g, "golden file %s: out of memory for %ld bytes", path, size);
        goto done;
    }
    if (fread(*buf, 1, (size_t)size, f) != (size_t)size) {
        fail(g, "golden file %s: read error", path);
        goto done;
    }
    *len = (size_t)size;
    rc = 0;
done:
    fclose(f);
    return rc;
}

int golden_load(Golden *g, const char *path) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path);
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;
    if (read_file(g, path, &buf, &len)) goto done;

    Reader r = {buf, len};
    char magic[8];
    uint32_t count;
    if (take(&r, magic, 8) || memcmp(magic, GOLDEN_MAGIC, 8) != 0) {
        fail(g, "golden file %s does not start with \"" GOLDEN_MAGIC "\" (not a golden file, or "
                "another format version; " REGEN_HINT ")", path);
        goto done;
    }
    if (take_u32(&r, &count) || count > 100000) {
        fail(g, "golden file %s: bad record count (corrupt; " REGEN_HINT ")", path);
        goto done;
    }
    g->tensors = calloc(count ? count : 1, sizeof *g->tensors);
    if (!g->tensors) {
        fail(g, "golden file %s: out of memory", path);
        goto done;
    }
    for (uint32_t i = 0; i < count; i++) {
        GoldenTensor *t = &g->tensors[i];
        uint32_t name_len, dtype, ndim;
        if (take_u32(&r, &name_len) || name_len == 0 || name_len > 1024 || name_len > r.left) {
            fail(g, "golden file %s: record %u has a bad name length (truncated or corrupt; "
                    REGEN_HINT ")", path, i);
            goto done;
        }
        t->name = malloc(name_len + 1);
        if (!t->name) {
            fail(g, "golden file %s: out of memory", path);
            goto done;
        }
        take(&r, t->name, name_len);
        t->name[name_len] = '\0';
        g->n = (int)i + 1; /* from here on golden_free releases this record */
        if (take_u32(&r, &dtype) || take_u32(&r, &ndim)) {
            fail(g, "golden file %s: record \"%s\" is truncated (" REGEN_HINT ")", path, t->name);
            goto done;
        }
        if (dtype != GOLDEN_F32 && dtype != GOLDEN_I32) {
            fail(g, "golden file %s: record \"%s\" has dtype %u, expected 0 (f32) or 1 (i32)", path,
                 t->name, dtype);
            goto done;
        }
        if (ndim > GOLDEN_MAX_DIMS) {
            fail(g, "golden file %s: record \"%s\" has %u dimensions, at most %d are allowed", path,
                 t->name, ndim, GOLDEN_MAX_DIMS);
            goto done;
        }
        t->dtype = (GoldenDtype)dtype;
        t->ndim = (int)ndim;
        t->count = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint32_t v;
            if (take_u32(&r, &v)) {
                fail(g, "golden file %s: record \"%s\" is truncated in its shape", path, t->name);
                goto done;
            }
            t->dims[d] = v;
            if (v && t->count > SIZE_MAX / 4 / v) {
                fail(g, "golden file %s: record \"%s\" has an absurd shape", path, t->name);
                goto done;
            }
            t->count *= v;
        }
        size_t bytes = t->count * 4;
        if (bytes > r.left) {
            fail(g, "golden file %s: record \"%s\" needs %zu data bytes but only %zu remain "
                    "(truncated; " REGEN_HINT ")", path, t->name, bytes, r.left);
            goto done;
        }
        t->data = malloc(bytes ? bytes : 4);
        if (!t->data) {
            fail(g, "golden file %s: out of memory", path);
            goto done;
        }
        /* Little-endian words to host order, byte by byte (f32 and i32 are both 4-byte
         * words; character stores keep the buffer free of an effective type). */
        const uint32_t one = 1;
        const int host_le = *(const unsigned char *)&one == 1;
        unsigned char *out = t->data;
        for (size_t k = 0; k < bytes; k += 4)
            for (int j = 0; j < 4; j++) out[k + (size_t)j] = r.p[k + (size_t)(host_le ? j : 3 - j)];
        take(&r, NULL, bytes);
    }
    if (r.left != 0) {
        fail(g, "golden file %s has %zu trailing bytes after %u records (corrupt; " REGEN_HINT ")",
             path, r.left, count);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

void golden_free(Golden *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->tensors[i].name);
        free(g->tensors[i].data);
    }
    free(g->tensors);
    g->tensors = NULL;
    g->n = 0;
}

const GoldenTensor *golden_find(Golden *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    fail(g, "golden file %s has no record \"%s\" (stale file? " REGEN_HINT ")", g->path, name);
    return NULL;
}

static void format_shape(char *s, size_t n, int ndim, const int64_t *dims) {
    size_t used = (size_t)snprintf(s, n, "[");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(s + used, n - used, d ? ", %lld" : "%lld", (long long)dims[d]);
    if (used < n) snprintf(s + used, n - used, "]");
}

static const void *lookup(Golden *g, const char *name, GoldenDtype dtype, int ndim,
                          const int64_t *dims) {
    const GoldenTensor *t = golden_find(g, name);
    if (!t) return NULL;
    if (t->dtype != dtype) {
        fail(g, "golden file %s: record \"%s\" is %s, expected %s", g->path, name,
             t->dtype == GOLDEN_F32 ? "f32" : "i32", dtype == GOLDEN_F32 ? "f32" : "i32");
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = dims[d] < 0 || dims[d] == t->dims[d];
    if (!ok) {
        char have[160], want[160];
        format_shape(have, sizeof have, t->ndim, t->dims);
        format_shape(want, sizeof want, ndim, dims);
        fail(g, "golden file %s: record \"%s\" has shape %s, expected %s (model and golden file "
                "disagree)", g->path, name, have, want);
        return NULL;
    }
    return t->data;
}

const float *golden_f32(Golden *g, const char *name, int ndim, const int64_t *dims) {
    return lookup(g, name, GOLDEN_F32, ndim, dims);
}

const int32_t *golden_i32(Golden *g, const char *name, int ndim, const int64_t *dims) {
    return lookup(g, name, GOLDEN_I32, ndim, dims);
}
