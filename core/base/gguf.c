/* GGUF container reader (see gguf.h): one pass over the header, key/values and tensor infos
 * through a bounds-checked cursor, then the tensor data checked against the file; and ggml's
 * block dequantisers for F32, F16, BF16, Q8_0, Q4_0, Q4_1. */
#include "core/base/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"

/* ------------------------------------------------------------------------------------------
 * ggml types */

typedef struct TypeInfo {
    const char *name;
    int64_t block;
    size_t bytes;
} TypeInfo;

/* Block sizes as in ggml.c's type_traits (and gguf-py's GGML_QUANT_SIZES). */
static const TypeInfo TYPES[GGML_TYPE_COUNT] = {
    [0] = {"F32", 1, 4},          [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},       [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},       [9] = {"Q8_1", 32, 40},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},    [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},    [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},   [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},    [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},  [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},         [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},    [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},    [39] = {"MXFP4", 32, 17},    [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},
};

const char *ggml_type_name(uint32_t type) {
    return type < GGML_TYPE_COUNT && TYPES[type].name ? TYPES[type].name : "?";
}

int64_t ggml_block_size(uint32_t type) { return type < GGML_TYPE_COUNT ? TYPES[type].block : 0; }

size_t ggml_type_size(uint32_t type) { return type < GGML_TYPE_COUNT ? TYPES[type].bytes : 0; }

int ggml_can_dequantize(uint32_t type) {
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 ||
           type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1;
}

float ggml_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf, nan (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else {
        /* zero or subnormal: mant * 2^-24, exact in float */
        const float v = (float)mant * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float ggml_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

int ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    const unsigned char *s = src;
    const int64_t blk = ggml_block_size(type);
    if (!ggml_can_dequantize(type))
        return error_set("Tensor type %s is not one lorasc dequantises (it reads F32, F16, BF16, "
                         "Q8_0, Q4_0 and Q4_1).", ggml_type_name(type));
    if (n < 0 || n % blk != 0)
        return error_set("Cannot dequantise %lld values of type %s: not a multiple of its block "
                         "size %lld.", (long long)n, ggml_type_name(type), (long long)blk);
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, s, (size_t)n * 4); break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = ggml_f16_to_f32(rd16(s + 2 * i));
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = ggml_bf16_to_f32(rd16(s + 2 * i));
        break;
    case GGML_TYPE_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, s += 34, dst += 32) {
            const float d = ggml_f16_to_f32(rd16(s));
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)s[2 + j] * d;
        }
        break;
    case GGML_TYPE_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, s += 18, dst += 32) {
            const float d = ggml_f16_to_f32(rd16(s));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((s[2 + j] & 0x0f) - 8) * d;
                dst[j + 16] = (float)((s[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case GGML_TYPE_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, s += 20, dst += 32) {
            const float d = ggml_f16_to_f32(rd16(s)), m = ggml_f16_to_f32(rd16(s + 2));
            for (int j = 0; j < 16; j++) {
                /* two statements: q*d is rounded before + m, as numpy (and ggml) do */
                const float lo = (float)(s[4 + j] & 0x0f) * d, hi = (float)(s[4 + j] >> 4) * d;
                dst[j] = lo + m;
                dst[j + 16] = hi + m;
            }
        }
        break;
    default: LSC_ASSERT(0);
    }
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * the cursor: every read is checked against the end of the file */

typedef struct Cursor {
    const unsigned char *p, *end;
    const char *what; /* first failure, for the message */
} Cursor;

static uint64_t left(const Cursor *c) { return (uint64_t)(c->end - c->p); }

static const unsigned char *take(Cursor *c, uint64_t n, const char *what) {
    if (c->what) return NULL;
    if (left(c) < n) {
        c->what = what;
        return NULL;
    }
    const unsigned char *q = c->p;
    c->p += n;
    return q;
}

static uint32_t take_u32(Cursor *c, const char *what) {
    uint32_t v = 0;
    const unsigned char *q = take(c, 4, what);
    if (q) memcpy(&v, q, 4);
    return v;
}

static uint64_t take_u64(Cursor *c, const char *what) {
    uint64_t v = 0;
    const unsigned char *q = take(c, 8, what);
    if (q) memcpy(&v, q, 8);
    return v;
}

static GgufString take_string(Cursor *c, const char *what) {
    GgufString s = {0};
    s.len = take_u64(c, what);
    s.data = (const char *)take(c, s.len, what);
    if (!s.data) s.len = 0;
    return s;
}

static size_t scalar_size(uint32_t type) {
    static const size_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < GGUF_TYPE_COUNT ? sz[type] : 0;
}

static const char *value_type_name(uint32_t type) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool",  "string", "array", "uint64", "int64", "float64"};
    return type < GGUF_TYPE_COUNT ? names[type] : "unknown";
}

/* ------------------------------------------------------------------------------------------
 * open / close */

static int fail(Gguf *g, const char *fmt, ...) LSC_PRINTF(2, 3);
/* Closes g and sets "NAME <msg>" as the error. */
static int fail(Gguf *g, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char name[512];
    snprintf(name, sizeof name, "%s", g->name ? g->name : "GGUF data");
    gguf_close(g);
    return error_set("%s %s", name, msg);
}

/* Skips an array of arrays (depth-limited) counting nothing; returns 0 on a structural error. */
static int skip_nested(Cursor *c, int depth) {
    const uint32_t et = take_u32(c, "an array's element type");
    const uint64_t n = take_u64(c, "an array's length");
    if (c->what) return 1;
    if (depth > 8 || et >= GGUF_TYPE_COUNT) return 0;
    if (et == GGUF_TYPE_ARRAY) {
        if (n > left(c) / 12) return c->what = "an array's elements", 1;
        for (uint64_t i = 0; i < n && !c->what; i++)
            if (!skip_nested(c, depth + 1)) return 0;
    } else if (et == GGUF_TYPE_STRING) {
        if (n > left(c) / 8) return c->what = "an array's strings", 1;
        for (uint64_t i = 0; i < n && !c->what; i++) take_string(c, "an array's strings");
    } else {
        if (n > left(c) / scalar_size(et)) return c->what = "an array's elements", 1;
        take(c, n * scalar_size(et), "an array's elements");
    }
    return 1;
}

static int by_name(const void *a, const void *b) {
    const GgufString *x = *(const GgufString *const *)a, *y = *(const GgufString *const *)b;
    const uint64_t n = x->len < y->len ? x->len : y->len;
    const int c = n ? memcmp(x->data, y->data, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The first duplicate among n strings reached through ptrs (sorted in place), or NULL. */
static const GgufString *find_duplicate(const GgufString **ptrs, uint64_t n) {
    qsort(ptrs, n, sizeof *ptrs, by_name);
    for (uint64_t i = 1; i < n; i++)
        if (by_name(&ptrs[i - 1], &ptrs[i]) == 0) return ptrs[i];
    return NULL;
}

static int parse(Gguf *g) {
    Cursor c = {g->base, g->base + g->size, NULL};
    const unsigned char *magic = take(&c, 4, "the magic");
    if (!magic || memcmp(magic, "GGUF", 4) != 0)
        return fail(g, "is not a GGUF file: it does not start with the magic \"GGUF\".");
    g->version = take_u32(&c, "the version");
    if (c.what) return fail(g, "is truncated: it ends inside the GGUF header.");
    if (g->version != 2 && g->version != 3)
        return fail(g, "is GGUF version %u; lorasc reads versions 2 and 3 (convert it with a "
                       "current llama.cpp).", g->version);
    g->n_tensors = take_u64(&c, "the tensor count");
    g->n_kv = take_u64(&c, "the key/value count");
    if (c.what) return fail(g, "is truncated: it ends inside the GGUF header.");
    /* A key/value takes at least 13 bytes and a tensor info 28: refuse counts the file
     * cannot hold before allocating anything. */
    if (g->n_kv > left(&c) / 13 || g->n_tensors > left(&c) / 28)
        return fail(g, "claims %llu key/values and %llu tensors, more than its %zu bytes can hold "
                       "(corrupt header).", (unsigned long long)g->n_kv,
                    (unsigned long long)g->n_tensors, g->size);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return fail(g, "could not be read: out of memory.");

    /* key/values; string arrays are indexed in a second pass once their total is known */
    uint64_t n_strings = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        GgufKV *kv = &g->kv[i];
        kv->key = take_string(&c, "a key");
        kv->type = take_u32(&c, "a value type");
        if (c.what) break;
        if (kv->type >= GGUF_TYPE_COUNT)
            return fail(g, "has key \"%.*s\" with unknown value type %u (valid: 0-12).",
                        (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.data, kv->type);
        kv->n = 1;
        kv->data = c.p;
        if (kv->type == GGUF_TYPE_STRING) {
            kv->str = take_string(&c, "a string value");
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            kv->elem_type = take_u32(&c, "an array's element type");
            kv->n = take_u64(&c, "an array's length");
            if (c.what) break;
            kv->data = c.p;
            if (kv->elem_type >= GGUF_TYPE_COUNT)
                return fail(g, "has array \"%.*s\" with unknown element type %u (valid: 0-12).",
                            (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.data, kv->elem_type);
            if (kv->elem_type == GGUF_TYPE_STRING) {
                if (kv->n > left(&c) / 8) {
                    c.what = "a string array";
                    break;
                }
                for (uint64_t j = 0; j < kv->n && !c.what; j++) take_string(&c, "a string array");
                n_strings += kv->n;
            } else if (kv->elem_type == GGUF_TYPE_ARRAY) {
                kv->data = NULL;
                if (kv->n > left(&c) / 12) c.what = "a nested array";
                for (uint64_t j = 0; j < kv->n && !c.what; j++)
                    if (!skip_nested(&c, 1))
                        return fail(g, "has array \"%.*s\" with nested arrays of an unknown type "
                                       "or deeper than 8 levels.",
                                    (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.data);
            } else {
                const size_t es = scalar_size(kv->elem_type);
                if (kv->n > left(&c) / es) c.what = "an array";
                else take(&c, kv->n * es, "an array");
            }
        } else {
            take(&c, scalar_size(kv->type), "a value");
        }
        if (c.what) break;
    }
    if (c.what) return fail(g, "is truncated or corrupt: %s in its key/value section runs past the "
                               "end of the file.", c.what);
    if (n_strings) {
        g->string_pool = calloc(n_strings, sizeof *g->string_pool);
        if (!g->string_pool) return fail(g, "could not be read: out of memory.");
        GgufString *next = g->string_pool;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            GgufKV *kv = &g->kv[i];
            if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type != GGUF_TYPE_STRING) continue;
            Cursor s = {kv->data, g->base + g->size, NULL};
            kv->strings = next;
            for (uint64_t j = 0; j < kv->n; j++) *next++ = take_string(&s, "a string");
            LSC_ASSERT(!s.what);
        }
    }

    /* general.alignment */
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const GgufKV *al = gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a = 0;
        if (al->type != GGUF_TYPE_UINT32)
            return fail(g, "has general.alignment of type %s; it must be a uint32.",
                        value_type_name(al->type));
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return fail(g, "has general.alignment %u; it must be a power of two.", a);
        g->alignment = a;
    }

    /* tensor infos */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        t->name = take_string(&c, "a tensor name");
        t->n_dims = take_u32(&c, "a tensor's dimension count");
        if (c.what) break;
        const int nl = (int)(t->name.len < 200 ? t->name.len : 200);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return fail(g, "has tensor \"%.*s\" with %u dimensions; GGUF allows 1 to %d.", nl,
                        t->name.data, t->n_dims, GGUF_MAX_DIMS);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->dims[d] = 1;
        uint64_t n = 1;
        int overflow = 0;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            const uint64_t v = take_u64(&c, "a tensor's dimensions");
            if (v > (uint64_t)INT64_MAX || (v && n > (uint64_t)INT64_MAX / v)) overflow = 1;
            else n *= v;
            t->dims[d] = (int64_t)(v > (uint64_t)INT64_MAX ? INT64_MAX : v);
        }
        t->type = take_u32(&c, "a tensor's type");
        t->offset = take_u64(&c, "a tensor's offset");
        if (c.what) break;
        if (overflow)
            return fail(g, "has tensor \"%.*s\" whose dimensions overflow a 64-bit element count.",
                        nl, t->name.data);
        const int64_t blk = ggml_block_size(t->type);
        if (!blk)
            return fail(g, "has tensor \"%.*s\" of unknown type %u.", nl, t->name.data, t->type);
        if (t->dims[0] % blk != 0)
            return fail(g, "has tensor \"%.*s\" of type %s whose rows of %lld are not a multiple of "
                           "its block size %lld.", nl, t->name.data, ggml_type_name(t->type),
                        (long long)t->dims[0], (long long)blk);
        t->n_elements = n;
        const uint64_t blocks = n / (uint64_t)blk, bs = ggml_type_size(t->type);
        if (blocks > UINT64_MAX / bs)
            return fail(g, "has tensor \"%.*s\" whose byte size overflows.", nl, t->name.data);
        t->n_bytes = blocks * bs;
        if (t->offset % g->alignment != 0)
            return fail(g, "has tensor \"%.*s\" at offset %llu, not a multiple of the alignment %llu.",
                        nl, t->name.data, (unsigned long long)t->offset,
                        (unsigned long long)g->alignment);
    }
    if (c.what) return fail(g, "is truncated or corrupt: %s in its tensor infos runs past the end "
                               "of the file.", c.what);

    /* data section: aligned after the infos; every tensor inside the file */
    const uint64_t end_infos = (uint64_t)(c.p - g->base);
    g->data_offset = (end_infos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_offset < end_infos) return fail(g, "has an alignment that overflows its data offset.");
    const uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        if (t->offset > data_size || t->n_bytes > data_size - t->offset)
            return fail(g, "is truncated: tensor \"%.*s\" (%llu bytes at data offset %llu) runs past "
                           "the end of the file (%llu bytes of data).",
                        (int)(t->name.len < 200 ? t->name.len : 200), t->name.data,
                        (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                        (unsigned long long)data_size);
        t->data = g->base + g->data_offset + t->offset;
    }

    /* duplicate keys or tensor names make lookups ambiguous: refuse them */
    const uint64_t n_ptrs = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    const GgufString **ptrs = malloc((n_ptrs ? n_ptrs : 1) * sizeof *ptrs);
    if (!ptrs) return fail(g, "could not be read: out of memory.");
    for (uint64_t i = 0; i < g->n_kv; i++) ptrs[i] = &g->kv[i].key;
    const GgufString *dup = find_duplicate(ptrs, g->n_kv);
    const char *kind = "key";
    if (!dup) {
        for (uint64_t i = 0; i < g->n_tensors; i++) ptrs[i] = &g->tensors[i].name;
        dup = find_duplicate(ptrs, g->n_tensors);
        kind = "tensor name";
    }
    if (dup) {
        char d[201];
        snprintf(d, sizeof d, "%.*s", (int)(dup->len < 200 ? dup->len : 200), dup->data);
        free(ptrs);
        return fail(g, "has the %s \"%s\" twice.", kind, d);
    }
    free(ptrs);
    return LSC_OK;
}

int gguf_open_mem(Gguf *g, const void *data, size_t size, const char *name) {
    memset(g, 0, sizeof *g);
    g->name = strdup(name ? name : "GGUF data");
    if (!g->name) return error_set("Out of memory opening %s.", name ? name : "GGUF data");
    g->base = data;
    g->size = size;
    return parse(g);
}

int gguf_open(Gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return error_set("Cannot open %s: %s.", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return error_set("Cannot read %s: not a regular file.", path);
    }
    void *map = NULL;
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            const int e = errno;
            close(fd);
            return error_set("Cannot map %s: %s.", path, strerror(e));
        }
    }
    close(fd);
    const int rc = gguf_open_mem(g, map ? map : "", (size_t)st.st_size, path);
    if (rc != LSC_OK) {
        if (map) munmap(map, (size_t)st.st_size);
        return rc;
    }
    g->map = map;
    g->map_size = (size_t)st.st_size;
    return LSC_OK;
}

void gguf_close(Gguf *g) {
    free(g->name);
    free(g->kv);
    free(g->tensors);
    free(g->string_pool);
    if (g->map) munmap(g->map, g->map_size);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------------------------------------
 * lookups */

int gguf_string_eq(GgufString s, const char *z) {
    const size_t n = strlen(z);
    return s.len == n && (n == 0 || memcmp(s.data, z, n) == 0);
}

const GgufKV *gguf_find(const Gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (gguf_string_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const GgufTensor *gguf_tensor_find(const Gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (gguf_string_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int is_int_type(uint32_t t) {
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static int is_float_type(uint32_t t) { return t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64; }

/* Value of a numeric scalar at p of type t, as int64 (uint64 above INT64_MAX: *ok = 0). */
static int64_t read_int(const unsigned char *p, uint32_t t, int *ok) {
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
    *ok = 1;
    switch (t) {
    case GGUF_TYPE_UINT8: memcpy(&u8, p, 1); return u8;
    case GGUF_TYPE_INT8: memcpy(&i8, p, 1); return i8;
    case GGUF_TYPE_UINT16: memcpy(&u16, p, 2); return u16;
    case GGUF_TYPE_INT16: memcpy(&i16, p, 2); return i16;
    case GGUF_TYPE_UINT32: memcpy(&u32, p, 4); return u32;
    case GGUF_TYPE_INT32: memcpy(&i32, p, 4); return i32;
    case GGUF_TYPE_UINT64:
        memcpy(&u64, p, 8);
        if (u64 > (uint64_t)INT64_MAX) *ok = 0;
        return (int64_t)u64;
    case GGUF_TYPE_INT64: memcpy(&i64, p, 8); return i64;
    default: *ok = 0; return 0;
    }
}

static double read_float(const unsigned char *p, uint32_t t) {
    if (t == GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    int ok;
    const int64_t v = read_int(p, t, &ok);
    if (!ok && t == GGUF_TYPE_UINT64) {
        uint64_t u;
        memcpy(&u, p, 8);
        return (double)u;
    }
    return (double)v;
}

static const GgufKV *need(const Gguf *g, const char *key) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv) error_set("%s has no metadata key \"%s\".", g->name, key);
    return kv;
}

static int wrong_type(const Gguf *g, const GgufKV *kv, const char *key, const char *want) {
    return error_set("%s: metadata key \"%s\" is a %s; lorasc expects %s.", g->name, key,
                     value_type_name(kv->type), want);
}

int gguf_get_int(const Gguf *g, const char *key, int64_t *out) {
    const GgufKV *kv = need(g, key);
    if (!kv) return LSC_ERR;
    int ok = 0;
    if (is_int_type(kv->type)) *out = read_int(kv->data, kv->type, &ok);
    if (!is_int_type(kv->type)) return wrong_type(g, kv, key, "an integer");
    if (!ok) return error_set("%s: metadata key \"%s\" is too large for a 64-bit signed integer.", g->name, key);
    return LSC_OK;
}

int gguf_get_float(const Gguf *g, const char *key, double *out) {
    const GgufKV *kv = need(g, key);
    if (!kv) return LSC_ERR;
    if (!is_int_type(kv->type) && !is_float_type(kv->type)) return wrong_type(g, kv, key, "a number");
    *out = read_float(kv->data, kv->type);
    return LSC_OK;
}

int gguf_get_bool(const Gguf *g, const char *key, int *out) {
    const GgufKV *kv = need(g, key);
    if (!kv) return LSC_ERR;
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(g, kv, key, "a bool");
    *out = kv->data[0] != 0;
    return LSC_OK;
}

int gguf_get_string(const Gguf *g, const char *key, GgufString *out) {
    const GgufKV *kv = need(g, key);
    if (!kv) return LSC_ERR;
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(g, kv, key, "a string");
    *out = kv->str;
    return LSC_OK;
}

int gguf_get_array(const Gguf *g, const char *key, uint32_t elem_type, const GgufKV **out) {
    const GgufKV *kv = need(g, key);
    if (!kv) return LSC_ERR;
    if (kv->type != GGUF_TYPE_ARRAY) return wrong_type(g, kv, key, "an array");
    if (elem_type < GGUF_TYPE_COUNT && kv->elem_type != elem_type)
        return error_set("%s: metadata key \"%s\" is an array of %s; lorasc expects an array of %s.",
                         g->name, key, value_type_name(kv->elem_type), value_type_name(elem_type));
    *out = kv;
    return LSC_OK;
}

int64_t gguf_array_int(const GgufKV *kv, uint64_t i) {
    LSC_ASSERT(kv->type == GGUF_TYPE_ARRAY && i < kv->n && is_int_type(kv->elem_type));
    int ok;
    return read_int(kv->data + i * scalar_size(kv->elem_type), kv->elem_type, &ok);
}

double gguf_array_float(const GgufKV *kv, uint64_t i) {
    LSC_ASSERT(kv->type == GGUF_TYPE_ARRAY && i < kv->n &&
               (is_int_type(kv->elem_type) || is_float_type(kv->elem_type)));
    return read_float(kv->data + i * scalar_size(kv->elem_type), kv->elem_type);
}

/* ------------------------------------------------------------------------------------------
 * tensor data */

int gguf_tensor_to_float(const Gguf *g, const GgufTensor *t, float *dst, size_t n) {
    const int nl = (int)(t->name.len < 200 ? t->name.len : 200);
    if (!ggml_can_dequantize(t->type))
        return error_set("%s: tensor \"%.*s\" has type %s, which lorasc does not dequantise (it "
                         "reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1).", g->name, nl, t->name.data,
                         ggml_type_name(t->type));
    if (t->n_elements > n)
        return error_set("%s: tensor \"%.*s\" has %llu values, more than the %zu expected.", g->name,
                         nl, t->name.data, (unsigned long long)t->n_elements, n);
    return ggml_dequantize(t->type, t->data, dst, (int64_t)t->n_elements);
}
