/* Checkpoint I/O: a sectioned container with a CRC per section (writer, reader), what the
 * model / adapters / optimizer store in it, and llama2.c's legacy format. Every failure a
 * user can cause (missing, truncated, corrupt or mismatched file) is one sentence that
 * names the file and what was expected. */
#include "core/formats/checkpoint.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/error.h"

enum { DTYPE_F32 = 0, DTYPE_I32 = 1, DTYPE_I64 = 2 };
static const char CKPT_MAGIC[8] = {'L', 'S', 'C', 'C', 'K', 'P', 'T', '\0'};
#define SECTION_NAME_LEN 32

static size_t dtype_size(uint32_t dtype) { return dtype == DTYPE_I64 ? 8 : 4; }

/* CRC-32 (IEEE 802.3, as zlib), bytewise with a table built on first use. */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t n) {
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ------------------------------------------------------------------------------------------
 * writer */

typedef struct CkptWriter {
    FILE *f;
    const char *path;
    uint32_t n_sections;
    int failed;
} CkptWriter;

static void write_section(CkptWriter *w, const char *name, uint32_t dtype, const void *data,
                          uint64_t count) {
    if (w->failed) return;
    char padded[SECTION_NAME_LEN] = {0};
    LSC_ASSERT(strlen(name) < SECTION_NAME_LEN);
    memcpy(padded, name, strlen(name));
    const size_t bytes = (size_t)count * dtype_size(dtype);
    const uint32_t crc = crc32_update(0, data, bytes);
    if (fwrite(padded, 1, sizeof padded, w->f) != sizeof padded ||
        fwrite(&dtype, 4, 1, w->f) != 1 || fwrite(&crc, 4, 1, w->f) != 1 ||
        fwrite(&count, 8, 1, w->f) != 1 || (bytes && fwrite(data, 1, bytes, w->f) != bytes))
        w->failed = 1;
    w->n_sections++;
}

/* Copies n device Reals to a host f32 buffer and writes them as one section. */
static void write_reals(CkptWriter *w, Backend *be, const char *name, const Real *src, size_t n) {
    Real *host = malloc(n * sizeof(Real));
    float *f32 = (sizeof(Real) == sizeof(float)) ? (float *)host : malloc(n * sizeof(float));
    if (!host || !f32) {
        w->failed = 1;
    } else {
        be->to_host(be, host, src, n * sizeof(Real));
        if ((void *)f32 != (void *)host)
            for (size_t i = 0; i < n; i++) f32[i] = (float)host[i];
        write_section(w, name, DTYPE_F32, f32, n);
    }
    if ((void *)f32 != (void *)host) free(f32);
    free(host);
}

static void write_model(CkptWriter *w, const Llama *m) {
    const LlamaConfig *c = &m->config;
    const int32_t ci[] = {c->dim,        c->hidden_dim, c->n_layers,
                          c->n_heads,    c->n_kv_heads, c->vocab_size,
                          c->seq_len,    c->tied_embeddings, (int32_t)c->rope_style};
    const float cf[] = {c->rope_theta, c->norm_eps};
    write_section(w, "llama.config.i32", DTYPE_I32, ci, 9);
    write_section(w, "llama.config.f32", DTYPE_F32, cf, 2);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char name[SECTION_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        write_reals(w, m->be, name, m->w.tensors[i], m->param_sizes[i]);
    }
}

static void lora_config_ints(const LoraAdapters *lora, int32_t out[17]) {
    out[0] = lora->config.rank;
    out[1] = (int32_t)lora->config.targets;
    out[2] = lora->n_layers;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        out[3 + t] = lora->in_dim[t];
        out[3 + LORA_NUM_TARGETS + t] = lora->out_dim[t];
    }
}

int checkpoint_save(const char *path, const Llama *model, const LoraAdapters *lora,
                    const AdamW *opt, long step) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return error_set("Checkpoint path is too long: %s", path);
    CkptWriter w = {.f = fopen(tmp, "wb"), .path = path};
    if (!w.f)
        return error_set("Cannot write checkpoint %s: %s (does the directory exist?).", tmp,
                         strerror(errno));
    const uint32_t version = CHECKPOINT_VERSION, zero = 0;
    if (fwrite(CKPT_MAGIC, 1, 8, w.f) != 8 || fwrite(&version, 4, 1, w.f) != 1 ||
        fwrite(&zero, 4, 1, w.f) != 1)
        w.failed = 1;
    if (model) write_model(&w, model);
    if (lora) {
        int32_t ci[17];
        lora_config_ints(lora, ci);
        write_section(&w, "lora.config.i32", DTYPE_I32, ci, 17);
        write_section(&w, "lora.config.f32", DTYPE_F32, &lora->config.alpha, 1);
        if (lora->config.use_dora) {
            const int32_t dora = 1;
            write_section(&w, "lora.dora", DTYPE_I32, &dora, 1);
        }
        write_reals(&w, lora->be, "lora.params", lora->params, lora->num_params);
    }
    if (opt) {
        const int64_t opt_step = opt->step;
        write_reals(&w, opt->be, "adamw.m", opt->m, opt->n_total);
        write_reals(&w, opt->be, "adamw.v", opt->v, opt->n_total);
        write_section(&w, "adamw.step", DTYPE_I64, &opt_step, 1);
    }
    const int64_t train_step = step;
    write_section(&w, "train.step", DTYPE_I64, &train_step, 1);
    /* the section count goes in the header last */
    if (!w.failed && (fseek(w.f, 12, SEEK_SET) != 0 || fwrite(&w.n_sections, 4, 1, w.f) != 1))
        w.failed = 1;
    if (!w.failed && (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0)) w.failed = 1;
    if (fclose(w.f) != 0) w.failed = 1;
    if (w.failed) {
        remove(tmp);
        return error_set("Failed writing checkpoint %s: %s (disk full?).", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0)
        return error_set("Cannot move checkpoint %s into place as %s: %s.", tmp, path, strerror(errno));
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * reader */

typedef struct Section {
    char name[SECTION_NAME_LEN + 1];
    uint32_t dtype, crc;
    uint64_t count;
    long offset; /* of the payload */
} Section;

typedef struct CkptReader {
    FILE *f;
    const char *path;
    Section *sections;
    uint32_t n;
} CkptReader;

static void reader_close(CkptReader *r) {
    if (r->f) fclose(r->f);
    free(r->sections);
    memset(r, 0, sizeof *r);
}

/* Reads the header and the section table (names, dtypes, offsets), checking that every
 * payload lies inside the file. Every error message is formed before anything is freed. */
static int reader_open(CkptReader *r, const char *path) {
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
    if (fread(magic, 1, 8, r->f) != 8 || memcmp(magic, CKPT_MAGIC, 8) != 0) {
        rc = error_set("%s is not a lorasc checkpoint (bad magic number); expected a file written "
                       "by checkpoint_save (llama2.c .bin files load with llama2c_load).", path);
        goto fail;
    }
    if (fread(&version, 4, 1, r->f) != 1 || fread(&n, 4, 1, r->f) != 1) {
        rc = error_set("%s is truncated: the header ends early.", path);
        goto fail;
    }
    if (version == 0 || version > CHECKPOINT_VERSION) {
        rc = error_set("%s has checkpoint version %u; this lorasc reads versions 1 to %d (update "
                       "lorasc to read it).", path, version, CHECKPOINT_VERSION);
        goto fail;
    }
    const uint64_t header = SECTION_NAME_LEN + 4 + 4 + 8;
    if (n == 0 || (uint64_t)n * header > size) {
        rc = error_set("%s is corrupt: it claims %u sections, which cannot fit in %llu bytes.", path,
                       n, (unsigned long long)size);
        goto fail;
    }
    r->sections = calloc(n, sizeof *r->sections);
    if (!r->sections) {
        rc = error_set("Out of memory reading %s.", path);
        goto fail;
    }
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        Section *s = &r->sections[i];
        if (fread(s->name, 1, SECTION_NAME_LEN, r->f) != SECTION_NAME_LEN ||
            fread(&s->dtype, 4, 1, r->f) != 1 || fread(&s->crc, 4, 1, r->f) != 1 ||
            fread(&s->count, 8, 1, r->f) != 1) {
            rc = error_set("%s is truncated: section %u of %u has no complete header.", path, i + 1, n);
            goto fail;
        }
        s->name[SECTION_NAME_LEN] = '\0';
        if (s->dtype > DTYPE_I64) {
            rc = error_set("%s is corrupt: section '%s' has unknown dtype %u.", path, s->name, s->dtype);
            goto fail;
        }
        s->offset = ftell(r->f);
        const uint64_t bytes = s->count * dtype_size(s->dtype);
        if (s->count > size || (uint64_t)s->offset + bytes > size) {
            rc = error_set("%s is truncated: section '%s' needs %llu bytes at offset %ld but the file "
                           "has %llu bytes.", path, s->name, (unsigned long long)bytes, s->offset,
                           (unsigned long long)size);
            goto fail;
        }
        if (fseek(r->f, (long)bytes, SEEK_CUR) != 0) {
            rc = error_set("Cannot seek in %s: %s.", path, strerror(errno));
            goto fail;
        }
    }
    return LSC_OK;
fail:
    reader_close(r);
    return rc;
}

static const Section *reader_find(const CkptReader *r, const char *name) {
    for (uint32_t i = 0; i < r->n; i++)
        if (strcmp(r->sections[i].name, name) == 0) return &r->sections[i];
    return NULL;
}

/* Reads section `name` (dtype, exactly `count` elements) into host memory dst, checking CRC. */
static int reader_read(CkptReader *r, const char *name, uint32_t dtype, void *dst, uint64_t count) {
    const Section *s = reader_find(r, name);
    if (!s) return error_set("%s has no section '%s'; it was not written with this content.", r->path, name);
    if (s->dtype != dtype || s->count != count)
        return error_set("%s: section '%s' holds %llu elements of dtype %u, expected %llu of dtype "
                         "%u (the checkpoint does not match this model or adapter).",
                         r->path, name, (unsigned long long)s->count, s->dtype,
                         (unsigned long long)count, dtype);
    const size_t bytes = (size_t)count * dtype_size(dtype);
    if (fseek(r->f, s->offset, SEEK_SET) != 0 || fread(dst, 1, bytes, r->f) != bytes)
        return error_set("Cannot read section '%s' of %s.", name, r->path);
    if (crc32_update(0, dst, bytes) != s->crc)
        return error_set("%s is corrupt: the checksum of section '%s' does not match its data.",
                         r->path, name);
    return LSC_OK;
}

/* Reads an f32 section of n elements into device Reals. */
static int reader_read_reals(CkptReader *r, Backend *be, const char *name, Real *dst, size_t n) {
    float *f32 = malloc(n * sizeof(float));
    Real *host = (sizeof(Real) == sizeof(float)) ? (Real *)f32 : malloc(n * sizeof(Real));
    int rc = LSC_OK;
    if (!f32 || !host) {
        rc = error_set("Out of memory reading section '%s' of %s.", name, r->path);
        goto cleanup;
    }
    rc = reader_read(r, name, DTYPE_F32, f32, n);
    if (rc != LSC_OK) goto cleanup;
    if ((void *)host != (void *)f32)
        for (size_t i = 0; i < n; i++) host[i] = (Real)f32[i];
    be->to_device(be, dst, host, n * sizeof(Real));
cleanup:
    if ((void *)host != (void *)f32) free(host);
    free(f32);
    return rc;
}

/* DoRA adapters carry a "lora.dora" section (added after version 1's first release: files
 * without it hold plain LoRA). */
static int read_dora_flag(CkptReader *r, int *use_dora) {
    int32_t flag = 0;
    *use_dora = 0;
    if (!reader_find(r, "lora.dora")) return LSC_OK;
    if (reader_read(r, "lora.dora", DTYPE_I32, &flag, 1) != LSC_OK) return LSC_ERR;
    *use_dora = flag != 0;
    return LSC_OK;
}

static int read_model_config(CkptReader *r, LlamaConfig *c) {
    int32_t ci[9];
    float cf[2];
    if (reader_read(r, "llama.config.i32", DTYPE_I32, ci, 9) != LSC_OK ||
        reader_read(r, "llama.config.f32", DTYPE_F32, cf, 2) != LSC_OK)
        return LSC_ERR;
    *c = (LlamaConfig){.dim = ci[0], .hidden_dim = ci[1], .n_layers = ci[2], .n_heads = ci[3],
                       .n_kv_heads = ci[4], .vocab_size = ci[5], .seq_len = ci[6],
                       .tied_embeddings = ci[7], .rope_style = (RopeStyle)ci[8],
                       .rope_theta = cf[0], .norm_eps = cf[1]};
    if (llama_config_validate(c) != LSC_OK)
        return error_set("%s holds an invalid model config: %s", r->path, error_last());
    return LSC_OK;
}

static int read_model_weights(CkptReader *r, Llama *m) {
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char name[SECTION_NAME_LEN];
        snprintf(name, sizeof name, "llama.%s", llama_param_name(i));
        if (reader_read_reals(r, m->be, name, m->w.tensors[i], m->param_sizes[i]) != LSC_OK)
            return LSC_ERR;
    }
    return LSC_OK;
}

int checkpoint_load_model(const char *path, Llama *model, Backend *be) {
    CkptReader r;
    LlamaConfig c;
    memset(model, 0, sizeof *model);
    if (reader_open(&r, path) != LSC_OK) return LSC_ERR;
    int rc = read_model_config(&r, &c);
    if (rc == LSC_OK) rc = llama_create(model, be, &c);
    if (rc == LSC_OK) {
        rc = read_model_weights(&r, model);
        if (rc != LSC_OK) llama_free(model);
    }
    reader_close(&r);
    return rc;
}

static int same_config(const LlamaConfig *a, const LlamaConfig *b) {
    return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->vocab_size == b->vocab_size && a->tied_embeddings == b->tied_embeddings;
}

int checkpoint_load_state(const char *path, Llama *model, LoraAdapters *lora, AdamW *opt,
                          long *step) {
    CkptReader r;
    if (reader_open(&r, path) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    if (model) {
        LlamaConfig c;
        rc = read_model_config(&r, &c);
        if (rc == LSC_OK && !same_config(&c, &model->config))
            rc = error_set("%s holds a model of another shape (dim %d, %d layers, vocab %d) than the "
                           "one being restored (dim %d, %d layers, vocab %d).", path, c.dim,
                           c.n_layers, c.vocab_size, model->config.dim, model->config.n_layers,
                           model->config.vocab_size);
        if (rc == LSC_OK) rc = read_model_weights(&r, model);
    }
    if (rc == LSC_OK && lora) {
        int32_t have[17], want[17];
        lora_config_ints(lora, want);
        int dora = 0;
        rc = reader_read(&r, "lora.config.i32", DTYPE_I32, have, 17);
        if (rc == LSC_OK) rc = read_dora_flag(&r, &dora);
        if (rc == LSC_OK && dora != lora->config.use_dora)
            rc = error_set("%s holds %s adapters; the adapter being restored is %s.", path,
                           dora ? "DoRA" : "LoRA", lora->config.use_dora ? "DoRA" : "LoRA");
        if (rc == LSC_OK && memcmp(have, want, sizeof have) != 0)
            rc = error_set("%s holds LoRA adapters of rank %d on targets 0x%x over %d layers; the "
                           "adapter being restored has rank %d on targets 0x%x over %d layers.",
                           path, have[0], (unsigned)have[1], have[2], want[0], (unsigned)want[1], want[2]);
        if (rc == LSC_OK) rc = reader_read_reals(&r, lora->be, "lora.params", lora->params, lora->num_params);
        if (rc == LSC_OK) lora->magnitudes_set = 1; /* DoRA's m came from the file */
    }
    if (rc == LSC_OK && opt) {
        int64_t opt_step = 0;
        rc = reader_read_reals(&r, opt->be, "adamw.m", opt->m, opt->n_total);
        if (rc == LSC_OK) rc = reader_read_reals(&r, opt->be, "adamw.v", opt->v, opt->n_total);
        if (rc == LSC_OK) rc = reader_read(&r, "adamw.step", DTYPE_I64, &opt_step, 1);
        if (rc == LSC_OK) opt->step = (long)opt_step;
    }
    if (rc == LSC_OK && step) {
        int64_t s = 0;
        rc = reader_read(&r, "train.step", DTYPE_I64, &s, 1);
        if (rc == LSC_OK) *step = (long)s;
    }
    reader_close(&r);
    return rc;
}

int checkpoint_load_lora(const char *path, LoraAdapters *lora, Backend *be, const LlamaConfig *c) {
    CkptReader r;
    memset(lora, 0, sizeof *lora);
    if (reader_open(&r, path) != LSC_OK) return LSC_ERR;
    int32_t ci[17];
    float alpha;
    int rc = reader_read(&r, "lora.config.i32", DTYPE_I32, ci, 17);
    if (rc == LSC_OK) rc = reader_read(&r, "lora.config.f32", DTYPE_F32, &alpha, 1);
    int dora = 0;
    if (rc == LSC_OK) rc = read_dora_flag(&r, &dora);
    if (rc == LSC_OK) {
        int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
        llama_lora_shapes(c, in, out);
        const LoraConfig lc = {.rank = ci[0], .alpha = alpha, .targets = (unsigned)ci[1],
                               .use_dora = dora};
        if (ci[2] != c->n_layers)
            rc = error_set("%s holds adapters for %d layers; the model has %d.", path, ci[2], c->n_layers);
        if (rc == LSC_OK) rc = lora_create(lora, be, &lc, c->n_layers, in, out, 0);
        if (rc == LSC_OK) {
            int32_t want[17];
            lora_config_ints(lora, want);
            if (memcmp(want, ci, sizeof want) != 0)
                rc = error_set("%s holds adapters whose matrix shapes do not match this model.", path);
            else
                rc = reader_read_reals(&r, be, "lora.params", lora->params, lora->num_params);
            if (rc == LSC_OK) lora->magnitudes_set = 1; /* DoRA's m came from the file */
            if (rc != LSC_OK) lora_free(lora);
        }
    }
    reader_close(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * llama2.c legacy format (run.c): int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len}, then fp32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
 * w3, rms_final, freq_cis_real and freq_cis_imag [seq_len, HD/2] (unused: we rebuild them),
 * and wcls when vocab_size < 0. */

int llama2c_load(const char *path, Llama *model, Backend *be) {
    memset(model, 0, sizeof *model);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open llama2.c checkpoint %s: %s.", path, strerror(errno));
    int32_t h[7];
    struct stat st;
    int rc = LSC_OK;
    float *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || fread(h, sizeof(int32_t), 7, f) != 7) {
        rc = error_set("%s is too short to be a llama2.c checkpoint (no 28-byte header).", path);
        goto cleanup;
    }
    if ((uint32_t)h[0] == 0x616b3432u) {
        rc = error_set("%s is a llama2.c version-1 export (magic 'ak42'); lorasc reads the legacy "
                       "format written by export.py --version 0.", path);
        goto cleanup;
    }
    LlamaConfig c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3],
                     .n_kv_heads = h[4], .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6],
                     .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_embeddings = h[5] > 0,
                     .rope_style = ROPE_INTERLEAVED};
    if (llama_config_validate(&c) != LSC_OK) {
        rc = error_set("%s does not have a valid llama2.c header: %s", path, error_last());
        goto cleanup;
    }
    size_t sizes[LLAMA_NUM_PARAM_TENSORS], expected = 0;
    llama_param_sizes(&c, sizes);
    const size_t freq = (size_t)c.seq_len * (size_t)(c.dim / c.n_heads / 2);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) expected += sizes[i];
    expected += 2 * freq;
    const uint64_t want_bytes = 28 + (uint64_t)expected * 4;
    if ((uint64_t)st.st_size != want_bytes) {
        rc = error_set("%s has %lld bytes but its header (dim %d, hidden %d, %d layers, %d heads, "
                       "%d kv heads, vocab %d, seq %d) implies %llu: the file is truncated or not "
                       "a legacy llama2.c checkpoint.", path, (long long)st.st_size, c.dim,
                       c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                       (unsigned long long)want_bytes);
        goto cleanup;
    }
    if ((rc = llama_create(model, be, &c)) != LSC_OK) goto cleanup;
    buf = malloc((expected) * sizeof(float));
    if (!buf || fread(buf, sizeof(float), expected, f) != expected) {
        rc = error_set("Cannot read the weights of %s.", path);
        goto cleanup;
    }
    /* copy tensor by tensor, skipping the rope tables that sit before wcls */
    const float *src = buf;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (i == LLAMA_WCLS) src += 2 * freq;
        if (!sizes[i]) continue;
        Real *host = malloc(sizes[i] * sizeof(Real));
        if (!host) {
            rc = error_set("Out of memory loading %s.", path);
            goto cleanup;
        }
        for (size_t j = 0; j < sizes[i]; j++) host[j] = (Real)src[j];
        be->to_device(be, model->w.tensors[i], host, sizes[i] * sizeof(Real));
        free(host);
        src += sizes[i];
    }
cleanup:
    if (rc != LSC_OK && model->be) llama_free(model);
    free(buf);
    fclose(f);
    return rc;
}
