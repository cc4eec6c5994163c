/* Image folders: PNG and JPEG decoding, grey conversion, shorter-side resize and centre crop.
 * See imagefolder.h. */
#include "core/data/imagefolder.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "core/base/error.h"
#include "core/data/image_preprocess.h"

enum { IMAGEFOLDER_MAX_SIDE = 1 << 15 }; /* decoded images larger than this are refused */

/* ---- decoding to interleaved RGB [h, w, 3] ---- */

static int decode_png(const char *path, uint8_t **rgb, int *h, int *w) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return error_set("%s does not decode as PNG (%s).", path, img.message);
    if (img.width == 0 || img.height == 0 || img.width > IMAGEFOLDER_MAX_SIDE ||
        img.height > IMAGEFOLDER_MAX_SIDE) {
        png_image_free(&img);
        return error_set("%s is %ux%u pixels, outside 1..%d a side.", path, img.width,
                         img.height, IMAGEFOLDER_MAX_SIDE);
    }
    img.format = PNG_FORMAT_RGB; /* grey expanded, palettes resolved, alpha composited on black */
    *rgb = malloc(PNG_IMAGE_SIZE(img));
    if (!*rgb) {
        png_image_free(&img);
        return error_set("Out of memory decoding %s.", path);
    }
    if (!png_image_finish_read(&img, NULL, *rgb, 0, NULL)) {
        free(*rgb);
        *rgb = NULL;
        return error_set("%s does not decode as PNG (%s).", path, img.message);
    }
    *h = (int)img.height, *w = (int)img.width;
    return LSC_OK;
}

typedef struct JpegError {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} JpegError;

static void jpeg_fail(j_common_ptr cinfo) {
    JpegError *e = (JpegError *)cinfo->err;
    cinfo->err->format_message(cinfo, e->message);
    longjmp(e->jump, 1);
}

static int decode_jpeg(const char *path, uint8_t **rgb, int *h, int *w) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open %s.", path);
    struct jpeg_decompress_struct cinfo;
    JpegError err;
    uint8_t *volatile out = NULL;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(out);
        return error_set("%s does not decode as JPEG (%s).", path, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB; /* grey and YCbCr converted by libjpeg */
    jpeg_start_decompress(&cinfo);
    const int ow = (int)cinfo.output_width, oh = (int)cinfo.output_height;
    if (ow <= 0 || oh <= 0 || ow > IMAGEFOLDER_MAX_SIDE || oh > IMAGEFOLDER_MAX_SIDE ||
        cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return error_set("%s is %dx%d pixels with %d components: not an RGB or grey image of "
                         "1..%d a side.", path, ow, oh, cinfo.output_components,
                         IMAGEFOLDER_MAX_SIDE);
    }
    out = malloc((size_t)ow * oh * 3);
    if (!out) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return error_set("Out of memory decoding %s.", path);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * ow * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    *rgb = out, *h = oh, *w = ow;
    return LSC_OK;
}

int imagefolder_decode(const char *path, int channels, uint8_t **pixels, int *h, int *w) {
    *pixels = NULL;
    if (channels != 1 && channels != 3)
        return error_set("Images are read with 1 or 3 channels, not %d.", channels);
    unsigned char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return error_set("Cannot open %s.", path);
    const size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    uint8_t *rgb = NULL;
    int rc;
    if (got >= 8 && !png_sig_cmp(magic, 0, 8)) rc = decode_png(path, &rgb, h, w);
    else if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF)
        rc = decode_jpeg(path, &rgb, h, w);
    else
        return error_set("%s is neither PNG nor JPEG (by its first bytes); convert it or remove "
                         "it from the folder.", path);
    if (rc != LSC_OK) return LSC_ERR;
    const size_t n = (size_t)*h * (size_t)*w;
    uint8_t *out = malloc(n * (size_t)channels);
    if (!out) {
        free(rgb);
        return error_set("Out of memory decoding %s.", path);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (channels == 1) /* PIL's convert("L"): ITU-R 601-2 luma, in 16-bit fixed point */
            out[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
        else
            for (int c = 0; c < 3; c++) out[(size_t)c * n + i] = p[c];
    }
    free(rgb);
    *pixels = out;
    return LSC_OK;
}

/* ---- the folder walk ---- */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir, sorted, of sub-folders (want_dirs) or of files with an image extension
 * (.png, .jpg, .jpeg, any case); hidden entries skipped. *names malloc'd (free each). */
static int list(const char *dir, int want_dirs, char ***names, int *n) {
    *names = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return error_set("Cannot open the folder %s (missing or unreadable).", dir);
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (want_dirs ? !is_dir(path) : is_dir(path)) continue;
        if (!want_dirs) {
            const char *dot = strrchr(e->d_name, '.');
            if (!dot || (strcasecmp(dot, ".png") && strcasecmp(dot, ".jpg") && strcasecmp(dot, ".jpeg")))
                continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(*names, (size_t)cap * sizeof *grown);
            if (!grown) break;
            *names = grown;
        }
        if (!((*names)[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (e) { /* the loop ended early: out of memory */
        for (int i = 0; i < *n; i++) free((*names)[i]);
        free(*names);
        *names = NULL, *n = 0;
        return error_set("Out of memory listing %s.", dir);
    }
    if (*n > 1) qsort(*names, (size_t)*n, sizeof **names, by_name); /* NULL when empty */
    return LSC_OK;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

void imagefolder_classes_free(ImageFolderClasses *c) {
    if (!c) return;
    free_names(c->names, c->n);
    c->names = NULL, c->n = 0;
}

int imagefolder_read(const char *path, int channels, const ImagePreprocess *pp, uint8_t *out) {
    uint8_t *img;
    int h, w;
    if (imagefolder_decode(path, channels, &img, &h, &w) != LSC_OK) return LSC_ERR;
    const int rc = image_preprocess_apply(pp, img, channels, h, w, out);
    free(img);
    return rc;
}

int imagefolder_read_many(char *const *paths, const int *idx, int n, int channels,
                          const ImagePreprocess *pp, uint8_t *out) {
    const size_t per = (size_t)channels * pp->crop * pp->crop;
    int failed = n;
#pragma omp parallel for schedule(dynamic) reduction(min : failed)
    for (int i = 0; i < n; i++)
        if (imagefolder_read(paths[idx ? idx[i] : i], channels, pp, out + (size_t)i * per) != LSC_OK &&
            i < failed)
            failed = i;
    if (failed == n) return LSC_OK;
    /* the first failing image again, on this thread: its sentence (the error is per thread) */
    return imagefolder_read(paths[idx ? idx[failed] : failed], channels, pp, out + (size_t)failed * per);
}

size_t imagefolder_memory_budget(void) {
    const char *env = getenv("LORASC_IMAGE_MEMORY_MB");
    char *end;
    const double mb = env && *env ? strtod(env, &end) : 4096.0;
    if (env && *env && (*end || !(mb >= 0))) return (size_t)4096 << 20; /* malformed: the default */
    return (size_t)(mb * 1048576.0);
}

/* The files of a set as they are listed: paths and labels, grown by doubling. */
typedef struct Listing {
    char **paths;
    int32_t *labels;
    int n, cap;
} Listing;

static int listing_add(Listing *l, const char *path, int32_t label) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 256;
        char **p = realloc(l->paths, sizeof *p * (size_t)cap);
        if (p) l->paths = p;
        int32_t *lb = p ? realloc(l->labels, sizeof *lb * (size_t)cap) : NULL;
        if (lb) l->labels = lb;
        if (!p || !lb) return error_set("Out of memory listing %d images (at %s).", cap, path);
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(path))) return error_set("Out of memory listing %s.", path);
    l->labels[l->n++] = label;
    return LSC_OK;
}

static void listing_free(Listing *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    free(l->labels);
    memset(l, 0, sizeof *l);
}

/* The listed images into s (which takes the listing over): decoded into memory, in parallel,
 * when they fit the memory budget, else streamed (s->files; decoded at each use to the same
 * bytes). A file that does not decode is an error now (in memory) or when it is used. */
static int materialise(ImageSet *s, Listing *l, int channels, const ImagePreprocess *pp) {
    const int size = pp->crop;
    const size_t per = (size_t)channels * size * size;
    s->n = l->n;
    s->labels = l->labels;
    s->preprocess = *pp;
    if ((size_t)l->n * per > imagefolder_memory_budget()) {
        s->files = l->paths;
        l->paths = NULL, l->labels = NULL, l->n = 0;
        return LSC_OK;
    }
    s->pixels = malloc(per * (size_t)(l->n > 0 ? l->n : 1));
    l->labels = NULL;
    if (!s->pixels) return error_set("Out of memory holding %d images of %dx%d.", l->n, size, size);
    return imagefolder_read_many(l->paths, NULL, l->n, channels, pp, s->pixels);
}

static int check_geometry(int channels, const ImagePreprocess *pp) {
    if (channels != 1 && channels != 3)
        return error_set("Image folders are read with 1 or 3 channels, not %d.", channels);
    return image_preprocess_check(pp);
}

void imagefolder_name(char *out, size_t cap, const char *root) {
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/') len--;
    const char *base = root + len;
    while (base > root && base[-1] != '/') base--;
    snprintf(out, cap, "%.*s", (int)(root + len - base), base);
}

/* s's name (root's last component) and geometry once every image is in */
static void finish_set(ImageSet *s, const char *root, int channels, int size, int n_classes) {
    imagefolder_name(s->name, sizeof s->name, root);
    s->channels = channels, s->height = s->width = size, s->n_classes = n_classes;
}

int imagefolder_load(ImageSet *s, ImageFolderClasses *classes, const char *root, int channels,
                     const ImagePreprocess *pp) {
    memset(s, 0, sizeof *s);
    if (classes) classes->n = 0, classes->names = NULL;
    if (check_geometry(channels, pp) != LSC_OK) return LSC_ERR;
    char **cls = NULL;
    int nc = 0;
    if (list(root, 1, &cls, &nc) != LSC_OK) return LSC_ERR;
    if (nc == 0) {
        free(cls);
        return error_set("%s has no class folders: an image folder holds one folder of images "
                         "per class (root/<class>/<image>).", root);
    }
    Listing listing = {0};
    int rc = LSC_OK;
    for (int c = 0; c < nc && rc == LSC_OK; c++) {
        char dir[4096];
        if (snprintf(dir, sizeof dir, "%s/%s", root, cls[c]) >= (int)sizeof dir) {
            rc = error_set("The path of %s's class folder %s is too long.", root, cls[c]);
            break;
        }
        char **files = NULL;
        int nf = 0;
        if ((rc = list(dir, 0, &files, &nf)) != LSC_OK) break;
        if (nf == 0) rc = error_set("%s holds no PNG or JPEG images (.png, .jpg, .jpeg).", dir);
        for (int i = 0; i < nf && rc == LSC_OK; i++) {
            char path[8192];
            if (snprintf(path, sizeof path, "%s/%s", dir, files[i]) >= (int)sizeof path)
                rc = error_set("The path of %s in %s is too long.", files[i], dir);
            else
                rc = listing_add(&listing, path, c);
        }
        free_names(files, nf);
    }
    if (rc == LSC_OK) rc = materialise(s, &listing, channels, pp);
    listing_free(&listing);
    if (rc != LSC_OK) {
        free_names(cls, nc);
        imagedata_free(s);
        return LSC_ERR;
    }
    finish_set(s, root, channels, pp->crop, nc);
    if (classes) classes->names = cls, classes->n = nc;
    else free_names(cls, nc);
    return LSC_OK;
}

int imagefolder_class_index(const ImageFolderClasses *classes, const char *name) {
    int lo = 0, hi = classes->n - 1;
    while (lo <= hi) { /* the names are in byte order (strcmp's): a binary search */
        const int mid = (lo + hi) / 2, cmp = strcmp(classes->names[mid], name);
        if (cmp == 0) return mid;
        if (cmp < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int imagefolder_has_classes(const char *root) {
    char **names = NULL;
    int n = 0;
    if (list(root, 1, &names, &n) != LSC_OK) return 0;
    free_names(names, n);
    return n > 0;
}

/* ---- ImageNet's validation layout: flat images and LOC_val_solution.csv ---- */

/* The label of the first WordNet id of a solution row ("n01751748 x0 y0 x1 y1 n0..."); -1
 * when it is not one of the classes. */
static int32_t wnid_label(const char *prediction, const ImageFolderClasses *classes) {
    char wnid[64];
    int len = 0;
    while (prediction[len] && prediction[len] != ' ' && len < (int)sizeof wnid - 1) {
        wnid[len] = prediction[len];
        len++;
    }
    wnid[len] = 0;
    return imagefolder_class_index(classes, wnid);
}

/* images/<ImageId>.JPEG (or .png, .jpg, .jpeg) for a solution row's ImageId */
static int find_image(char *path, size_t cap, const char *dir, const char *id) {
    static const char *const exts[] = {".JPEG", ".jpg", ".jpeg", ".png", ".PNG", ".JPG"};
    for (size_t e = 0; e < sizeof exts / sizeof *exts; e++) {
        if (snprintf(path, cap, "%s/%s%s", dir, id, exts[e]) >= (int)cap) return 0;
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return 1;
        }
    }
    return 0;
}

int imagefolder_load_solution(ImageSet *s, const char *dir, const char *csv,
                              const ImageFolderClasses *classes, int channels,
                              const ImagePreprocess *pp) {
    memset(s, 0, sizeof *s);
    if (check_geometry(channels, pp) != LSC_OK) return LSC_ERR;
    FILE *f = fopen(csv, "r");
    if (!f) return error_set("Cannot open %s (ImageNet's validation labels).", csv);
    char line[8192];
    long row = 0;
    Listing listing = {0};
    int rc = LSC_OK;
    while (rc == LSC_OK && fgets(line, sizeof line, f)) {
        row++;
        line[strcspn(line, "\r\n")] = 0;
        if (row == 1 && strncmp(line, "ImageId,", 8) == 0) continue; /* the header */
        if (!line[0]) continue;
        char *comma = strchr(line, ',');
        if (!comma) {
            rc = error_set("%s:%ld: expected ImageId,PredictionString (ImageNet's "
                           "LOC_val_solution.csv), got \"%.60s\".", csv, row, line);
            break;
        }
        *comma = 0;
        const int32_t label = wnid_label(comma + 1, classes);
        if (label < 0) {
            rc = error_set("%s:%ld: the class \"%.40s\" of %s is not a folder of the training "
                           "images.", csv, row, comma + 1, line);
            break;
        }
        char path[8192];
        if (!find_image(path, sizeof path, dir, line)) {
            rc = error_set("%s:%ld: no image %s.JPEG (or .jpg, .png) in %s.", csv, row, line, dir);
            break;
        }
        rc = listing_add(&listing, path, label);
    }
    fclose(f);
    if (rc == LSC_OK && listing.n == 0) rc = error_set("%s lists no images.", csv);
    if (rc == LSC_OK) rc = materialise(s, &listing, channels, pp);
    listing_free(&listing);
    if (rc != LSC_OK) {
        imagedata_free(s);
        return LSC_ERR;
    }
    finish_set(s, dir, channels, pp->crop, classes->n);
    return LSC_OK;
}
