/* GGUF (v2, v3) container reader: header, typed metadata key/values with lookup by key, tensor
 * infos (name, dims, ggml type, offset), general.alignment and the data section, all checked
 * against the file's bounds when it is opened (a malformed file is one sentence, never a
 * crash), and dequantisation to float of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 (ggml's block
 * layouts). Not here: what the keys mean (model configs: core/formats/gguf_llama.h; tokenizers:
 * core/data/tokenizer.h) and writing GGUF files. */
#ifndef LORASC_GGUF_H
#define LORASC_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum GgufValueType {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} GgufValueType;

/* Tensor element types (ggml_type). Every type ggml defines can be opened (its block size is
 * known, so offsets and sizes are checked); the ones marked * are dequantised. */
typedef enum GgmlType {
    GGML_TYPE_F32 = 0,  /* * */
    GGML_TYPE_F16 = 1,  /* * */
    GGML_TYPE_Q4_0 = 2, /* * blocks of 32: f16 d, 16 bytes of nibbles; x = (q - 8) d */
    GGML_TYPE_Q4_1 = 3, /* * blocks of 32: f16 d, f16 m, 16 bytes of nibbles; x = q d + m */
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8, /* * blocks of 32: f16 d, 32 int8; x = q d */
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30, /* * */
    GGML_TYPE_COUNT = 42
} GgmlType;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the file: not NUL-terminated, valid while the Gguf is open. */
typedef struct GgufString {
    const char *data;
    uint64_t len;
} GgufString;

/* One metadata key/value. For arrays, type is GGUF_TYPE_ARRAY, elem_type the element type,
 * n the element count and data the first element (little-endian, possibly unaligned: read
 * through the accessors below); string arrays also have strings[n]. Scalars: n = 1, data the
 * value; a string scalar is in str. Arrays of arrays are accepted but only their size is
 * kept (data = NULL). */
typedef struct GgufKV {
    GgufString key;
    uint32_t type;
    uint32_t elem_type;
    uint64_t n;
    const unsigned char *data;
    GgufString str;             /* type STRING */
    const GgufString *strings;  /* arrays of strings: n entries */
} GgufKV;

/* One tensor info. dims[0] is the fastest-varying dimension (a matrix [rows, cols] in
 * row-major terms has dims = {cols, rows}); unused dims are 1. */
typedef struct GgufTensor {
    GgufString name;
    uint32_t n_dims;
    int64_t dims[GGUF_MAX_DIMS];
    uint32_t type;              /* GgmlType */
    uint64_t offset;            /* from the start of the data section, as stored */
    uint64_t n_elements;
    uint64_t n_bytes;
    const unsigned char *data;  /* offset resolved into the file */
} GgufTensor;

typedef struct Gguf {
    char *name;                 /* file name for messages (owned) */
    const unsigned char *base;  /* the whole file */
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    GgufKV *kv;                 /* [n_kv] in file order */
    GgufTensor *tensors;        /* [n_tensors] in file order */
    uint64_t alignment;         /* general.alignment, default 32 */
    uint64_t data_offset;       /* start of the data section in the file */
    GgufString *string_pool;    /* backing store of the kv[].strings (owned) */
    void *map;                  /* mmap of the file when opened by path (owned) */
    size_t map_size;
} Gguf;

/* Opens path (memory-mapped, read-only) and checks its whole structure: magic, version 2 or 3,
 * counts against the file size, every key/value, tensor info, alignment and that every
 * tensor's data lies inside the file. On error nothing is left open. */
int gguf_open(Gguf *g, const char *path);
/* The same on a buffer the caller keeps alive until gguf_close; name is used in messages. */
int gguf_open_mem(Gguf *g, const void *data, size_t size, const char *name);
void gguf_close(Gguf *g);

/* Lookup by key (NULL when absent). */
const GgufKV *gguf_find(const Gguf *g, const char *key);
/* Typed getters: LSC_OK and *out, or LSC_ERR with a sentence naming the file and key when the
 * key is absent or holds another type. gguf_get_int takes any integer type (and fails on a
 * uint64 above INT64_MAX), gguf_get_float any float or integer type. */
int gguf_get_int(const Gguf *g, const char *key, int64_t *out);
int gguf_get_float(const Gguf *g, const char *key, double *out);
int gguf_get_bool(const Gguf *g, const char *key, int *out);
int gguf_get_string(const Gguf *g, const char *key, GgufString *out);
/* An array whose elements have elem_type (GGUF_TYPE_COUNT: any); LSC_ERR when absent or not
 * such an array. */
int gguf_get_array(const Gguf *g, const char *key, uint32_t elem_type, const GgufKV **out);
/* Element i (< kv->n) of a numeric array, converted; i beyond n or a non-numeric array is an
 * internal error (assert). */
int64_t gguf_array_int(const GgufKV *kv, uint64_t i);
double gguf_array_float(const GgufKV *kv, uint64_t i);
/* 1 if s equals the C string z. */
int gguf_string_eq(GgufString s, const char *z);

/* Lookup of a tensor by name (NULL when absent). */
const GgufTensor *gguf_tensor_find(const Gguf *g, const char *name);
/* Dequantises all t->n_elements values of t into dst (n = capacity of dst in floats): LSC_ERR
 * with a sentence when n is too small or the type is not one lorasc dequantises. */
int gguf_tensor_to_float(const Gguf *g, const GgufTensor *t, float *dst, size_t n);

/* ggml's name of a tensor type ("Q4_1"), "?" for unknown numbers. */
const char *ggml_type_name(uint32_t type);
/* Elements per block and bytes per block of a type; 0 for unknown types. */
int64_t ggml_block_size(uint32_t type);
size_t ggml_type_size(uint32_t type);
/* 1 if ggml_dequantize handles the type. */
int ggml_can_dequantize(uint32_t type);
/* Dequantises n values (a multiple of the block size) of type from src to dst; LSC_ERR for a
 * type that is not dequantised or a bad n. */
int ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n);
/* IEEE half and bfloat16 bit patterns to float (exact). */
float ggml_f16_to_f32(uint16_t h);
float ggml_bf16_to_f32(uint16_t h);

#endif
