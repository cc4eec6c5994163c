/* Hugging Face tokenizer.json readers: SentencePiece-converted BPE (Llama 1/2: vocab, merges,
 * byte_fallback, Prepend / Metaspace) and byte-level BPE (GPT-2, SmolLM2: ByteLevel
 * pre-tokenizer, optionally after Digits), plus the tokenizer_config.json beside the file
 * (chat template, special tokens). What the byte-level model does with them is
 * tokenizer_bpe.c; the other formats are tokenizer_load.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base/error.h"
#include "core/data/tokenizer_internal.h"

/* ------------------------------------------------------------------------------------------
 * SentencePiece-style ("model": {"type": "BPE", "vocab", "merges", "byte_fallback"},
 * "added_tokens"). Merge priority: the rank of the first merge that produces a piece (for
 * SentencePiece-converted vocabularies the merges are sorted by piece score, so this is the
 * piece's score order); pieces that no merge produces are never merge results. */

static const char *json_type_name(const json_t *j) {
    const json_t *type = json_is_object(j) ? json_object_get(j, "type") : NULL;
    return json_is_string(type) ? json_string_value(type) : "";
}

/* The dummy prefix (TOKENIZER_PREFIX_*) of a SentencePiece-style tokenizer.json, and whether
 * its Metaspace pre-tokenizer splits words. Llama 2 (legacy): a Prepend("▁") normalizer, always;
 * newer: Metaspace, whose missing fields take tokenizers' defaults (prepend_scheme from
 * add_prefix_space, itself true by default; split true). Anything else in a Metaspace that
 * lorasc does not reproduce is an error. */
static int json_dummy_prefix(const json_t *root, const char *name, int *prefix, int *split) {
    const json_t *norm = json_object_get(root, "normalizer");
    *prefix = TOKENIZER_PREFIX_NONE;
    *split = 0;
    if (strcmp(json_type_name(norm), "Prepend") == 0) *prefix = TOKENIZER_PREFIX_ALWAYS;
    if (strcmp(json_type_name(norm), "Sequence") == 0) {
        const json_t *list = json_object_get(norm, "normalizers");
        size_t i;
        const json_t *it;
        json_array_foreach(list, i, it) if (strcmp(json_type_name(it), "Prepend") == 0) *prefix =
            TOKENIZER_PREFIX_ALWAYS;
    }
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (strcmp(json_type_name(pre), "Metaspace") != 0) return LSC_OK;
    const json_t *rep = json_object_get(pre, "replacement"),
                 *scheme = json_object_get(pre, "prepend_scheme");
    const json_t *add = json_object_get(pre, "add_prefix_space"),
                 *sp = json_object_get(pre, "split");
    if (rep && (!json_is_string(rep) || strcmp(json_string_value(rep), "\xe2\x96\x81") != 0))
        return error_set("%s: the Metaspace pre-tokenizer replaces spaces with \"%s\"; lorasc's "
                         "SentencePiece-style tokenizer uses \"\xe2\x96\x81\" (U+2581).",
                         name, json_is_string(rep) ? json_string_value(rep) : "?");
    const char *s = json_is_string(scheme)                         ? json_string_value(scheme)
                    : (json_is_boolean(add) && !json_is_true(add)) ? "never"
                                                                   : "always";
    if (strcmp(s, "never") == 0)
        *prefix = TOKENIZER_PREFIX_NONE;
    else if (strcmp(s, "first") == 0 || strcmp(s, "always") == 0)
        *prefix = TOKENIZER_PREFIX_UNLESS_SPACE;
    else
        return error_set("%s: Metaspace prepend_scheme \"%s\" is not one of \"first\", \"always\", "
                         "\"never\".",
                         name, s);
    *split = json_is_boolean(sp) ? json_is_true(sp) : 1;
    return LSC_OK;
}

/* 1 if the pre-tokenizer is ByteLevel or a Sequence holding one. */
static int json_has_bytelevel(const json_t *pre) {
    if (strcmp(json_type_name(pre), "ByteLevel") == 0) return 1;
    if (strcmp(json_type_name(pre), "Sequence") != 0) return 0;
    size_t i;
    const json_t *it;
    json_array_foreach(json_object_get(pre, "pretokenizers"), i, it) if (json_has_bytelevel(it)) return 1;
    return 0;
}

/* merges[i]: "a b" (tokenizers < 0.20) or ["a", "b"]. */
static int json_merge(const json_t *val, size_t i, const char *name, const char **a, size_t *na,
                      const char **b, size_t *nb) {
    *a = *b = NULL;
    *na = *nb = 0;
    if (json_is_string(val)) {
        *a = json_string_value(val);
        const char *sp = strchr(*a, ' ');
        if (sp) {
            *na = (size_t)(sp - *a);
            *b = sp + 1;
            *nb = strlen(*b);
        }
    } else if (json_is_array(val) && json_array_size(val) == 2 &&
               json_is_string(json_array_get(val, 0)) && json_is_string(json_array_get(val, 1))) {
        *a = json_string_value(json_array_get(val, 0));
        *b = json_string_value(json_array_get(val, 1));
        *na = strlen(*a);
        *nb = strlen(*b);
    }
    if (!*b || *na == 0 || *nb == 0)
        return error_set("%s: merges[%zu] is not a pair of pieces (\"a b\" or [\"a\", \"b\"]).", name, i);
    return LSC_OK;
}

static int json_bpe(Tokenizer *t, const json_t *root, const char *name);
static int json_config(Tokenizer *t, const char *path);

int tokenizer_load_hf_json_mem(Tokenizer *t, const void *data, size_t size, const char *name) {
    tok_reset(t);
    json_error_t jerr;
    json_t *root = json_loadb(data, size, 0, &jerr);
    if (!root)
        return error_set("%s is not valid JSON: %s at line %d, column %d.", name, jerr.text,
                         jerr.line, jerr.column);
    int rc = LSC_OK;
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model) || !json_is_object(vocab) || !json_is_array(merges)) {
        rc = error_set("%s is not a BPE tokenizer.json: it needs \"model\" with a \"vocab\" object "
                       "and a \"merges\" array.", name);
        goto done;
    }
    if (strcmp(json_type_name(model), "BPE") != 0 && json_object_get(model, "type")) {
        rc = error_set("%s holds a \"%s\" model; lorasc reads BPE tokenizer.json files only "
                       "(SentencePiece-style as Llama 1/2, or byte-level as GPT-2 / SmolLM2).", name,
                       json_type_name(model));
        goto done;
    }
    const int byte_level = strcmp(json_type_name(json_object_get(root, "decoder")), "ByteLevel") == 0 ||
                           json_has_bytelevel(json_object_get(root, "pre_tokenizer"));
    if (added && !json_is_array(added)) {
        rc = error_set("%s: \"added_tokens\" must be an array.", name);
        goto done;
    }
    /* vocabulary size: the largest id in vocab and added_tokens, plus one */
    long long max_id = -1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= TOK_MAX_VOCAB) {
            rc = error_set("%s: vocab entry \"%s\" must map to an id in 0..%d.", name, key,
                           TOK_MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        const json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_VOCAB ||
            !json_is_string(json_object_get(val, "content"))) {
            rc = error_set("%s: added_tokens[%zu] needs an integer \"id\" in 0..%d and a string "
                           "\"content\".", name, i, TOK_MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) {
        rc = error_set("%s has an empty vocabulary.", name);
        goto done;
    }
    if ((rc = tok_vocab_alloc(t, (int)max_id + 1, name)) != LSC_OK) goto done;
    const int byte_fallback = !byte_level && json_is_true(json_object_get(model, "byte_fallback"));
    json_object_foreach((json_t *)vocab, key, val) {
        const int id = (int)json_integer_value(val);
        if (t->pieces[id]) {
            rc = error_set("%s: token id %d appears twice in the vocab (\"%s\" and \"%s\").", name,
                           id, t->pieces[id], key);
            goto done;
        }
        if ((rc = tok_vocab_set(t, id, key, strlen(key), 0)) != LSC_OK) goto done;
        t->types[id] = (byte_fallback && tok_byte_piece_value(key, t->piece_len[id]) >= 0) ? TOKEN_BYTE
                                                                                     : TOKEN_NORMAL;
    }
    const json_t *unk = json_object_get(model, "unk_token");
    json_array_foreach(added, i, val) {
        const int id = (int)json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (t->pieces[id] && strcmp(t->pieces[id], content) != 0) {
            rc = error_set("%s: added token %d (\"%s\") disagrees with the vocab's \"%s\".", name,
                           id, content, t->pieces[id]);
            goto done;
        }
        if ((rc = tok_vocab_set(t, id, content, strlen(content), 0)) != LSC_OK) goto done;
        const int special = json_is_true(json_object_get(val, "special"));
        t->types[id] = special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        if (byte_level) continue;
        if (json_is_string(unk) && strcmp(content, json_string_value(unk)) == 0) t->types[id] = TOKEN_UNKNOWN;
        if (strcmp(content, "<s>") == 0) t->bos_id = id;
        if (strcmp(content, "</s>") == 0) t->eos_id = id;
    }
    if (byte_level) {
        rc = json_bpe(t, root, name);
        goto done;
    }
    if (json_is_string(unk)) {
        const int id = json_integer_value(json_object_get(vocab, json_string_value(unk)));
        if (json_object_get(vocab, json_string_value(unk))) {
            t->unk_id = id;
            t->types[id] = TOKEN_UNKNOWN;
        }
    }
    if ((rc = json_dummy_prefix(root, name, &t->add_dummy_prefix, &t->split_words)) != LSC_OK)
        goto done;
    if ((rc = tok_vocab_finish(t)) != LSC_OK) goto done;
    for (int id = 0; id < t->vocab_size; id++) t->scores[id] = -INFINITY;
    char buf[1024];
    json_array_foreach(merges, i, val) {
        const char *a, *b;
        size_t na, nb;
        if ((rc = json_merge(val, i, name, &a, &na, &b, &nb)) != LSC_OK) goto done;
        if (na + nb > sizeof buf) continue; /* longer than any piece we could hold */
        memcpy(buf, a, na);
        memcpy(buf + na, b, nb);
        const int id = tok_lookup(t, buf, na + nb);
        if (id >= 0 && t->scores[id] == -INFINITY) t->scores[id] = -(float)i;
    }
done:
    json_decref(root);
    if (rc != LSC_OK) tokenizer_free(t);
    return rc;
}

int tokenizer_load_hf_json(Tokenizer *t, const char *path) {
    char *data;
    size_t size = 0;
    tok_reset(t);
    if (tok_read_file(path, "tokenizer.json", &data, &size) != LSC_OK) return LSC_ERR;
    int rc = tokenizer_load_hf_json_mem(t, data, size, path);
    free(data);
    if (rc == LSC_OK && (rc = json_config(t, path)) != LSC_OK) tokenizer_free(t);
    return rc;
}


/* ------------------------------------------------------------------------------------------
 * byte-level BPE: what lorasc reproduces of HF's pipeline, refusing what it does not */

static int json_flag(const json_t *obj, const char *key, int dflt) {
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int unsupported(const char *name, const char *what, const char *type) {
    return error_set("%s has a %s of type \"%s\" that lorasc's byte-level BPE does not implement; "
                     "it reads a ByteLevel pre-tokenizer (optionally after Digits), no normalizer "
                     "and a ByteLevel decoder, as GPT-2, SmolLM2 and StarCoder use.", name, what,
                     type[0] ? type : "?");
}

static int json_bpe_options(const Tokenizer *t, const json_t *root, const char *name, BpeOptions *opt) {
    const json_t *model = json_object_get(root, "model");
    const json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root, "pre_tokenizer");
    const json_t *dec = json_object_get(root, "decoder");
    if (norm && !json_is_null(norm)) return unsupported(name, "normalizer", json_type_name(norm));
    if (dec && !json_is_null(dec) && strcmp(json_type_name(dec), "ByteLevel") != 0)
        return unsupported(name, "decoder", json_type_name(dec));
    const json_t *steps[2] = {pre, NULL};
    size_t n = 1;
    if (strcmp(json_type_name(pre), "Sequence") == 0) {
        const json_t *list = json_object_get(pre, "pretokenizers");
        n = json_array_size(list);
        if (n < 1 || n > 2) return unsupported(name, "pre-tokenizer sequence", "Sequence");
        steps[0] = json_array_get(list, 0);
        steps[1] = json_array_get(list, 1);
    }
    if (n == 2) {
        if (strcmp(json_type_name(steps[0]), "Digits") != 0)
            return unsupported(name, "pre-tokenizer", json_type_name(steps[0]));
        opt->split_digits = json_flag(steps[0], "individual_digits", 0) ? BPE_DIGITS_INDIVIDUAL
                                                                        : BPE_DIGITS_CONTIGUOUS;
    }
    const json_t *bl = steps[n - 1];
    if (strcmp(json_type_name(bl), "ByteLevel") != 0) return unsupported(name, "pre-tokenizer", json_type_name(bl));
    opt->add_prefix_space = json_flag(bl, "add_prefix_space", 1);
    opt->use_regex = json_flag(bl, "use_regex", 1);
    opt->ignore_merges = json_flag(model, "ignore_merges", 0);
    opt->fuse_unk = json_flag(model, "fuse_unk", 0);
    opt->unk_id = -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) { /* before the piece hash exists: a scan */
        for (int id = 0; id < t->vocab_size && opt->unk_id < 0; id++)
            if (t->pieces[id] && strcmp(t->pieces[id], json_string_value(unk)) == 0) opt->unk_id = id;
        if (opt->unk_id < 0)
            return error_set("%s: its unk_token \"%s\" is not in the vocabulary.", name, json_string_value(unk));
    }
    const json_t *dropout = json_object_get(model, "dropout");
    const char *affix[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        return error_set("%s uses BPE dropout; lorasc's byte-level BPE is deterministic (set "
                         "\"dropout\": null).", name);
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(model, affix[i]);
        if (json_is_string(v) && json_string_length(v) > 0)
            return error_set("%s has a %s (\"%s\"); lorasc's byte-level BPE reads models without "
                             "one.", name, affix[i], json_string_value(v));
    }
    return LSC_OK;
}

/* post_processor TemplateProcessing (possibly inside a Sequence) that starts with a special
 * token: that token is BOS, added at a sequence start. Tokens after $A are refused (lorasc adds
 * EOS on request only). */
static int json_template_bos(Tokenizer *t, const json_t *post, const char *name) {
    if (strcmp(json_type_name(post), "Sequence") == 0) {
        size_t i;
        const json_t *it;
        json_array_foreach(json_object_get(post, "processors"), i, it)
            if (json_template_bos(t, it, name) != LSC_OK) return LSC_ERR;
        return LSC_OK;
    }
    if (strcmp(json_type_name(post), "TemplateProcessing") != 0) return LSC_OK;
    const json_t *single = json_object_get(post, "single");
    size_t i;
    const json_t *it;
    int seen_a = 0;
    json_array_foreach(single, i, it) {
        const json_t *sp = json_object_get(json_object_get(it, "SpecialToken"), "id");
        if (!json_is_string(sp)) {
            seen_a = 1;
            continue;
        }
        const json_t *ids = json_object_get(json_object_get(json_object_get(post, "special_tokens"),
                                                            json_string_value(sp)), "ids");
        const json_t *id = json_array_get(ids, 0);
        if (seen_a || i > 0 || json_array_size(ids) != 1 || !json_is_integer(id) ||
            json_integer_value(id) < 0 || json_integer_value(id) >= t->vocab_size)
            return error_set("%s: its post-processor template adds \"%s\" in a way lorasc does not "
                             "(one special token before the text is the only form it reads).",
                             name, json_string_value(sp));
        t->bos_id = (int)json_integer_value(id);
        t->add_bos = 1;
    }
    return LSC_OK;
}

static int json_bpe(Tokenizer *t, const json_t *root, const char *name) {
    const json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    BpeOptions opt = {0};
    int rc = json_bpe_options(t, root, name, &opt);
    t->add_bos = 0;
    if (rc == LSC_OK) rc = bpe_init(t, &opt, json_array_size(merges));
    size_t i;
    const json_t *val;
    json_array_foreach(merges, i, val) {
        const char *a, *b;
        size_t na, nb;
        if (rc == LSC_OK) rc = json_merge(val, i, name, &a, &na, &b, &nb);
        if (rc == LSC_OK) rc = bpe_add_merge(t, a, na, b, nb, (int)i);
    }
    json_array_foreach(added, i, val) {
        const int special = json_is_true(json_object_get(val, "special"));
        if (rc == LSC_OK && json_flag(val, "single_word", 0))
            rc = error_set("%s: added token \"%s\" is single_word, which lorasc's byte-level BPE "
                           "does not implement.", name, json_string_value(json_object_get(val, "content")));
        if (rc != LSC_OK) break;
        const int flags = (json_flag(val, "normalized", !special) ? BPE_ADDED_NORMALIZED : 0) |
                          (json_flag(val, "lstrip", 0) ? BPE_ADDED_LSTRIP : 0) |
                          (json_flag(val, "rstrip", 0) ? BPE_ADDED_RSTRIP : 0);
        rc = bpe_add_token(t, (int)json_integer_value(json_object_get(val, "id")), flags);
    }
    if (rc == LSC_OK) rc = bpe_finish(t);
    if (rc == LSC_OK) rc = json_template_bos(t, json_object_get(root, "post_processor"), name);
    if (rc == LSC_OK && t->eos_id < 0) t->eos_id = tok_lookup(t, "<|endoftext|>", 13);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * tokenizer_config.json beside a file named tokenizer.json: chat_template, and for byte-level BPE the
 * bos / eos / pad tokens and add_bos_token (tokenizer.json itself does not say which is which). */

static int config_token(const Tokenizer *t, const json_t *cfg, const char *key, int *id) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return LSC_OK;
    const int found = tokenizer_find(t, json_string_value(v));
    if (found < 0)
        return error_set("%s: tokenizer_config.json names %s \"%s\", which is not in the vocabulary.",
                         t->source, key, json_string_value(v));
    *id = found;
    return LSC_OK;
}

static int json_config(Tokenizer *t, const char *path) {
    const char *slash = strrchr(path, '/');
    if (strcmp(slash ? slash + 1 : path, "tokenizer.json") != 0) return LSC_OK; /* not HF's layout */
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
    FILE *f = fopen(cfg_path, "rb");
    if (!f) return LSC_OK; /* optional */
    fclose(f);
    json_error_t jerr;
    json_t *cfg = json_load_file(cfg_path, 0, &jerr);
    if (!cfg)
        return error_set("%s is not valid JSON: %s at line %d, column %d.", cfg_path, jerr.text,
                         jerr.line, jerr.column);
    int rc = LSC_OK;
    const json_t *tpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tpl)) { /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        const json_t *it;
        const json_t *chosen = NULL;
        json_array_foreach(tpl, i, it) {
            const json_t *nm = json_object_get(it, "name");
            if (json_is_string(nm) && strcmp(json_string_value(nm), "default") == 0)
                chosen = json_object_get(it, "template");
        }
        tpl = chosen;
    }
    if (json_is_string(tpl) && !(t->chat_template = strdup(json_string_value(tpl))))
        rc = error_set("Out of memory reading %s.", cfg_path);
    if (rc == LSC_OK && t->kind == TOKENIZER_BYTE_BPE) {
        rc = config_token(t, cfg, "bos_token", &t->bos_id);
        if (rc == LSC_OK) rc = config_token(t, cfg, "eos_token", &t->eos_id);
        if (rc == LSC_OK) rc = config_token(t, cfg, "pad_token", &t->pad_id);
        if (rc == LSC_OK) t->add_bos = json_flag(cfg, "add_bos_token", t->add_bos) && t->bos_id >= 0;
    }
    json_decref(cfg);
    return rc;
}
