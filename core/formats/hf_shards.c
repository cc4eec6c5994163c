/* Hugging Face checkpoint shards (see hf_shards.h). */
#include "core/formats/hf_shards.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"

int hf_path_join(char *out, size_t size, const char *dir, const char *file) {
    if (snprintf(out, size, "%s/%s", dir, file) >= (int)size)
        return error_set("Path too long: %s/%s.", dir, file);
    return LSC_OK;
}

void hf_shards_close(HfShards *s) {
    for (int i = 0; i < s->n; i++) safetensors_close(&s->st[i]);
    s->n = 0;
}

int hf_shards_open(HfShards *s, const char *dir) {
    char path[4096];
    s->n = 0;
    if (hf_path_join(path, sizeof path, dir, "model.safetensors.index.json") != LSC_OK) return LSC_ERR;
    if (access(path, F_OK) != 0) {
        if (hf_path_join(path, sizeof path, dir, "model.safetensors") != LSC_OK) return LSC_ERR;
        if (safetensors_open(&s->st[0], path) != LSC_OK) return LSC_ERR;
        s->n = 1;
        return LSC_OK;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return error_set("Cannot read %s: %s (line %d, column %d).", path, jerr.text, jerr.line,
                         jerr.column);
    int rc = LSC_OK;
    const json_t *map = json_object_get(root, "weight_map");
    const char *key;
    const json_t *val;
    char files[HF_MAX_SHARDS][256];
    int nf = 0;
    if (!json_is_object(map)) {
        rc = error_set("%s has no \"weight_map\" object.", path);
        goto done;
    }
    json_object_foreach((json_t *)map, key, val) {
        const char *file = json_string_value(val);
        if (!file || strchr(file, '/') || strlen(file) >= sizeof files[0]) {
            rc = error_set("%s: weight_map[\"%s\"] must be a shard file name in the same directory.",
                           path, key);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < nf && !seen; i++) seen = strcmp(files[i], file) == 0;
        if (seen) continue;
        if (nf == HF_MAX_SHARDS) {
            rc = error_set("%s lists more than %d shards.", path, HF_MAX_SHARDS);
            goto done;
        }
        memcpy(files[nf++], file, strlen(file) + 1);
    }
    for (int i = 0; i < nf; i++) {
        char shard[4096];
        if ((rc = hf_path_join(shard, sizeof shard, dir, files[i])) != LSC_OK ||
            (rc = safetensors_open(&s->st[s->n], shard)) != LSC_OK)
            goto done;
        s->n++;
    }
done:
    json_decref(root);
    if (rc != LSC_OK) hf_shards_close(s);
    return rc;
}

const SafeTensors *hf_shards_find(const HfShards *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (safetensors_find(&s->st[i], name)) return &s->st[i];
    return NULL;
}

