/* Hugging Face JSON files (see hf_config.h). */
#include "core/formats/hf_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"

static int join(char *out, size_t size, const char *dir, const char *file) {
    if (snprintf(out, size, "%s/%s", dir, file) >= (int)size)
        return error_set("Path too long: %s/%s.", dir, file);
    return LSC_OK;
}

int hf_config_open(HfConfig *c, const char *dir, const char *file, const char *kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    if (join(c->path, sizeof c->path, dir, file) != LSC_OK) return LSC_ERR;
    json_error_t jerr;
    c->root = json_load_file(c->path, JSON_REJECT_DUPLICATES, &jerr);
    if (!c->root)
        return error_set("Cannot read %s: %s (line %d, column %d).", c->path, jerr.text, jerr.line,
                         jerr.column);
    if (!json_is_object(c->root)) {
        hf_config_close(c);
        return error_set("%s must hold a JSON object.", c->path);
    }
    return LSC_OK;
}

void hf_config_close(HfConfig *c) {
    json_decref(c->root);
    c->root = NULL;
}

const json_t *hf_config_get(const HfConfig *c, const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj ? obj : c->root, key);
    return json_is_null(v) ? NULL : v;
}

int hf_config_int(const HfConfig *c, const json_t *obj, const char *key, int required, int def,
                  int *out) {
    const json_t *v = hf_config_get(c, obj, key);
    if (!v) {
        if (required) return error_set("%s lacks \"%s\" (a %s needs it).", c->path, key, c->kind);
        *out = def;
        return LSC_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return error_set("%s: \"%s\" must be a positive integer.", c->path, key);
    *out = (int)json_integer_value(v);
    return LSC_OK;
}

int hf_config_real(const HfConfig *c, const json_t *obj, const char *key, double def, float *out) {
    const json_t *v = hf_config_get(c, obj, key);
    if (!v) {
        *out = (float)def;
        return LSC_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return error_set("%s: \"%s\" must be a positive number.", c->path, key);
    *out = (float)json_number_value(v);
    return LSC_OK;
}

int hf_config_bool(const HfConfig *c, const json_t *obj, const char *key, int def, int *out) {
    const json_t *v = hf_config_get(c, obj, key);
    if (!v) {
        *out = def;
        return LSC_OK;
    }
    if (!json_is_boolean(v)) return error_set("%s: \"%s\" must be true or false.", c->path, key);
    *out = json_is_true(v);
    return LSC_OK;
}

int hf_config_string(const HfConfig *c, const json_t *obj, const char *key, const char *def,
                     const char **out) {
    const json_t *v = hf_config_get(c, obj, key);
    if (!v) {
        *out = def;
        return LSC_OK;
    }
    if (!json_is_string(v)) return error_set("%s: \"%s\" must be a string.", c->path, key);
    *out = json_string_value(v);
    return LSC_OK;
}

int hf_config_write(const char *dir, const char *file, json_t *root) {
    char path[4096];
    int rc = join(path, sizeof path, dir, file);
    if (rc == LSC_OK && (!root || json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0))
        rc = error_set("Cannot write %s: %s.", path, strerror(errno));
    json_decref(root);
    return rc;
}

const char *const HF_TOKENIZER_FILES[] = {
    "generation_config.json", "tokenizer.json",   "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model",        "vocab.json",       "merges.txt",            "added_tokens.json",
    "chat_template.json",     "chat_template.jinja", NULL};

int hf_config_copy_file(const char *src_dir, const char *dst_dir, const char *file, int *copied) {
    char from[4096], to[4096], tmp[4200];
    if (join(from, sizeof from, src_dir, file) != LSC_OK || join(to, sizeof to, dst_dir, file) != LSC_OK)
        return LSC_ERR;
    FILE *a = fopen(from, "rb");
    if (!a) return errno == ENOENT ? LSC_OK : error_set("Cannot read %s: %s.", from, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *b = fopen(tmp, "wb");
    int rc = b ? LSC_OK : error_set("Cannot write %s: %s.", tmp, strerror(errno));
    char buf[65536];
    size_t n;
    while (rc == LSC_OK && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = error_set("Cannot write %s: %s.", tmp, strerror(errno));
    if (rc == LSC_OK && ferror(a)) rc = error_set("Cannot read %s: %s.", from, strerror(errno));
    fclose(a);
    if (b && fclose(b) != 0 && rc == LSC_OK) rc = error_set("Cannot write %s: %s.", tmp, strerror(errno));
    if (rc == LSC_OK && rename(tmp, to) != 0) rc = error_set("Cannot write %s: %s.", to, strerror(errno));
    if (rc != LSC_OK) remove(tmp);
    else if (copied) (*copied)++;
    return rc;
}

double hf_config_float_value(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}
