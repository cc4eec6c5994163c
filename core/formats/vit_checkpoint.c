/* ViT checkpoints (see vit_checkpoint.h): the whole file is read into memory and its
 * sections are checked (bounds, dtype, count, CRC) before a model is created. */
#include "core/formats/vit_checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/formats/checkpoint.h"
#include "core/base/error.h"

enum { DT_F32 = 0, DT_I32 = 1, NAME_LEN = 32, N_CONFIG_I32 = 11 };
static const char MAGIC[8] = {'L', 'S', 'C', 'C', 'K', 'P', 'T', '\0'};

static uint32_t crc_of(const void *p, size_t n) {
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

static int put_section(FILE *f, const char *name, uint32_t dtype, const void *data, uint64_t count) {
    char padded[NAME_LEN] = {0};
    LSC_ASSERT(strlen(name) < NAME_LEN);
    memcpy(padded, name, strlen(name));
    const size_t bytes = (size_t)count * 4;
    const uint32_t crc = crc_of(data, bytes);
    return fwrite(padded, 1, NAME_LEN, f) == NAME_LEN && fwrite(&dtype, 4, 1, f) == 1 &&
           fwrite(&crc, 4, 1, f) == 1 && fwrite(&count, 8, 1, f) == 1 &&
           (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
}

int vit_checkpoint_save(const char *path, const ViT *m) {
    const ViTConfig *c = &m->config;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return error_set("Cannot write ViT checkpoint %s: %s.", tmp, strerror(errno));
    int ok = 1;
    uint32_t n_sections = 2;
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) n_sections += m->param_sizes[t] > 0;
    const uint32_t version = CHECKPOINT_VERSION;
    ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&version, 4, 1, f) == 1 &&
         fwrite(&n_sections, 4, 1, f) == 1;
    const int32_t ci[N_CONFIG_I32] = {c->image_size, c->patch_size, c->channels, c->dim,
                                      c->n_layers,   c->n_heads,    c->mlp_dim,  c->n_classes,
                                      (int32_t)c->gelu, c->pre_norm, c->patch_bias};
    const float cf[1] = {c->norm_eps};
    ok = ok && put_section(f, "vit.config.i32", DT_I32, ci, N_CONFIG_I32);
    ok = ok && put_section(f, "vit.config.f32", DT_F32, cf, 1);
    float *buf = malloc(sizeof(float) * m->num_params);
    Real *host = malloc(sizeof(Real) * m->num_params);
    if (!buf || !host) ok = 0;
    if (ok) m->be->to_host(m->be, host, m->params, sizeof(Real) * m->num_params);
    for (int t = 0; ok && t < VIT_NUM_PARAM_TENSORS; t++) {
        const size_t n = m->param_sizes[t];
        if (n == 0) continue;
        const Real *src = host + (m->w.tensors[t] - m->params);
        for (size_t i = 0; i < n; i++) buf[i] = (float)src[i];
        char name[NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        ok = put_section(f, name, DT_F32, buf, n);
    }
    free(buf);
    free(host);
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        remove(tmp);
        return error_set("Cannot write ViT checkpoint %s (disk full or out of memory?).", tmp);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return error_set("Cannot move %s to %s: %s.", tmp, path, strerror(errno));
    }
    return LSC_OK;
}

typedef struct Sec {
    char name[NAME_LEN + 1];
    uint32_t dtype, crc;
    uint64_t count;
    const unsigned char *data;
} Sec;

/* The section `name` with the given dtype and count, CRC checked; NULL (error set) if not. */
static const Sec *find(const Sec *s, uint32_t n, const char *path, const char *name,
                       uint32_t dtype, uint64_t count) {
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, name) != 0) continue;
        if (s[i].dtype != dtype || s[i].count != count) {
            error_set("%s: section '%s' holds %llu elements of dtype %u, expected %llu of dtype %u.",
                      path, name, (unsigned long long)s[i].count, s[i].dtype,
                      (unsigned long long)count, dtype);
            return NULL;
        }
        if (crc_of(s[i].data, (size_t)count * 4) != s[i].crc) {
            error_set("%s is corrupt: the checksum of section '%s' does not match its data.", path, name);
            return NULL;
        }
        return &s[i];
    }
    error_set("%s has no section '%s': it is not a ViT checkpoint written by vit_checkpoint_save.",
              path, name);
    return NULL;
}

int vit_checkpoint_load(const char *path, ViT *m, Backend *be) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open ViT checkpoint %s: %s.", path, strerror(errno));
    unsigned char *file = NULL;
    Sec *secs = NULL;
    Real *host = NULL;
    int rc = LSC_ERR, created = 0;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 16 || fseek(f, 0, SEEK_SET) != 0) {
        error_set("%s is too short to be a lorasc checkpoint.", path);
        goto done;
    }
    file = malloc((size_t)size);
    if (!file || fread(file, 1, (size_t)size, f) != (size_t)size) {
        error_set("Cannot read %s (out of memory or I/O error).", path);
        goto done;
    }
    uint32_t version, n;
    memcpy(&version, file + 8, 4);
    memcpy(&n, file + 12, 4);
    if (memcmp(file, MAGIC, 8) != 0) {
        error_set("%s is not a lorasc checkpoint (bad magic number).", path);
        goto done;
    }
    if (version == 0 || version > CHECKPOINT_VERSION) {
        error_set("%s has checkpoint version %u; this lorasc reads versions 1 to %d.", path, version,
                  CHECKPOINT_VERSION);
        goto done;
    }
    if (n == 0 || n > (uint64_t)size / (NAME_LEN + 16)) {
        error_set("%s is truncated or corrupt: it claims %u sections, which cannot fit in %ld bytes.", path, n, size);
        goto done;
    }
    secs = calloc(n, sizeof *secs);
    if (!secs) {
        error_set("Out of memory reading %s.", path);
        goto done;
    }
    size_t off = 16;
    for (uint32_t i = 0; i < n; i++) {
        if (off + NAME_LEN + 16 > (size_t)size) {
            error_set("%s is truncated: section %u of %u has no complete header.", path, i + 1, n);
            goto done;
        }
        memcpy(secs[i].name, file + off, NAME_LEN);
        memcpy(&secs[i].dtype, file + off + NAME_LEN, 4);
        memcpy(&secs[i].crc, file + off + NAME_LEN + 4, 4);
        memcpy(&secs[i].count, file + off + NAME_LEN + 8, 8);
        off += NAME_LEN + 16;
        const uint64_t bytes = secs[i].count * (secs[i].dtype == 2 ? 8 : 4);
        if (secs[i].count > (uint64_t)size || off + bytes > (uint64_t)size) {
            error_set("%s is truncated: section '%s' runs past the end of the file.", path, secs[i].name);
            goto done;
        }
        secs[i].data = file + off;
        off += (size_t)bytes;
    }
    const Sec *si = find(secs, n, path, "vit.config.i32", DT_I32, N_CONFIG_I32);
    const Sec *sf = si ? find(secs, n, path, "vit.config.f32", DT_F32, 1) : NULL;
    if (!sf) goto done;
    int32_t ci[N_CONFIG_I32];
    float eps;
    memcpy(ci, si->data, sizeof ci);
    memcpy(&eps, sf->data, 4);
    const ViTConfig c = {.image_size = ci[0], .patch_size = ci[1], .channels = ci[2], .dim = ci[3],
                         .n_layers = ci[4], .n_heads = ci[5], .mlp_dim = ci[6], .n_classes = ci[7],
                         .gelu = (GeluKind)ci[8], .pre_norm = ci[9], .patch_bias = ci[10],
                         .norm_eps = eps};
    if (vit_config_validate(&c) != LSC_OK || vit_create(m, be, &c) != LSC_OK) goto done;
    created = 1;
    host = malloc(sizeof(Real) * m->num_params);
    if (!host) {
        error_set("Out of memory loading %s.", path);
        goto done;
    }
    for (int t = 0; t < VIT_NUM_PARAM_TENSORS; t++) {
        const size_t cnt = m->param_sizes[t];
        if (cnt == 0) continue;
        char name[NAME_LEN];
        snprintf(name, sizeof name, "vit.%s", vit_param_name(t));
        const Sec *s = find(secs, n, path, name, DT_F32, cnt);
        if (!s) goto done;
        Real *dst = host + (m->w.tensors[t] - m->params);
        for (size_t i = 0; i < cnt; i++) {
            float v;
            memcpy(&v, s->data + 4 * i, 4);
            dst[i] = (Real)v;
        }
    }
    be->to_device(be, m->params, host, sizeof(Real) * m->num_params);
    rc = LSC_OK;
done:
    if (rc != LSC_OK && created) vit_free(m);
    free(host);
    free(secs);
    free(file);
    fclose(f);
    return rc;
}
