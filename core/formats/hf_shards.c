/* Hugging Face checkpoint shards (see hf_shards.h). */
#include "core/formats/hf_shards.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"

int hf_shards_path(char *out, size_t size, const char *dir, const char *file) {
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
    if (hf_shards_path(path, sizeof path, dir, "model.safetensors.index.json") != LSC_OK) return LSC_ERR;
    if (access(path, F_OK) != 0) {
        if (hf_shards_path(path, sizeof path, dir, "model.safetensors") != LSC_OK) return LSC_ERR;
        if (safetensors_open(&s->st[0], path) != LSC_OK) return LSC_ERR;
        s->n = 1;
        return LSC_OK;
    }
    HfConfig index;
    if (hf_config_open(&index, dir, "model.safetensors.index.json", "shard index") != LSC_OK)
        return LSC_ERR;
    int rc = LSC_OK;
    const json_t *map = hf_config_get(&index, NULL, "weight_map");
    const char *key;
    const json_t *val;
    char files[HF_MAX_SHARDS][256];
    int nf = 0;
    if (!json_is_object(map)) {
        rc = error_set("%s has no \"weight_map\" object.", index.path);
        goto done;
    }
    json_object_foreach((json_t *)map, key, val) {
        const char *file = json_string_value(val);
        if (!file || strchr(file, '/') || strlen(file) >= sizeof files[0]) {
            rc = error_set("%s: weight_map[\"%s\"] must be a shard file name in the same directory.",
                           index.path, key);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < nf && !seen; i++) seen = strcmp(files[i], file) == 0;
        if (seen) continue;
        if (nf == HF_MAX_SHARDS) {
            rc = error_set("%s lists more than %d shards.", index.path, HF_MAX_SHARDS);
            goto done;
        }
        memcpy(files[nf++], file, strlen(file) + 1);
    }
    for (int i = 0; i < nf; i++) {
        char shard[4096];
        if ((rc = hf_shards_path(shard, sizeof shard, dir, files[i])) != LSC_OK ||
            (rc = safetensors_open(&s->st[s->n], shard)) != LSC_OK)
            goto done;
        s->n++;
    }
done:
    hf_config_close(&index);
    if (rc != LSC_OK) hf_shards_close(s);
    return rc;
}

const SafeTensors *hf_shards_find(const HfShards *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (safetensors_find(&s->st[i], name)) return &s->st[i];
    return NULL;
}


int hf_shards_read(const HfShards *s, const char *dir, const char *name, int ndim,
                   const int64_t *shape, Real *dst) {
    const SafeTensors *st = hf_shards_find(s, name);
    if (!st) return error_set("The checkpoint in %s has no tensor \"%s\".", dir, name);
    const int rc = safetensors_read_shaped(st, name, ndim, shape, dst);
    if (rc != LSC_OK && strstr(error_last(), "the config implies")) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_last());
        if (strlen(msg) > 0 && msg[strlen(msg) - 1] == '.') msg[strlen(msg) - 1] = '\0';
        return error_set("%s (by %s/config.json).", msg, dir);
    }
    return rc;
}
