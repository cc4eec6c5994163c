/* lorasc.core.tasks: the paper's language tasks (core/data/datasets.h, core/tasks/task.h) for the
 * harness: a sampled dataset and a tokenizer as userdata, evaluation with the task's own
 * metric beside the majority baseline, and `lorasc data fetch` (core/data/datafetch.h). The
 * fine-tuning step takes a task dataset through bind_task_batch (bind_finetune.c). */
#include <stdlib.h>
#include <string.h>

#include "core/data/datafetch.h"
#include "core/base/error.h"
#include "core/tasks/task.h"
#include "lua/bind.h"

typedef struct LTask {
    Dataset d;
    int live;
} LTask;

typedef struct LTokenizer {
    Tokenizer t;
    int live;
} LTokenizer;

static LTask *check_task(lua_State *L, int idx) {
    LTask *d = luaL_checkudata(L, idx, BIND_TASK);
    if (!d->live) luaL_argerror(L, idx, "task dataset is closed");
    return d;
}

static LTokenizer *check_tokenizer(lua_State *L, int idx) {
    LTokenizer *t = luaL_checkudata(L, idx, BIND_TOKENIZER);
    if (!t->live) luaL_argerror(L, idx, "tokenizer is closed");
    return t;
}

int bind_task_batch(lua_State *L, int idx, int tok_idx, TaskSampler *sampler, TaskSampling mode,
                    uint64_t seed, long step, int B, int T, int32_t *tokens, int32_t *targets,
                    int *B_used, int *T_used) {
    LTask *d = luaL_testudata(L, idx, BIND_TASK);
    if (!d) return 0;
    if (!d->live) luaL_argerror(L, idx, "task dataset is closed");
    LTokenizer *t = check_tokenizer(L, tok_idx);
    const size_t n = d->d.n[DS_TRAIN];
    if (!sampler->n || sampler->n != n || sampler->batch != B || sampler->mode != mode ||
        sampler->seed != seed) {
        task_sampler_free(sampler);
        if (task_sampler_init(sampler, mode, n, B, seed) != LSC_OK) bind_error(L);
    }
    size_t idx_buf[256], *rows = B <= 256 ? idx_buf : malloc((size_t)B * sizeof *rows);
    if (!rows) return luaL_error(L, "out of memory");
    const int count = task_sampler_indices(sampler, step, rows);
    const int rc = task_train_batch(&t->t, &d->d, rows, count, T, tokens, targets);
    if (rows != idx_buf) free(rows);
    if (rc != LSC_OK) bind_error(L);
    *B_used = count;
    *T_used = task_batch_trim(tokens, targets, count, T);
    return 1;
}

static int parse_name(lua_State *L, int idx) {
    const int id = datasets_parse(luaL_checkstring(L, idx));
    if (id < 0) bind_error(L);
    return id;
}

/* tasks.parse(name) -> kind ("classify"|"choice"|"generate") | nil, message */
static int l_parse(lua_State *L) {
    const int id = datasets_parse(luaL_checkstring(L, 1));
    if (id < 0) {
        lua_pushnil(L);
        lua_pushstring(L, error_last());
        return 2;
    }
    static const char *const kinds[] = {"classify", "choice", "generate"};
    lua_pushstring(L, kinds[datasets_kind((TaskId)id)]);
    return 1;
}

static int l_names(lua_State *L) {
    lua_pushstring(L, datasets_names());
    return 1;
}

/* tasks.check(name [, dir]) -> true, subset, note | nil, message: the files load. */
static int l_check(lua_State *L) {
    const int id = parse_name(L, 1);
    Dataset d;
    if (datasets_load_raw(&d, (TaskId)id, luaL_optstring(L, 2, NULL)) != LSC_OK) {
        datasets_free(&d);
        lua_pushnil(L);
        lua_pushstring(L, error_last());
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_pushboolean(L, d.subset);
    lua_pushstring(L, d.note);
    datasets_free(&d);
    return 3;
}

/* tasks.load(name, {train=, val=, test=}, seed [, dir]) -> task dataset (MeZO sampling) */
static int l_load(lua_State *L) {
    const int id = parse_name(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const DatasetSizes sizes = {(size_t)bind_opt_int(L, 2, "train", 1000),
                                (size_t)bind_opt_int(L, 2, "val", 500),
                                (size_t)bind_opt_int(L, 2, "test", 1000)};
    const uint64_t seed = (uint64_t)luaL_optinteger(L, 3, 1);
    const char *dir = luaL_optstring(L, 4, NULL);
    LTask *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, BIND_TASK);
    if (datasets_load(&d->d, (TaskId)id, dir, &sizes, seed) != LSC_OK) {
        datasets_free(&d->d);
        return bind_error(L);
    }
    d->live = 1;
    return 1;
}

static int d_sizes(lua_State *L) {
    LTask *d = check_task(L, 1);
    for (int s = 0; s < DS_NUM_SPLITS; s++) lua_pushinteger(L, (lua_Integer)d->d.n[s]);
    return 3;
}

/* d:info() -> {name=, kind=, subset=, note=} */
static int d_info(lua_State *L) {
    LTask *d = check_task(L, 1);
    static const char *const kinds[] = {"classify", "choice", "generate"};
    lua_createtable(L, 0, 4);
    lua_pushstring(L, datasets_name(d->d.task)), lua_setfield(L, -2, "name");
    lua_pushstring(L, kinds[datasets_kind(d->d.task)]), lua_setfield(L, -2, "kind");
    lua_pushboolean(L, d->d.subset), lua_setfield(L, -2, "subset");
    lua_pushstring(L, d->d.note), lua_setfield(L, -2, "note");
    return 1;
}

static const char *const SPLITS[] = {"train", "val", "test", NULL};

/* d:evaluate(model, tokenizer, split [, max_examples [, max_new]]) -> {score, f1, em, majority, n,
 * examples = { the score's outcome per example (per question for MultiRC) }} */
static int d_evaluate(lua_State *L) {
    LTask *d = check_task(L, 1);
    LModel *m = bind_check_model(L, 2);
    LTokenizer *t = check_tokenizer(L, 3);
    const int split = luaL_checkoption(L, 4, NULL, SPLITS);
    const lua_Integer max_ex = luaL_optinteger(L, 5, 0), max_new = luaL_optinteger(L, 6, 32);
    luaL_argcheck(L, max_ex >= 0, 5, "max_examples must be >= 0");
    luaL_argcheck(L, max_new > 0, 6, "max_new must be > 0");
    TaskScores s;
    size_t cap = d->d.n[split], n_ex = 0;
    if (max_ex > 0 && (size_t)max_ex < cap) cap = (size_t)max_ex;
    double *per = lua_newuserdatauv(L, sizeof(double) * (cap > 0 ? cap : 1), 0); /* GC'd */
    if (task_evaluate_examples(&m->m, &t->t, &d->d, (DataSplit)split, (size_t)max_ex,
                               (int)max_new, &s, per, &n_ex) != LSC_OK)
        return bind_error(L);
    lua_createtable(L, 0, 6);
    lua_createtable(L, (int)n_ex, 0);
    for (size_t i = 0; i < n_ex; i++) lua_pushnumber(L, per[i]), lua_rawseti(L, -2, (lua_Integer)i + 1);
    lua_setfield(L, -2, "examples");
    lua_pushnumber(L, s.score), lua_setfield(L, -2, "score");
    lua_pushnumber(L, s.f1), lua_setfield(L, -2, "f1");
    lua_pushnumber(L, s.em), lua_setfield(L, -2, "em");
    lua_pushnumber(L, s.majority), lua_setfield(L, -2, "majority");
    lua_pushinteger(L, (lua_Integer)s.n), lua_setfield(L, -2, "n");
    return 1;
}

static int d_close(lua_State *L) {
    LTask *d = luaL_checkudata(L, 1, BIND_TASK);
    if (d->live) datasets_free(&d->d);
    d->live = 0;
    return 0;
}

static int d_tostring(lua_State *L) {
    LTask *d = luaL_checkudata(L, 1, BIND_TASK);
    if (!d->live)
        lua_pushstring(L, "task (closed)");
    else
        lua_pushfstring(L, "task %s (train %d, val %d, test %d%s)", datasets_name(d->d.task), (int)d->d.n[0],
                        (int)d->d.n[1], (int)d->d.n[2], d->d.subset ? ", subset" : "");
    return 1;
}

/* tasks.tokenizer(path) -> tokenizer (llama2.c .bin, HF tokenizer.json or GGUF; SentencePiece or
 * byte-level BPE) with vocab_size(), encode(), decode(), chat() */
static int l_tokenizer(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    LTokenizer *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, BIND_TOKENIZER);
    if (tokenizer_load(&t->t, path) != LSC_OK) return bind_error(L);
    t->live = 1;
    return 1;
}

static int t_vocab_size(lua_State *L) {
    lua_pushinteger(L, check_tokenizer(L, 1)->t.vocab_size);
    return 1;
}

/* t:special_ids() -> {bos =, eos =, pad =, unk =}: the ids the vocabulary has (absent: nil). */
static int t_special_ids(lua_State *L) {
    const Tokenizer *t = &check_tokenizer(L, 1)->t;
    const int ids[4] = {t->bos_id, t->eos_id, t->pad_id, t->unk_id};
    static const char *const names[4] = {"bos", "eos", "pad", "unk"};
    lua_createtable(L, 0, 4);
    for (int i = 0; i < 4; i++)
        if (ids[i] >= 0) lua_pushinteger(L, ids[i]), lua_setfield(L, -2, names[i]);
    return 1;
}

/* t:encode(text [, bos [, eos]]) -> {ids} (bos: the model's BOS when its tokenizer adds one) */
static int t_encode(lua_State *L) {
    LTokenizer *t = check_tokenizer(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    const int flags = (lua_toboolean(L, 3) ? TOKENIZER_BOS : 0) | (lua_toboolean(L, 4) ? TOKENIZER_EOS : 0);
    const size_t cap = tokenizer_max_tokens(len);
    int32_t *ids = lua_newuserdatauv(L, cap * sizeof *ids, 0); /* freed by the GC */
    size_t n;
    if (tokenizer_encode(&t->t, text, len, flags, ids, cap, &n) != LSC_OK) return bind_error(L);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) lua_pushinteger(L, ids[i]), lua_rawseti(L, -2, (lua_Integer)i + 1);
    return 1;
}

/* t:decode({ids}) -> text */
static int t_decode(lua_State *L) {
    LTokenizer *t = check_tokenizer(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const lua_Integer n = luaL_len(L, 2);
    int32_t *ids = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *ids, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        ids[i - 1] = (int32_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    char *text;
    size_t len;
    if (tokenizer_decode(&t->t, ids, (size_t)n, &text, &len) != LSC_OK) return bind_error(L);
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

/* t:chat({{role=, content=}, ...} [, add_generation_prompt]) -> text (the model's chat template) */
static int t_chat(lua_State *L) {
    LTokenizer *t = check_tokenizer(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const lua_Integer n = luaL_len(L, 2);
    ChatMessage *m = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *m, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        luaL_argcheck(L, lua_istable(L, -1), 2, "messages are tables {role = ..., content = ...}");
        lua_getfield(L, -1, "role");
        lua_getfield(L, -2, "content");
        m[i - 1] = (ChatMessage){lua_tostring(L, -2), lua_tostring(L, -1)};
        lua_pop(L, 3); /* the strings stay alive in the messages table */
    }
    char *text;
    if (tokenizer_chat_render(&t->t, m, (size_t)n, lua_toboolean(L, 3), &text) != LSC_OK) return bind_error(L);
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static int t_close(lua_State *L) {
    LTokenizer *t = luaL_checkudata(L, 1, BIND_TOKENIZER);
    if (t->live) tokenizer_free(&t->t);
    t->live = 0;
    return 0;
}

static int t_tostring(lua_State *L) {
    LTokenizer *t = luaL_checkudata(L, 1, BIND_TOKENIZER);
    if (!t->live)
        lua_pushstring(L, "tokenizer (closed)");
    else
        lua_pushfstring(L, "tokenizer (%s, %d pieces)", t->t.kind == TOKENIZER_BYTE_BPE ? "byte-level BPE"
                        : "SentencePiece", t->t.vocab_size);
    return 1;
}

/* The names of a Lua list at idx (strings), malloc'd array of borrowed pointers. */
static const char **name_list(lua_State *L, int idx, size_t *n) {
    *n = 0;
    if (lua_isnoneornil(L, idx)) return NULL;
    luaL_checktype(L, idx, LUA_TTABLE);
    const lua_Integer len = luaL_len(L, idx);
    if (len <= 0) return NULL;
    const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)len, 0); /* freed by the GC */
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, idx, i);
        names[i - 1] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the strings stay alive in the table */
    }
    *n = (size_t)len;
    return names;
}

/* tasks.fetch(names, from_dir [, dest_dir]) -> number of unverified folders */
static int l_fetch(lua_State *L) {
    const char *src = luaL_checkstring(L, 2), *dest = luaL_optstring(L, 3, NULL);
    size_t n;
    const char **names = name_list(L, 1, &n); /* pushes a userdata: read the arguments first */
    size_t unverified = 0;
    if (datafetch_from_dir(names, n, src, dest, &unverified) != LSC_OK)
        return bind_error(L);
    lua_pushinteger(L, (lua_Integer)unverified);
    return 1;
}

/* tasks.fetch_online(names): always an error (no network client in this build). */
static int l_fetch_online(lua_State *L) {
    size_t n;
    const char **names = name_list(L, 1, &n);
    if (datafetch_online(names, n) != LSC_OK) return bind_error(L);
    return 0;
}

int luaopen_lorasc_core_tasks(lua_State *L) {
    static const luaL_Reg dmethods[] = {{"sizes", d_sizes}, {"info", d_info}, {"evaluate", d_evaluate},
                                        {"close", d_close}, {NULL, NULL}};
    static const luaL_Reg dmeta[] = {{"__gc", d_close}, {"__close", d_close}, {"__tostring", d_tostring},
                                     {NULL, NULL}};
    bind_new_class(L, BIND_TASK, dmethods, dmeta);
    static const luaL_Reg tmethods[] = {{"vocab_size", t_vocab_size},
                                        {"encode", t_encode},
                                        {"decode", t_decode},
                                        {"chat", t_chat},
                                        {"special_ids", t_special_ids},
                                        {"close", t_close},
                                        {NULL, NULL}};
    static const luaL_Reg tmeta[] = {{"__gc", t_close}, {"__close", t_close}, {"__tostring", t_tostring},
                                     {NULL, NULL}};
    bind_new_class(L, BIND_TOKENIZER, tmethods, tmeta);
    static const luaL_Reg fns[] = {{"parse", l_parse}, {"names", l_names}, {"check", l_check},
                                   {"load", l_load}, {"tokenizer", l_tokenizer}, {"fetch", l_fetch},
                                   {"fetch_online", l_fetch_online}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
