/* The lorasc checkpoint container: one file of named, typed, checksummed sections, shared by
 * the Llama checkpoints (checkpoint.h), the ViT checkpoints (vit_checkpoint.h) and the state
 * of a fine-tuning run (finetune_state.h). What goes in the sections is theirs; this module
 * knows only the layout. Not here: llama2.c, GGUF or safetensors files.
 *
 * Layout, version 1 (little-endian):
 *   magic "LSCCKPT\0" (8 bytes), u32 version, u32 n_sections, then n_sections times:
 *   char name[32] (NUL-padded), u32 dtype (0 = f32, 1 = i32, 2 = i64, 3 = u8: bytes such as
 *   text, added within version 1: older readers refuse a file that has such a section),
 *   u32 CRC-32 (IEEE 802.3, as zlib) of the payload, u64 element count, payload.
 * A reader finds sections by name, so later versions can add sections. */
#ifndef LORASC_CONTAINER_H
#define LORASC_CONTAINER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"

#define CONTAINER_VERSION 1
#define CONTAINER_NAME_LEN 32

typedef enum ContainerDtype {
    CONTAINER_F32 = 0,
    CONTAINER_I32 = 1,
    CONTAINER_I64 = 2,
    CONTAINER_U8 = 3,
} ContainerDtype;

/* CRC-32 of n bytes continued from crc (0 to start). */
uint32_t container_crc32(uint32_t crc, const void *data, size_t n);

/* ------------------------------------------------------------------------------------------
 * writer: container_write_begin, any number of sections, container_write_end. A section
 * that fails to write marks the writer failed; container_write_end then removes PATH.tmp and
 * reports it, so callers need not check each section. */

typedef struct ContainerWriter {
    FILE *f;
    const char *path;
    char tmp[4096]; /* path + ".tmp": written, fsync'ed, then renamed over path */
    uint32_t n_sections;
    int failed;
    Backend *failed_device; /* the backend whose read failed (its sentence is the error) */
} ContainerWriter;

int container_write_begin(ContainerWriter *w, const char *path);
/* count elements of dtype at host memory data; name shorter than CONTAINER_NAME_LEN. */
void container_write_section(ContainerWriter *w, const char *name, ContainerDtype dtype,
                             const void *data, uint64_t count);
/* n device Reals of backend be, stored as f32 whatever Real is. */
void container_write_reals(ContainerWriter *w, Backend *be, const char *name, const Real *src,
                           size_t n);
/* Writes the section count, fsyncs, closes and renames PATH.tmp to PATH. */
int container_write_end(ContainerWriter *w);

/* ------------------------------------------------------------------------------------------
 * reader: container_open checks the header and that every section lies inside the file;
 * container_read checks dtype, count and CRC. Every error is one sentence naming the file. */

typedef struct ContainerSection {
    char name[CONTAINER_NAME_LEN + 1];
    uint32_t dtype, crc;
    uint64_t count;
    long offset; /* of the payload */
} ContainerSection;

typedef struct ContainerReader {
    FILE *f;
    const char *path;
    ContainerSection *sections;
    uint32_t n;
} ContainerReader;

int container_open(ContainerReader *r, const char *path);
void container_close(ContainerReader *r);
/* The section called name, or NULL (no error set). */
const ContainerSection *container_find(const ContainerReader *r, const char *name);
/* Section name, which must hold exactly count elements of dtype, into host memory dst. */
int container_read(ContainerReader *r, const char *name, ContainerDtype dtype, void *dst,
                   uint64_t count);
/* An f32 section of n elements into n device Reals of backend be. */
int container_read_reals(ContainerReader *r, Backend *be, const char *name, Real *dst, size_t n);

#endif
