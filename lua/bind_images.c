/* lorasc.core.images: image classification tasks (core/data/imagedata.h) as userdata: a
 * dataset's train file split into train/val, its t10k file as test, a class subset
 * relabelled 0..k-1, optionally capped in size; batches for the ViT bindings; evaluation of
 * a ViT on a split, clean or under one corruption of core/data/corrupt.h at one severity. */
#include <stdlib.h>
#include <string.h>

#include "core/data/corrupt.h"
#include "core/base/error.h"
#include "core/base/philox.h"
#include "lua/bind.h"

LImages *bind_check_images(lua_State *L, int idx) {
    LImages *d = luaL_checkudata(L, idx, BIND_IMAGES);
    if (!d->live) luaL_argerror(L, idx, "image task is closed");
    return d;
}

static void free_images(LImages *d) {
    imagedata_free(&d->train);
    imagedata_free(&d->test);
    for (int s = 0; s < IMG_NUM_SPLITS; s++) free(d->idx[s]);
    memset(d, 0, sizeof *d);
}

void bind_images_batch(const LImages *d, int split, const int *positions, int B, Real *out,
                       int32_t *labels, const ImageAugment *aug, uint64_t seed, uint64_t step) {
    int *ix = malloc(sizeof(int) * (size_t)B);
    LSC_ASSERT(ix != NULL);
    for (int b = 0; b < B; b++) ix[b] = d->idx[split][positions[b]];
    const ImageSet *set = split == IMG_TEST ? &d->test : &d->train;
    imagedata_batch(set, out, labels, ix, B, d->mean, d->std, aug, seed, step);
    if (labels)
        for (int b = 0; b < B; b++) labels[b] = d->relabel[labels[b] & 0xFF];
    free(ix);
}

/* images.load(dataset, classes, {val = 0.1, max_train = 0, max_val = 0, max_test = 0,
 * seed = 1}): classes is a list of original labels (nil = all). The val split is a seeded
 * random fraction of the train file's images of those classes; max_* cap each split (0 = no
 * cap) by taking the first images of a seeded shuffle. */
static int l_load(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const int has_classes = !lua_isnoneornil(L, 2);
    if (has_classes) luaL_checktype(L, 2, LUA_TTABLE);
    const int opt = 3;
    if (!lua_isnoneornil(L, opt)) luaL_checktype(L, opt, LUA_TTABLE);
    const double val = lua_istable(L, opt) ? bind_opt_num(L, opt, "val", 0.1) : 0.1;
    const lua_Integer caps[3] = {lua_istable(L, opt) ? bind_opt_int(L, opt, "max_train", 0) : 0,
                                 lua_istable(L, opt) ? bind_opt_int(L, opt, "max_val", 0) : 0,
                                 lua_istable(L, opt) ? bind_opt_int(L, opt, "max_test", 0) : 0};
    const uint64_t seed = (uint64_t)(lua_istable(L, opt) ? bind_opt_int(L, opt, "seed", 1) : 1);
    luaL_argcheck(L, val > 0 && val < 1, opt, "val must be in (0, 1)");
    LImages *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, BIND_IMAGES);
    if (imagedata_load(&d->train, name, "train") != LSC_OK) return bind_error(L);
    if (imagedata_load(&d->test, name, "test") != LSC_OK) return bind_error(L);
    d->live = 1; /* from here __gc frees the sets */
    if (d->train.channels > 4) return luaL_error(L, "%s has %d channels; at most 4 are supported", name, d->train.channels);
    if (d->test.height != d->train.height || d->test.width != d->train.width)
        return luaL_error(L, "%s: its test images are %dx%d but its train images %dx%d", name,
                          d->test.height, d->test.width, d->train.height, d->train.width);
    for (int i = 0; i < 256; i++) d->relabel[i] = -1;
    if (has_classes) {
        const lua_Integer n = luaL_len(L, 2);
        if (n < 2) return luaL_error(L, "an image task needs at least 2 classes, got %d", (int)n);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 2, i);
            const lua_Integer c = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
            if (c < 0 || c >= d->train.n_classes)
                return luaL_error(L, "class %d is not in %s (classes 0..%d)", (int)c, name,
                                  d->train.n_classes - 1);
            if (d->relabel[c] >= 0) return luaL_error(L, "class %d is listed twice", (int)c);
            d->relabel[c] = d->n_classes++;
        }
    } else {
        for (int c = 0; c < d->train.n_classes && c < 256; c++) d->relabel[c] = d->n_classes++;
    }
    imagedata_stats(&d->train, d->mean, d->std);
    /* train/val: a seeded shuffle of the train file's images of the task's classes */
    int *perm = malloc(sizeof(int) * (size_t)d->train.n);
    int *tperm = malloc(sizeof(int) * (size_t)d->test.n);
    for (int s = 0; s < IMG_NUM_SPLITS; s++)
        d->idx[s] = malloc(sizeof(int) * (size_t)(s == IMG_TEST ? d->test.n : d->train.n));
    if (!perm || !tperm || !d->idx[0] || !d->idx[1] || !d->idx[2]) {
        free(perm);
        free(tperm);
        return luaL_error(L, "out of memory loading %s", name);
    }
    imagedata_shuffle(perm, d->train.n, seed, 0xA11);
    imagedata_shuffle(tperm, d->test.n, seed, 0xA12);
    int total = 0;
    for (int i = 0; i < d->train.n; i++) total += d->relabel[d->train.labels[perm[i]] & 0xFF] >= 0;
    const int n_val = (int)(val * total + 0.5);
    int k = 0;
    for (int i = 0; i < d->train.n; i++) {
        const int j = perm[i];
        if (d->relabel[d->train.labels[j] & 0xFF] < 0) continue;
        const int s = k++ < n_val ? IMG_VAL : IMG_TRAIN;
        if (caps[s] <= 0 || d->n[s] < caps[s]) d->idx[s][d->n[s]++] = j;
    }
    for (int i = 0; i < d->test.n; i++) {
        const int j = tperm[i];
        if (d->relabel[d->test.labels[j] & 0xFF] < 0) continue;
        if (caps[2] <= 0 || d->n[2] < caps[2]) d->idx[IMG_TEST][d->n[IMG_TEST]++] = j;
    }
    free(perm);
    free(tperm);
    for (int s = 0; s < IMG_NUM_SPLITS; s++)
        if (d->n[s] == 0) return luaL_error(L, "%s: the task's %s split is empty", name, s == 0 ? "train" : s == 1 ? "val" : "test");
    snprintf(d->name, sizeof d->name, "%s", name);
    return 1;
}

/* d:info() -> {n_classes=, channels=, height=, width=, train=, val=, test=} */
static int d_info(lua_State *L) {
    LImages *d = bind_check_images(L, 1);
    lua_createtable(L, 0, 7);
#define SETI(k, v) (lua_pushinteger(L, (v)), lua_setfield(L, -2, k))
    SETI("n_classes", d->n_classes);
    SETI("channels", d->train.channels);
    SETI("height", d->train.height);
    SETI("width", d->train.width);
    SETI("train", d->n[IMG_TRAIN]);
    SETI("val", d->n[IMG_VAL]);
    SETI("test", d->n[IMG_TEST]);
#undef SETI
    return 1;
}

static const char *const SPLITS[] = {"train", "val", "test", NULL};

/* d:evaluate(vit, split, batch [, corruption, severity, seed]) -> accuracy, loss.
 * Every image of the split once; under a corruption, image i of the split gets the noise of
 * (seed, corruption, severity, i), so every model sees the same corrupted set. */
static int d_evaluate(lua_State *L) {
    LImages *d = bind_check_images(L, 1);
    LVit *v = bind_check_vit(L, 2);
    const int split = luaL_checkoption(L, 3, NULL, SPLITS);
    const int B = (int)luaL_checkinteger(L, 4);
    luaL_argcheck(L, B > 0, 4, "batch must be > 0");
    int kind = -1, severity = 0;
    if (!lua_isnoneornil(L, 5)) {
        const char *cname = luaL_checkstring(L, 5);
        kind = corrupt_parse(cname);
        if (kind < 0) return luaL_error(L, "unknown corruption '%s'", cname);
        severity = (int)luaL_checkinteger(L, 6);
    }
    const uint64_t seed = (uint64_t)luaL_optinteger(L, 7, 1);
    const ViTConfig *c = &v->m.config;
    const int C = d->train.channels, H = d->train.height, W = d->train.width;
    if (c->channels != C || c->image_size != H || H != W || c->n_classes != d->n_classes)
        return luaL_error(L, "the ViT (%d x %d x %d images, %d classes) does not fit task %s "
                          "(%d x %d x %d, %d classes)", c->channels, c->image_size, c->image_size,
                          c->n_classes, d->name, C, H, W, d->n_classes);
    const size_t img = (size_t)C * H * W;
    Real *x = malloc(sizeof(Real) * img * (size_t)B);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)B), *pred = malloc(sizeof(int32_t) * (size_t)B);
    int *pos = malloc(sizeof(int) * (size_t)B);
    if (!x || !labels || !pred || !pos) {
        free(x), free(labels), free(pred), free(pos);
        return luaL_error(L, "out of memory");
    }
    long correct = 0;
    double loss = 0;
    int rc = LSC_OK;
    const int n = d->n[split];
    for (int start = 0; start < n && rc == LSC_OK; start += B) {
        const int b = n - start < B ? n - start : B;
        for (int i = 0; i < b; i++) pos[i] = start + i;
        bind_images_batch(d, split, pos, b, x, labels, NULL, 0, 0);
        for (int i = 0; i < b && kind >= 0 && rc == LSC_OK; i++)
            rc = corrupt_image_normalised(x + i * img, C, H, W, d->mean, d->std, kind, severity,
                                          seed, (uint64_t)(start + i));
        if (rc == LSC_OK) rc = vit_forward(&v->m, x, labels, b);
        if (rc == LSC_OK) {
            correct += vit_predict(&v->m, pred, labels);
            loss += v->m.mean_loss * b;
        }
    }
    free(x), free(labels), free(pred), free(pos);
    if (rc != LSC_OK) return bind_error(L);
    lua_pushnumber(L, (double)correct / n);
    lua_pushnumber(L, loss / n);
    return 2;
}

/* images.corruptions() -> { "gaussian_noise", ... } in the suite's order */
static int l_corruptions(lua_State *L) {
    lua_createtable(L, CORRUPT_NUM, 0);
    for (int k = 0; k < CORRUPT_NUM; k++) {
        lua_pushstring(L, corrupt_name(k));
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int d_close(lua_State *L) {
    LImages *d = luaL_checkudata(L, 1, BIND_IMAGES);
    free_images(d);
    return 0;
}

static int d_tostring(lua_State *L) {
    LImages *d = luaL_checkudata(L, 1, BIND_IMAGES);
    if (!d->live)
        lua_pushstring(L, "images (closed)");
    else
        lua_pushfstring(L, "images %s (%d classes, %dx%dx%d: train %d, val %d, test %d)", d->name,
                        d->n_classes, d->train.channels, d->train.height, d->train.width,
                        d->n[0], d->n[1], d->n[2]);
    return 1;
}

int luaopen_lorasc_core_images(lua_State *L) {
    static const luaL_Reg methods[] = {{"info", d_info}, {"evaluate", d_evaluate},
                                       {"close", d_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", d_close}, {"__close", d_close},
                                    {"__tostring", d_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_IMAGES, methods, meta);
    static const luaL_Reg fns[] = {{"load", l_load}, {"corruptions", l_corruptions}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
