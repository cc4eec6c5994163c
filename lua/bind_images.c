/* lorasc.core.images: image classification tasks (core/tasks/image_task.h) as userdata: a
 * dataset's train file split into train/val, its t10k file as test, a class subset
 * relabelled 0..k-1, optionally capped in size; or an image folder's train/ and val/ (or
 * ImageNet's layout); evaluation of a ViT on a split, clean or under one corruption of
 * core/data/corrupt.h at one severity, or on a shift set (a ShiftSet userdata, images.shift
 * or images.shift_folder); `lorasc data fetch digits`. The task userdata is the core
 * ImageTask itself, created empty before the files are read. */
#include <limits.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/corrupt.h"
#include "core/data/digits.h"
#include "lua/bind.h"

/* A shift set: its images, and its class names when they come from class folders (labels
 * matched to a folder task's by name), else none (labels in the task's file's numbering). */
typedef struct ShiftSet {
    ImageSet set;
    ImageFolderClasses names;
} ShiftSet;

ImageTask *bind_check_images(lua_State *L, int idx) {
    ImageTask *d = luaL_checkudata(L, idx, BIND_IMAGES);
    if (d->n_classes == 0) luaL_argerror(L, idx, "image task is closed");
    return d;
}

/* The options table {val = 0.1, max_train = 0, max_val = 0, max_test = 0, seed = 1,
 * mean = {..}, std = {..}} at index opt (may be nil). */
static ImageTaskOptions task_options(lua_State *L, int opt) {
    if (!lua_isnoneornil(L, opt)) luaL_checktype(L, opt, LUA_TTABLE);
    ImageTaskOptions o = image_task_default_options();
    if (lua_istable(L, opt)) {
        o.val = bind_opt_num(L, opt, "val", o.val);
        o.max[IMAGE_TRAIN] = (long)bind_opt_int(L, opt, "max_train", 0);
        o.max[IMAGE_VAL] = (long)bind_opt_int(L, opt, "max_val", 0);
        o.max[IMAGE_TEST] = (long)bind_opt_int(L, opt, "max_test", 0);
        o.seed = (uint64_t)bind_opt_int(L, opt, "seed", 1);
        lua_getfield(L, opt, "mean");
        lua_getfield(L, opt, "std");
        if (!lua_isnil(L, -2) || !lua_isnil(L, -1)) { /* a checkpoint's normalisation */
            luaL_argcheck(L, lua_istable(L, -2) && lua_istable(L, -1), opt, "mean and std go together, as lists");
            o.n_norm = (int)luaL_len(L, -2);
            luaL_argcheck(L, o.n_norm >= 1 && o.n_norm <= 4 && luaL_len(L, -1) == o.n_norm, opt,
                          "mean and std must list 1 to 4 channels each");
            for (int c = 0; c < o.n_norm; c++) {
                lua_geti(L, -2, c + 1);
                lua_geti(L, -2, c + 1);
                o.mean[c] = (float)luaL_checknumber(L, -2);
                o.std[c] = (float)luaL_checknumber(L, -1);
                luaL_argcheck(L, o.std[c] > 0, opt, "std must be > 0");
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 2);
    }
    luaL_argcheck(L, o.val > 0 && o.val < 1, opt, "val must be in (0, 1)");
    return o;
}

/* images.load(dataset, classes, options): classes is a list of original labels (nil = all).
 * The val split is a seeded random fraction of the train file's images of those classes;
 * max_* cap each split (0 = no cap) by taking the first images of a seeded shuffle
 * (image_task_load); options as task_options'. */
static int l_load(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const int has_classes = !lua_isnoneornil(L, 2);
    if (has_classes) luaL_checktype(L, 2, LUA_TTABLE);
    const ImageTaskOptions o = task_options(L, 3);
    int n_classes = 0, *classes = NULL;
    if (has_classes) { /* a scratch userdata below the result, collected with it */
        const lua_Integer n = luaL_len(L, 2);
        n_classes = n > INT_MAX ? INT_MAX : (int)n;
        classes = lua_newuserdatauv(L, sizeof(int) * (size_t)(n_classes > 0 ? n_classes : 1), 0);
        for (int i = 0; i < n_classes; i++) {
            lua_geti(L, 2, i + 1);
            const lua_Integer c = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
            classes[i] = c < INT_MIN ? INT_MIN : c > INT_MAX ? INT_MAX : (int)c;
        }
    }
    ImageTask *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, BIND_IMAGES);
    if (image_task_load(d, name, classes, n_classes, &o) != LSC_OK) return bind_error(L);
    return 1;
}

static const char *const RESAMPLE[] = {"torch-bilinear", "pil-bilinear", "pil-bicubic", NULL};

/* The preprocessing at index idx (image_preprocess.h): size, or a table {size =, resample =
 * "torch-bilinear" | "pil-bilinear" | "pil-bicubic", shortest_edge =, height =, width =,
 * crop_floor = bool}: the crop is size; shortest_edge 0 with height/width an exact resize. */
static ImagePreprocess preprocess_arg(lua_State *L, int idx) {
    if (!lua_istable(L, idx)) return image_preprocess_default((int)luaL_checkinteger(L, idx));
    ImagePreprocess p = image_preprocess_default((int)bind_opt_int(L, idx, "size", 0));
    lua_getfield(L, idx, "resample");
    p.resample = (ImageResample)luaL_checkoption(L, -1, "torch-bilinear", RESAMPLE);
    lua_pop(L, 1);
    p.shortest_edge = (int)bind_opt_int(L, idx, "shortest_edge", p.crop);
    p.height = (int)bind_opt_int(L, idx, "height", 0);
    p.width = (int)bind_opt_int(L, idx, "width", 0);
    lua_getfield(L, idx, "crop_floor");
    p.crop_floor = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return p;
}

/* images.load_folder(root, channels, preprocess, options): an image folder task
 * (image_task_load_folder: root/train/<class>/ and root/val/ or root/test/), decoded with
 * channels (1 or 3) as preprocess says (preprocess_arg); options as task_options'. */
static int l_load_folder(lua_State *L) {
    const char *root = luaL_checkstring(L, 1);
    const int channels = (int)luaL_checkinteger(L, 2);
    const ImagePreprocess pp = preprocess_arg(L, 3);
    const ImageTaskOptions o = task_options(L, 4);
    ImageTask *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, BIND_IMAGES);
    if (image_task_load_folder(d, root, channels, &pp, &o) != LSC_OK) return bind_error(L);
    return 1;
}

/* d:info() -> {n_classes=, channels=, height=, width=, train=, val=, test=, mean = {..},
 * std = {..}} */
static int d_info(lua_State *L) {
    ImageTask *d = bind_check_images(L, 1);
    lua_createtable(L, 0, 7);
    bind_set_int(L, "n_classes", d->n_classes);
    bind_set_int(L, "channels", d->train.channels);
    bind_set_int(L, "height", d->train.height);
    bind_set_int(L, "width", d->train.width);
    bind_set_int(L, "train", d->n[IMAGE_TRAIN]);
    bind_set_int(L, "val", d->n[IMAGE_VAL]);
    bind_set_int(L, "test", d->n[IMAGE_TEST]);
    for (int k = 0; k < 2; k++) { /* the normalisation the batches get, per channel */
        lua_createtable(L, d->train.channels, 0);
        for (int c = 0; c < d->train.channels; c++)
            lua_pushnumber(L, k ? d->std[c] : d->mean[c]), lua_rawseti(L, -2, c + 1);
        lua_setfield(L, -2, k ? "std" : "mean");
    }
    return 1;
}

static const char *const SPLITS[] = {"train", "val", "test", NULL};

/* d:evaluate(vit, split, batch [, corruption, severity, seed]) -> accuracy, loss, { 1 or 0
 * per image: classified right }.
 * Every image of the split once; under a corruption, image i of the split gets the noise of
 * (seed, corruption, severity, i), so every model sees the same corrupted set. */
static int d_evaluate(lua_State *L) {
    ImageTask *d = bind_check_images(L, 1);
    LVit *v = bind_check_vit(L, 2);
    const int split = luaL_checkoption(L, 3, NULL, SPLITS);
    const int B = (int)luaL_checkinteger(L, 4);
    luaL_argcheck(L, B > 0, 4, "batch must be > 0");
    ImageCorruption corruption = {.kind = -1};
    if (!lua_isnoneornil(L, 5)) {
        const char *cname = luaL_checkstring(L, 5);
        corruption.kind = corrupt_parse(cname);
        if (corruption.kind < 0) return luaL_error(L, "unknown corruption '%s'", cname);
        corruption.severity = (int)luaL_checkinteger(L, 6);
    }
    corruption.seed = (uint64_t)luaL_optinteger(L, 7, 1);
    double accuracy, loss;
    const int n = d->n[split];
    double *per = lua_newuserdatauv(L, sizeof(double) * (size_t)(n > 0 ? n : 1), 0); /* GC'd */
    if (image_task_evaluate_images(d, &v->m, split, B, corruption.kind >= 0 ? &corruption : NULL,
                                   &accuracy, &loss, per) != LSC_OK)
        return bind_error(L);
    lua_pushnumber(L, accuracy);
    lua_pushnumber(L, loss);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) lua_pushnumber(L, per[i]), lua_rawseti(L, -2, i + 1);
    return 3;
}

/* images.shift(name) -> a shift set: one file's images alone (imagedata_load(name, "test"),
 * e.g. "digits", the UCI digits in MNIST's geometry), to evaluate a task's model on. */
static int l_shift(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    ShiftSet *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, BIND_IMAGESET);
    if (imagedata_load(&s->set, name, "test") != LSC_OK) return bind_error(L);
    return 1;
}

/* images.shift_folder(root, channels, preprocess) -> a shift set from class folders
 * (ImageNet-V2, -Sketch, -R, -A as they ship), its classes matched to a folder task's by name. */
static int l_shift_folder(lua_State *L) {
    const char *root = luaL_checkstring(L, 1);
    const int channels = (int)luaL_checkinteger(L, 2);
    const ImagePreprocess pp = preprocess_arg(L, 3);
    ShiftSet *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, BIND_IMAGESET);
    if (imagefolder_load(&s->set, &s->names, root, channels, &pp) != LSC_OK) return bind_error(L);
    return 1;
}

static ImageSet *check_set(lua_State *L, int idx) {
    ShiftSet *s = luaL_checkudata(L, idx, BIND_IMAGESET);
    if (!s->set.labels) luaL_argerror(L, idx, "image set is closed");
    return &s->set;
}

/* set:info() -> { n =, n_classes =, height =, width =, channels = } */
static int s_info(lua_State *L) {
    ImageSet *s = check_set(L, 1);
    lua_createtable(L, 0, 5);
    bind_set_int(L, "n", s->n);
    bind_set_int(L, "n_classes", s->n_classes);
    bind_set_int(L, "channels", s->channels);
    bind_set_int(L, "height", s->height);
    bind_set_int(L, "width", s->width);
    return 1;
}

static int s_close(lua_State *L) {
    ShiftSet *s = luaL_checkudata(L, 1, BIND_IMAGESET);
    imagedata_free(&s->set);
    imagefolder_classes_free(&s->names);
    return 0;
}

/* d:evaluate_shift(vit, set, batch) -> accuracy, loss, n: the images of the shift set whose
 * class is one of the task's, labelled and normalised as the task's (image_task_evaluate_shift). */
static int d_evaluate_shift(lua_State *L) {
    ImageTask *d = bind_check_images(L, 1);
    LVit *v = bind_check_vit(L, 2);
    check_set(L, 3);
    const ShiftSet *s = lua_touserdata(L, 3);
    const int B = (int)luaL_checkinteger(L, 4);
    luaL_argcheck(L, B > 0, 4, "batch must be > 0");
    double accuracy, loss;
    int n;
    if (image_task_evaluate_shift(d, &v->m, &s->set, s->names.n ? &s->names : NULL, B, &accuracy,
                                  &loss, &n) != LSC_OK)
        return bind_error(L);
    lua_pushnumber(L, accuracy);
    lua_pushnumber(L, loss);
    lua_pushinteger(L, n);
    return 3;
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

/* images.fetch_digits([from_dir]) -> the file copied from: `lorasc data fetch digits`
 * (core/data/digits.h) into the data directory. */
static int l_fetch_digits(lua_State *L) {
    const char *from = luaL_optstring(L, 1, NULL);
    char src[4200];
    if (digits_fetch(from, NULL, src, sizeof src) != LSC_OK) return bind_error(L);
    lua_pushstring(L, src);
    return 1;
}

static int d_close(lua_State *L) {
    image_task_free(luaL_checkudata(L, 1, BIND_IMAGES));
    return 0;
}

static int d_tostring(lua_State *L) {
    ImageTask *d = luaL_checkudata(L, 1, BIND_IMAGES);
    if (d->n_classes == 0)
        lua_pushstring(L, "images (closed)");
    else
        lua_pushfstring(L, "images %s (%d classes, %dx%dx%d: train %d, val %d, test %d)", d->name,
                        d->n_classes, d->train.channels, d->train.height, d->train.width,
                        d->n[IMAGE_TRAIN], d->n[IMAGE_VAL], d->n[IMAGE_TEST]);
    return 1;
}

int luaopen_lorasc_core_images(lua_State *L) {
    static const luaL_Reg methods[] = {{"info", d_info}, {"evaluate", d_evaluate},
                                       {"evaluate_shift", d_evaluate_shift}, {"close", d_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", d_close}, {"__close", d_close},
                                    {"__tostring", d_tostring}, {NULL, NULL}};
    bind_new_class(L, BIND_IMAGES, methods, meta);
    static const luaL_Reg set_methods[] = {{"info", s_info}, {"close", s_close}, {NULL, NULL}};
    static const luaL_Reg set_meta[] = {{"__gc", s_close}, {"__close", s_close}, {NULL, NULL}};
    bind_new_class(L, BIND_IMAGESET, set_methods, set_meta);
    static const luaL_Reg fns[] = {{"load", l_load}, {"load_folder", l_load_folder}, {"shift", l_shift},
                                   {"shift_folder", l_shift_folder}, {"corruptions", l_corruptions},
                                   {"fetch_digits", l_fetch_digits}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
