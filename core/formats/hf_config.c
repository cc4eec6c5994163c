/* Hugging Face JSON files (see hf_config.h). */
#include "core/formats/hf_config.h"

#include <errno.h>
#include <stdio.h>
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
