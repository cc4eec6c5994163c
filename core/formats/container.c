/* The lorasc checkpoint container (see container.h): writer and reader. Every failure a user
 * can cause (missing, truncated, corrupt or foreign file) is one sentence that names the file
 * and what was expected. */
#include "core/formats/container.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "core/base/error.h"
#include "core/model/device.h"

static const char MAGIC[8] = {'L', 'S', 'C', 'C', 'K', 'P', 'T', '\0'};
/* name, dtype, crc, count */
#define SECTION_HEADER_BYTES (CONTAINER_NAME_LEN + 4 + 4 + 8)

static size_t dtype_size(uint32_t dtype) {
    return dtype == CONTAINER_I64 ? 8 : dtype == CONTAINER_U8 ? 1 : 4;
}

uint32_t container_crc32(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uLong c = crc;
    while (n > 0) { /* zlib takes uInt lengths */
        const uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

/* ------------------------------------------------------------------------------------------
 * writer */

int container_write_begin(ContainerWriter *w, const char *path) {
    memset(w, 0, sizeof *w);
    w->path = path;
    if (snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path) >= (int)sizeof w->tmp)
        return error_set("Checkpoint path is too long: %s", path);
    w->f = fopen(w->tmp, "wb");
    if (!w->f)
        return error_set("Cannot write checkpoint %s: %s (does the directory exist?).", w->tmp,
                         strerror(errno));
    const uint32_t version = CONTAINER_VERSION, zero = 0; /* the count is patched at the end */
    if (fwrite(MAGIC, 1, 8, w->f) != 8 || fwrite(&version, 4, 1, w->f) != 1 ||
        fwrite(&zero, 4, 1, w->f) != 1)
        w->failed = 1;
    return LSC_OK;
}

void container_write_section(ContainerWriter *w, const char *name, ContainerDtype dtype,
                             const void *data, uint64_t count) {
    if (w->failed) return;
    char padded[CONTAINER_NAME_LEN] = {0};
    LSC_ASSERT(strlen(name) < CONTAINER_NAME_LEN);
    memcpy(padded, name, strlen(name));
    const uint32_t dt = (uint32_t)dtype;
    const size_t bytes = (size_t)count * dtype_size(dt);
    const uint32_t crc = container_crc32(0, data, bytes);
    if (fwrite(padded, 1, sizeof padded, w->f) != sizeof padded || fwrite(&dt, 4, 1, w->f) != 1 ||
        fwrite(&crc, 4, 1, w->f) != 1 || fwrite(&count, 8, 1, w->f) != 1 ||
        (bytes && fwrite(data, 1, bytes, w->f) != bytes))
        w->failed = 1;
    w->n_sections++;
}

void container_write_reals(ContainerWriter *w, Backend *be, const char *name, const Real *src,
                           size_t n) {
    if (w->failed) return;
    Real *host = malloc(n * sizeof(Real));
    float *f32 = (sizeof(Real) == sizeof(float)) ? (float *)host : malloc(n * sizeof(float));
    if (!host || !f32) {
        w->failed = 1;
    } else {
        be->to_host(be, host, src, n * sizeof(Real));
        if (be->sync(be) != 0) { /* never write what a failed device left in host */
            w->failed = 1;
            w->failed_device = be;
        }
    }
    if (!w->failed) {
        if ((void *)f32 != (void *)host)
            for (size_t i = 0; i < n; i++) f32[i] = (float)host[i];
        container_write_section(w, name, CONTAINER_F32, f32, n);
    }
    if ((void *)f32 != (void *)host) free(f32);
    free(host);
}

int container_write_end(ContainerWriter *w) {
    if (!w->failed && (fseek(w->f, 12, SEEK_SET) != 0 || fwrite(&w->n_sections, 4, 1, w->f) != 1))
        w->failed = 1;
    if (!w->failed && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) w->failed = 1;
    if (fclose(w->f) != 0) w->failed = 1;
    w->f = NULL;
    if (w->failed) {
        const int err = errno;
        remove(w->tmp);
        if (w->failed_device)
            return device_fail(w->failed_device, "Cannot read the device's tensors to save %s.",
                               w->path);
        return error_set("Failed writing checkpoint %s: %s (disk full or out of memory?).", w->tmp,
                         strerror(err));
    }
    if (rename(w->tmp, w->path) != 0) {
        const int err = errno;
        remove(w->tmp);
        return error_set("Cannot move checkpoint %s into place as %s: %s.", w->tmp, w->path,
                         strerror(err));
    }
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * reader */

void container_close(ContainerReader *r) {
    if (r->f) fclose(r->f);
    free(r->sections);
    memset(r, 0, sizeof *r);
}

/* Reads the header and the section table (names, dtypes, offsets), checking that every
 * payload lies inside the file. Every error message is formed before anything is freed. */
int container_open(ContainerReader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->f = fopen(path, "rb");
    if (!r->f) return error_set("Cannot open checkpoint %s: %s.", path, strerror(errno));
    int rc = LSC_OK;
    struct stat st;
    char magic[8];
    uint32_t version = 0, n = 0;
    if (fstat(fileno(r->f), &st) != 0) {
        rc = error_set("Cannot stat checkpoint %s: %s.", path, strerror(errno));
        goto fail;
    }
    const uint64_t size = (uint64_t)st.st_size;
    if (fread(magic, 1, 8, r->f) != 8 || memcmp(magic, MAGIC, 8) != 0) {
        rc = error_set("%s is not a lorasc checkpoint (bad magic number); expected a file written "
                       "by checkpoint_save or vit_checkpoint_save (llama2.c .bin files load with "
                       "llama2c_load).", path);
        goto fail;
    }
    if (fread(&version, 4, 1, r->f) != 1 || fread(&n, 4, 1, r->f) != 1) {
        rc = error_set("%s is truncated: the header ends early.", path);
        goto fail;
    }
    if (version == 0 || version > CONTAINER_VERSION) {
        rc = error_set("%s has checkpoint version %u; this lorasc reads versions 1 to %d (update "
                       "lorasc to read it).", path, version, CONTAINER_VERSION);
        goto fail;
    }
    if (n == 0 || (uint64_t)n * SECTION_HEADER_BYTES > size) {
        rc = error_set("%s is truncated or corrupt: it claims %u sections, which cannot fit in %llu "
                       "bytes.", path, n, (unsigned long long)size);
        goto fail;
    }
    r->sections = calloc(n, sizeof *r->sections);
    if (!r->sections) {
        rc = error_set("Out of memory reading %s.", path);
        goto fail;
    }
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        ContainerSection *s = &r->sections[i];
        if (fread(s->name, 1, CONTAINER_NAME_LEN, r->f) != CONTAINER_NAME_LEN ||
            fread(&s->dtype, 4, 1, r->f) != 1 || fread(&s->crc, 4, 1, r->f) != 1 ||
            fread(&s->count, 8, 1, r->f) != 1) {
            rc = error_set("%s is truncated: section %u of %u has no complete header.", path, i + 1, n);
            goto fail;
        }
        s->name[CONTAINER_NAME_LEN] = '\0';
        if (s->dtype > CONTAINER_U8) {
            rc = error_set("%s is corrupt: section '%s' has unknown dtype %u.", path, s->name, s->dtype);
            goto fail;
        }
        s->offset = ftell(r->f);
        /* the count is checked against the file before it is multiplied: a corrupt count
         * (2^62) would wrap the byte size around to a small number */
        const uint64_t es = dtype_size(s->dtype), room = size - (uint64_t)s->offset;
        if (s->count > room / es) {
            rc = error_set("%s is truncated or corrupt: section '%s' claims %llu elements of %llu "
                           "bytes at offset %ld but the file has %llu bytes.", path, s->name,
                           (unsigned long long)s->count, (unsigned long long)es, s->offset,
                           (unsigned long long)size);
            goto fail;
        }
        const uint64_t bytes = s->count * es;
        if (fseek(r->f, (long)bytes, SEEK_CUR) != 0) {
            rc = error_set("Cannot seek in %s: %s.", path, strerror(errno));
            goto fail;
        }
    }
    return LSC_OK;
fail:
    container_close(r);
    return rc;
}

const ContainerSection *container_find(const ContainerReader *r, const char *name) {
    for (uint32_t i = 0; i < r->n; i++)
        if (strcmp(r->sections[i].name, name) == 0) return &r->sections[i];
    return NULL;
}

int container_read(ContainerReader *r, const char *name, ContainerDtype dtype, void *dst,
                   uint64_t count) {
    const ContainerSection *s = container_find(r, name);
    if (!s) return error_set("%s has no section '%s'; it was not written with this content.", r->path, name);
    if (s->dtype != (uint32_t)dtype || s->count != count)
        return error_set("%s: section '%s' holds %llu elements of dtype %u, expected %llu of dtype "
                         "%u (the checkpoint does not match this model or adapter).",
                         r->path, name, (unsigned long long)s->count, s->dtype,
                         (unsigned long long)count, (unsigned)dtype);
    const size_t bytes = (size_t)count * dtype_size(dtype);
    if (fseek(r->f, s->offset, SEEK_SET) != 0 || fread(dst, 1, bytes, r->f) != bytes)
        return error_set("Cannot read section '%s' of %s.", name, r->path);
    if (container_crc32(0, dst, bytes) != s->crc)
        return error_set("%s is corrupt: the checksum of section '%s' does not match its data.",
                         r->path, name);
    return LSC_OK;
}

int container_read_reals(ContainerReader *r, Backend *be, const char *name, Real *dst, size_t n) {
    float *f32 = malloc(n * sizeof(float));
    Real *host = (sizeof(Real) == sizeof(float)) ? (Real *)f32 : malloc(n * sizeof(Real));
    int rc = LSC_OK;
    if (!f32 || !host) {
        rc = error_set("Out of memory reading section '%s' of %s.", name, r->path);
        goto cleanup;
    }
    rc = container_read(r, name, CONTAINER_F32, f32, n);
    if (rc != LSC_OK) goto cleanup;
    if ((void *)host != (void *)f32)
        for (size_t i = 0; i < n; i++) host[i] = (Real)f32[i];
    be->to_device(be, dst, host, n * sizeof(Real));
    rc = device_sync(be);
cleanup:
    if ((void *)host != (void *)f32) free(host);
    free(f32);
    return rc;
}
