/* safetensors files (Hugging Face's tensor container): reader (memory-mapped, every header
 * field checked before any data is touched) and writer.
 * Format: u64 little-endian header length N, N bytes of JSON {"name": {"dtype": "F32",
 * "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}, then the
 * data; offsets are relative to the end of the header. Values convert to Real from F32, F16
 * and BF16 (other dtypes are recognised and refused on read). Not here: model semantics
 * (core/formats/hf_llama.h). */
#ifndef LORASC_SAFETENSORS_H
#define LORASC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/real.h"

typedef enum StDtype {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_F64,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_BOOL,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_NUM_DTYPES
} StDtype;

#define ST_MAX_DIMS 8

typedef struct StTensor {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte range in the data section */
} StTensor;

typedef struct SafeTensors {
    char *path;                 /* for messages */
    const unsigned char *base;  /* the whole file */
    size_t size;
    int mapped;                 /* 1: base is our mmap */
    uint64_t data_offset;       /* 8 + N */
    StTensor *tensors;
    int n_tensors;
} SafeTensors;

const char *safetensors_dtype_name(StDtype d);

/* Opens and validates path (mmap). LSC_ERR with one sentence naming the file otherwise. */
int safetensors_open(SafeTensors *st, const char *path);
/* The same over a caller-owned buffer (must outlive st). */
int safetensors_open_mem(SafeTensors *st, const void *data, size_t size, const char *name);
void safetensors_close(SafeTensors *st);

/* The tensor called name, or NULL. */
const StTensor *safetensors_find(const SafeTensors *st, const char *name);
/* Converts tensor t (F32, F16 or BF16) into out[t->numel]. */
int safetensors_read(const SafeTensors *st, const StTensor *t, Real *out);
/* safetensors_find + a shape check (shape[ndim]) + read (out NULL: the checks only); errors
 * name file, tensor and shapes. */
int safetensors_read_shaped(const SafeTensors *st, const char *name, int ndim, const int64_t *shape,
                            Real *out);

/* Writer: tensors given as host floats, stored as dtype (ST_F32, ST_F16 or ST_BF16, rounded
 * to nearest even). metadata: NULL or NULL-terminated key, value, key, value... strings.
 * Writes path.tmp and renames it into place. */
typedef struct StWriteEntry {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} StWriteEntry;
int safetensors_write(const char *path, const StWriteEntry *entries, int n, StDtype dtype,
                      const char *const *metadata);

/* Scalar conversions (exposed for tests). */
float safetensors_bf16_to_f32(uint16_t h);
float safetensors_f16_to_f32(uint16_t h);
uint16_t safetensors_f32_to_bf16(float f);
uint16_t safetensors_f32_to_f16(float f);

#endif
