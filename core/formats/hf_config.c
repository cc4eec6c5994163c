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

/* x as Python's repr writes a float: the fewest significant digits that read back as x, in
 * fixed notation when its exponent is in [-4, 16) (500000.0, 0.037), else scientific (1e-05). */
static void python_repr(double x, char *out, size_t n) {
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(out, n, "%.*e", digits - 1, x);
        if (strtod(out, NULL) == x) break;
    }
    snprintf(out, n, "%.*e", digits - 1, x);
    const int exp10 = atoi(strchr(out, 'e') + 1);
    if (exp10 < -4 || exp10 >= 16) return;
    snprintf(out, n, "%.*f", digits - 1 - exp10 > 0 ? digits - 1 - exp10 : 0, x);
    if (!strchr(out, '.')) strncat(out, ".0", n - strlen(out) - 1);
}

/* The dumped text with every real written as the shortest decimal that reads back as the same
 * double (jansson writes %.17g: 1e-05 would be 1.0000000000000001e-05), as Python's json does;
 * an integral real keeps its ".0". Numbers inside strings are left alone. */
static char *shortest_reals(const char *text) {
    const size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    int in_string = 0;
    for (const char *p = text; *p;) {
        if (in_string) {
            if (*p == '\\' && p[1])
                *o++ = *p++;
            else if (*p == '"')
                in_string = 0;
            *o++ = *p++;
            continue;
        }
        if (*p == '"') {
            in_string = 1;
            *o++ = *p++;
            continue;
        }
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            const char *q = p;
            int real = 0;
            while (*q && strchr("+-0123456789.eE", *q))
                real |= *q == '.' || *q == 'e' || *q == 'E', q++;
            char num[64];
            if (real && (size_t)(q - p) < sizeof num) {
                memcpy(num, p, (size_t)(q - p));
                num[q - p] = '\0';
                char best[64];
                python_repr(strtod(num, NULL), best, sizeof best);
                if (strlen(best) <= (size_t)(q - p)) { /* never longer than jansson's */
                    memcpy(o, best, strlen(best));
                    o += strlen(best);
                    p = q;
                    continue;
                }
            }
            memcpy(o, p, (size_t)(q - p));
            o += q - p;
            p = q;
            continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

int hf_config_write(const char *dir, const char *file, json_t *root) {
    char path[4096];
    int rc = join(path, sizeof path, dir, file);
    char *text = rc == LSC_OK && root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char *nice = text ? shortest_reals(text) : NULL;
    FILE *f = nice ? fopen(path, "w") : NULL;
    if (rc == LSC_OK && (!f || fputs(nice, f) < 0 || fputc('\n', f) == EOF))
        rc = error_set("Cannot write %s: %s.", path, strerror(errno));
    if (f && fclose(f) != 0 && rc == LSC_OK)
        rc = error_set("Cannot write %s: %s.", path, strerror(errno));
    free(text);
    free(nice);
    json_decref(root);
    return rc;
}

const char *const HF_TOKENIZER_FILES[] = {"generation_config.json",
                                          "tokenizer.json",
                                          "tokenizer_config.json",
                                          "special_tokens_map.json",
                                          "tokenizer.model",
                                          "vocab.json",
                                          "merges.txt",
                                          "added_tokens.json",
                                          "chat_template.json",
                                          "chat_template.jinja",
                                          NULL};

int hf_config_copy_file(const char *src_dir, const char *dst_dir, const char *file, int *copied) {
    char from[4096], to[4096], tmp[4200];
    if (join(from, sizeof from, src_dir, file) != LSC_OK ||
        join(to, sizeof to, dst_dir, file) != LSC_OK)
        return LSC_ERR;
    FILE *a = fopen(from, "rb");
    if (!a)
        return errno == ENOENT ? LSC_OK : error_set("Cannot read %s: %s.", from, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *b = fopen(tmp, "wb");
    int rc = b ? LSC_OK : error_set("Cannot write %s: %s.", tmp, strerror(errno));
    char buf[65536];
    size_t n;
    while (rc == LSC_OK && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = error_set("Cannot write %s: %s.", tmp, strerror(errno));
    if (rc == LSC_OK && ferror(a)) rc = error_set("Cannot read %s: %s.", from, strerror(errno));
    fclose(a);
    if (b && fclose(b) != 0 && rc == LSC_OK)
        rc = error_set("Cannot write %s: %s.", tmp, strerror(errno));
    if (rc == LSC_OK && rename(tmp, to) != 0)
        rc = error_set("Cannot write %s: %s.", to, strerror(errno));
    if (rc != LSC_OK)
        remove(tmp);
    else if (copied)
        (*copied)++;
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
