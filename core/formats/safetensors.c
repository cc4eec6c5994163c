/* safetensors reader and writer (see safetensors.h). The reader checks, in order: file long
 * enough for the length prefix, header inside the file, JSON syntax (duplicate keys refused),
 * each entry's dtype / shape / offsets, byte size = numel x element size, offsets inside the
 * data section, no two tensors overlapping. Only then does it hand out tensors. */
#include "core/formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base/error.h"

#define ST_MAX_HEADER (100u << 20) /* as the reference implementation */

static const char *const DTYPE_NAMES[ST_NUM_DTYPES] = {
    "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"};
static const unsigned DTYPE_SIZE[ST_NUM_DTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1, 1, 1};

const char *safetensors_dtype_name(StDtype d) {
    return (unsigned)d < ST_NUM_DTYPES ? DTYPE_NAMES[d] : "?";
}

/* ------------------------------------------------------------------------------------------
 * scalar conversions */

float safetensors_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float safetensors_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    float f;
    if (exp == 0) { /* zero / subnormal: man * 2^-24 */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    const uint32_t u = exp == 31 ? sign | 0x7F800000u | (man << 13)
                                 : sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t safetensors_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t safetensors_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    const float a = fabsf(f);
    if (isnan(f)) return sign | 0x7E00;
    if (a >= 65520.0f) return sign | 0x7C00; /* rounds to infinity */
    if (a < 6.103515625e-05f) { /* subnormal: units of 2^-24, nearest even */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t m = u & 0x7FFFFFFFu;
    m += 0xFFFu + ((m >> 13) & 1);
    return sign | (uint16_t)((m >> 13) - (112u << 10));
}

/* ------------------------------------------------------------------------------------------
 * reader */

void safetensors_close(SafeTensors *st) {
    if (st->mapped && st->base) munmap((void *)st->base, st->size);
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->path);
    memset(st, 0, sizeof *st);
}

static int cmp_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* 1 if j is a non-negative integer (or an integral real) that fits in uint64; value in *v. */
static int json_u64(const json_t *j, uint64_t *v) {
    if (json_is_integer(j) && json_integer_value(j) >= 0) {
        *v = (uint64_t)json_integer_value(j);
        return 1;
    }
    return 0;
}

static int parse_header(SafeTensors *st, const char *hdr, size_t n) {
    const char *name = st->path;
    json_error_t jerr;
    json_t *root = json_loadb(hdr, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return error_set("%s has a corrupt safetensors header: %s (JSON line %d, column %d).", name,
                         jerr.text, jerr.line, jerr.column);
    int rc = LSC_OK;
    StTensor **order = NULL;
    if (!json_is_object(root)) {
        rc = error_set("%s: the safetensors header must be a JSON object.", name);
        goto done;
    }
    st->tensors = calloc(json_object_size(root) + 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = error_set("Out of memory reading the header of %s.", name);
        goto done;
    }
    const uint64_t data_size = st->size - st->data_offset;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        const json_t *dt = json_object_get(val, "dtype"), *shape = json_object_get(val, "shape");
        const json_t *offs = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(shape) ||
            !json_is_array(offs) || json_array_size(offs) != 2) {
            rc = error_set("%s: tensor \"%s\" needs \"dtype\" (string), \"shape\" (array) and "
                           "\"data_offsets\" ([begin, end]).", name, key);
            goto done;
        }
        StTensor *t = &st->tensors[st->n_tensors];
        t->dtype = ST_NUM_DTYPES;
        for (int d = 0; d < ST_NUM_DTYPES; d++)
            if (strcmp(json_string_value(dt), DTYPE_NAMES[d]) == 0) t->dtype = (StDtype)d;
        if (t->dtype == ST_NUM_DTYPES) {
            rc = error_set("%s: tensor \"%s\" has unknown dtype \"%s\" (safetensors dtypes: F32, "
                           "F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2).", name,
                           key, json_string_value(dt));
            goto done;
        }
        if (json_array_size(shape) > ST_MAX_DIMS) {
            rc = error_set("%s: tensor \"%s\" has %zu dimensions; at most %d are supported.", name,
                           key, json_array_size(shape), ST_MAX_DIMS);
            goto done;
        }
        t->ndim = (int)json_array_size(shape);
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t s;
            if (!json_u64(json_array_get(shape, (size_t)d), &s)) {
                rc = error_set("%s: tensor \"%s\" has a shape entry that is not a non-negative "
                               "integer.", name, key);
                goto done;
            }
            if (s != 0 && t->numel > (UINT64_MAX / 16) / s) {
                rc = error_set("%s: tensor \"%s\" has an absurd shape (element count overflows).",
                               name, key);
                goto done;
            }
            t->shape[d] = (int64_t)s;
            t->numel *= s;
        }
        if (!json_u64(json_array_get(offs, 0), &t->begin) || !json_u64(json_array_get(offs, 1), &t->end) ||
            t->end < t->begin) {
            rc = error_set("%s: tensor \"%s\" has data_offsets that are not two non-negative "
                           "integers begin <= end.", name, key);
            goto done;
        }
        if (t->end > data_size) {
            rc = error_set("%s: tensor \"%s\" ends at byte %llu of the data section, which has only "
                           "%llu bytes: the file is truncated.", name, key,
                           (unsigned long long)t->end, (unsigned long long)data_size);
            goto done;
        }
        if (t->end - t->begin != t->numel * DTYPE_SIZE[t->dtype]) {
            rc = error_set("%s: tensor \"%s\" has %llu bytes but its shape and dtype %s need %llu.",
                           name, key, (unsigned long long)(t->end - t->begin), DTYPE_NAMES[t->dtype],
                           (unsigned long long)(t->numel * DTYPE_SIZE[t->dtype]));
            goto done;
        }
        if (!(t->name = strdup(key))) {
            rc = error_set("Out of memory reading the header of %s.", name);
            goto done;
        }
        st->n_tensors++;
    }
    order = malloc(((size_t)st->n_tensors + 1) * sizeof *order);
    if (!order) {
        rc = error_set("Out of memory reading the header of %s.", name);
        goto done;
    }
    for (int i = 0; i < st->n_tensors; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)st->n_tensors, sizeof *order, cmp_begin);
    for (int i = 1; i < st->n_tensors; i++)
        if (order[i]->begin < order[i - 1]->end) {
            rc = error_set("%s: tensors \"%s\" and \"%s\" overlap in the data section (bytes %llu.."
                           "%llu and %llu..%llu).", name, order[i - 1]->name, order[i]->name,
                           (unsigned long long)order[i - 1]->begin, (unsigned long long)order[i - 1]->end,
                           (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end);
            goto done;
        }
done:
    free(order);
    json_decref(root);
    return rc;
}

static int open_common(SafeTensors *st, const char *name) {
    if (!(st->path = strdup(name))) return error_set("Out of memory opening %s.", name);
    if (st->size < 8)
        return error_set("%s is too short to be a safetensors file (%zu bytes, no 8-byte header "
                         "length).", name, st->size);
    uint64_t n;
    memcpy(&n, st->base, 8);
    if (n > st->size - 8)
        return error_set("%s: the safetensors header length (%llu bytes) runs past the end of the "
                         "file (%zu bytes): truncated or not a safetensors file.", name,
                         (unsigned long long)n, st->size);
    if (n > ST_MAX_HEADER)
        return error_set("%s: the safetensors header is %llu bytes, over the 100 MiB limit.", name,
                         (unsigned long long)n);
    st->data_offset = 8 + n;
    return parse_header(st, (const char *)st->base + 8, (size_t)n);
}

int safetensors_open_mem(SafeTensors *st, const void *data, size_t size, const char *name) {
    memset(st, 0, sizeof *st);
    st->base = data;
    st->size = size;
    const int rc = open_common(st, name);
    if (rc != LSC_OK) safetensors_close(st);
    return rc;
}

int safetensors_open(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return error_set("Cannot open safetensors file %s: %s.", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return error_set("Cannot stat %s: %s.", path, strerror(errno));
    }
    st->size = (size_t)sb.st_size;
    if (st->size > 0) {
        void *p = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return error_set("Cannot map %s: %s.", path, strerror(errno));
        }
        st->base = p;
        st->mapped = 1;
    }
    close(fd);
    const int rc = open_common(st, path);
    if (rc != LSC_OK) safetensors_close(st);
    return rc;
}

const StTensor *safetensors_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

int safetensors_read(const SafeTensors *st, const StTensor *t, Real *out) {
    const unsigned char *p = st->base + st->data_offset + t->begin;
    switch (t->dtype) {
    case ST_F32:
        for (uint64_t i = 0; i < t->numel; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            out[i] = (Real)f;
        }
        return LSC_OK;
    case ST_F16:
    case ST_BF16:
        for (uint64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = (Real)(t->dtype == ST_F16 ? safetensors_f16_to_f32(h) : safetensors_bf16_to_f32(h));
        }
        return LSC_OK;
    default:
        return error_set("%s: tensor \"%s\" is %s; lorasc reads F32, F16 and BF16 tensors.",
                         st->path, t->name, DTYPE_NAMES[t->dtype]);
    }
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && k < size; d++)
        k += (size_t)snprintf(buf + k, size - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < size) snprintf(buf + k, size - k, "]");
}

int safetensors_read_shaped(const SafeTensors *st, const char *name, int ndim, const int64_t *shape,
                            Real *out) {
    const StTensor *t = safetensors_find(st, name);
    if (!t) return error_set("%s has no tensor \"%s\".", st->path, name);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[160], want[160];
        format_shape(got, sizeof got, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return error_set("%s: tensor \"%s\" has shape %s, but the config implies %s.", st->path,
                         name, got, want);
    }
    return out ? safetensors_read(st, t, out) : LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * writer */

int safetensors_write(const char *path, const StWriteEntry *entries, int n, StDtype dtype,
                      const char *const *metadata) {
    LSC_ASSERT(dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16);
    const unsigned es = DTYPE_SIZE[dtype];
    json_t *root = json_object();
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++) {
            json_array_append_new(shape, json_integer(entries[i].shape[d]));
            numel *= (uint64_t)entries[i].shape[d];
        }
        json_object_set_new(root, entries[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", DTYPE_NAMES[dtype], "shape",
                                      shape, "data_offsets", (json_int_t)offset,
                                      (json_int_t)(offset + numel * es)));
        offset += numel * es;
    }
    if (metadata) {
        json_t *meta = json_object();
        for (int i = 0; metadata[i] && metadata[i + 1]; i += 2)
            json_object_set_new(meta, metadata[i], json_string(metadata[i + 1]));
        json_object_set_new(root, "__metadata__", meta);
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!hdr) return error_set("Out of memory writing %s.", path);
    const size_t hlen = strlen(hdr);
    const uint64_t padded = (hlen + 7) / 8 * 8; /* data 8-byte aligned, padding with spaces */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(hdr);
        return error_set("Path too long: %s.", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(hdr);
        return error_set("Cannot write %s: %s (does the directory exist?).", tmp, strerror(errno));
    }
    int failed = fwrite(&padded, 8, 1, f) != 1 || fwrite(hdr, 1, hlen, f) != hlen;
    for (uint64_t i = hlen; i < padded && !failed; i++) failed = fputc(' ', f) == EOF;
    free(hdr);
    unsigned char buf[4096 * 4];
    for (int i = 0; i < n && !failed; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++) numel *= (uint64_t)entries[i].shape[d];
        for (uint64_t j = 0; j < numel && !failed;) {
            size_t k = 0;
            for (; j < numel && k + es <= sizeof buf; j++, k += es) {
                const float x = entries[i].data[j];
                if (dtype == ST_F32) {
                    memcpy(buf + k, &x, 4);
                } else {
                    const uint16_t h = dtype == ST_BF16 ? safetensors_f32_to_bf16(x) : safetensors_f32_to_f16(x);
                    memcpy(buf + k, &h, 2);
                }
            }
            failed = fwrite(buf, 1, k, f) != k;
        }
    }
    if (fclose(f) != 0) failed = 1;
    if (failed) {
        remove(tmp);
        return error_set("Failed writing %s: %s (disk full?).", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0)
        return error_set("Cannot move %s into place as %s: %s.", tmp, path, strerror(errno));
    return LSC_OK;
}
