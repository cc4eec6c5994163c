/* The UCI handwritten digits (scikit-learn's digits.csv.gz): the CSV reader, the transform to
 * MNIST's 28x28 geometry and `lorasc data fetch digits`. See digits.h for the file format and
 * the transform step by step. */
#include "core/data/digits.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/data/datadir.h"
#include "core/data/datafetch.h"

/* The most text one digits file may hold (the real one is 264,712 bytes). */
#define DIGITS_MAX_TEXT ((size_t)64 << 20)

/* ------------------------------------------------------------------------------------------
 * The transform */

/* Torch's bilinear taps (align_corners = False) for n -> m in exact integers: output i
 * samples real = (i + 0.5) n / m - 0.5 = ((2i + 1) n - m) / 2m, clamped at 0; it takes input
 * i0 = floor(real) with weight 2m - l and i0 + 1 (i0 itself at the last input) with weight
 * l, l = 2m real - 2m i0; the weights sum to 2m. */
static void int_taps(int *i0, int *i1, int *w0, int *w1, int m, int n) {
    for (int i = 0; i < m; i++) {
        int num = (2 * i + 1) * n - m; /* real * 2m */
        if (num < 0) num = 0;
        int k = num / (2 * m);
        if (k > n - 1) k = n - 1;
        const int l = num - 2 * m * k;
        i0[i] = k, i1[i] = k < n - 1 ? k + 1 : k, w0[i] = 2 * m - l, w1[i] = l;
    }
}

int digits_to_mnist(const uint8_t counts[DIGITS_SIDE * DIGITS_SIDE], uint8_t out[DIGITS_FIELD * DIGITS_FIELD],
                    long *clipped) {
    enum { S = DIGITS_SIDE, BOX = DIGITS_BOX, F = DIGITS_FIELD, D = 2 * BOX };
    for (int i = 0; i < S * S; i++)
        if (counts[i] > 16) return error_set("a digits count is %d at pixel %d; counts are 0..16", counts[i], i);
    /* 1.-3. intensity = round(255 / 16 * bilinear(counts)) with bilinear's weights in units of
     * 1/D per axis: sum = sum of count * wy * wx, intensity = 255 sum / (16 D^2), halves up */
    int i0[BOX], i1[BOX], w0[BOX], w1[BOX];
    int_taps(i0, i1, w0, w1, BOX, S);
    uint8_t box[BOX * BOX];
    double mass = 0, my = 0, mx = 0;
    for (int y = 0; y < BOX; y++)
        for (int x = 0; x < BOX; x++) {
            const long sum = (long)w0[y] * (w0[x] * counts[i0[y] * S + i0[x]] + w1[x] * counts[i0[y] * S + i1[x]]) +
                             (long)w1[y] * (w0[x] * counts[i1[y] * S + i0[x]] + w1[x] * counts[i1[y] * S + i1[x]]);
            const long den = 16L * D * D;
            const long v = (2 * 255 * sum + den) / (2 * den); /* floor(255 sum / den + 1/2) */
            box[y * BOX + x] = (uint8_t)(v > 255 ? 255 : v);
            mass += (double)box[y * BOX + x], my += (double)box[y * BOX + x] * y, mx += (double)box[y * BOX + x] * x;
        }
    if (mass == 0) return error_set("a digits image has no ink (every count is 0): it has no centre of mass");
    /* 4. the integer shift that puts the centre of mass nearest to (14, 14) */
    const int oy = (int)floor(F / 2 - my / mass + 0.5), ox = (int)floor(F / 2 - mx / mass + 0.5);
    memset(out, 0, (size_t)F * F);
    long lost = 0;
    for (int y = 0; y < BOX; y++)
        for (int x = 0; x < BOX; x++) {
            const int ty = y + oy, tx = x + ox;
            if (ty >= 0 && ty < F && tx >= 0 && tx < F)
                out[ty * F + tx] = box[y * BOX + x];
            else
                lost += box[y * BOX + x];
        }
    if (clipped) *clipped = lost;
    return LSC_OK;
}

/* ------------------------------------------------------------------------------------------
 * The CSV */

int digits_parse_csv(const char *text, size_t len, const char *what, uint8_t *counts, int32_t *labels,
                     int cap, int *n) {
    enum { PIX = DIGITS_SIDE * DIGITS_SIDE };
    *n = 0;
    size_t p = 0;
    int line = 0;
    while (p < len) {
        line++;
        const size_t start = p;
        while (p < len && text[p] != '\n') p++;
        size_t end = p;
        if (p < len) p++; /* past '\n' */
        if (end > start && text[end - 1] == '\r') end--;
        if (end == start) continue; /* blank line (a final newline) */
        if (*n >= cap) return error_set("%s holds more than %d images (line %d); it is not scikit-learn's digits file", what, cap, line);
        int field = 0;
        size_t q = start;
        for (;;) {
            long v = 0;
            int digits = 0;
            while (q < end && text[q] >= '0' && text[q] <= '9' && digits < 4) v = v * 10 + (text[q++] - '0'), digits++;
            if (digits == 0 || (q < end && text[q] != ','))
                return error_set("%s line %d: field %d is not a small non-negative integer; each line holds "
                                 "64 counts 0..16 and a label 0..9, separated by commas", what, line, field + 1);
            if (field < PIX && v > 16)
                return error_set("%s line %d: pixel %d is %ld; counts are 0..16", what, line, field + 1, v);
            if (field == PIX && v > 9) return error_set("%s line %d: the label is %ld; labels are 0..9", what, line, v);
            if (field < PIX) counts[(size_t)*n * PIX + field] = (uint8_t)v;
            else if (field == PIX) labels[*n] = (int32_t)v;
            field++;
            if (q == end) break;
            q++; /* the comma */
        }
        if (field != PIX + 1)
            return error_set("%s line %d holds %d fields; each line holds 65 (64 counts and the label)", what, line, field);
        (*n)++;
    }
    if (*n == 0) return error_set("%s holds no images", what);
    return LSC_OK;
}

/* The whole (decompressed) text of path into a malloc'd buffer. */
static int read_text(const char *path, char **text, size_t *len) {
    *text = NULL, *len = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return error_set("Cannot open %s (missing or unreadable).", path);
    size_t cap = 0;
    int rc = LSC_OK;
    for (;;) {
        if (*len == cap) {
            if (cap >= DIGITS_MAX_TEXT) {
                rc = error_set("%s decompresses to more than %zu bytes; it is not scikit-learn's digits file.",
                               path, DIGITS_MAX_TEXT);
                break;
            }
            cap = cap ? 2 * cap : 1 << 18;
            char *grown = realloc(*text, cap);
            if (!grown) {
                rc = error_set("Out of memory reading %s.", path);
                break;
            }
            *text = grown;
        }
        const int r = gzread(f, *text + *len, (unsigned)(cap - *len));
        if (r < 0) {
            int zerr;
            rc = error_set("%s is not a readable gzip file (%s).", path, gzerror(f, &zerr));
            break;
        }
        if (r == 0) break;
        *len += (size_t)r;
    }
    gzclose(f);
    if (rc != LSC_OK) free(*text), *text = NULL, *len = 0;
    return rc;
}

/* Reads and, with verify, checks the file; counts[rows * 64] and labels[rows] malloc'd. */
static int read_checked(const char *path, int verify, uint8_t **counts, int32_t **labels, int *n) {
    *counts = NULL, *labels = NULL, *n = 0;
    char *text;
    size_t len;
    if (read_text(path, &text, &len) != LSC_OK) return LSC_ERR;
    int rc = LSC_OK;
    if (verify) {
        char hex[65];
        sha256_buffer_hex(text, len, hex);
        if (strcmp(hex, DIGITS_CSV_SHA256) != 0)
            rc = error_set("%s is not scikit-learn's digits file: its text has sha256 %s, expected %s "
                           "(corrupt or modified; get it again with `lorasc data fetch digits`).",
                           path, hex, DIGITS_CSV_SHA256);
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    const int cap = lines > (size_t)DIGITS_ROWS * 64 ? DIGITS_ROWS * 64 : (int)lines;
    if (rc == LSC_OK) {
        *counts = malloc((size_t)cap * DIGITS_SIDE * DIGITS_SIDE);
        *labels = malloc(sizeof(int32_t) * (size_t)cap);
        if (!*counts || !*labels) rc = error_set("Out of memory reading %s.", path);
    }
    if (rc == LSC_OK) rc = digits_parse_csv(text, len, path, *counts, *labels, cap, n);
    if (rc == LSC_OK && verify && *n != DIGITS_ROWS)
        rc = error_set("%s holds %d images; scikit-learn's digits file holds %d.", path, *n, DIGITS_ROWS);
    free(text);
    if (rc != LSC_OK) free(*counts), free(*labels), *counts = NULL, *labels = NULL, *n = 0;
    return rc;
}

int digits_load_file(ImageSet *s, const char *path, int verify) {
    memset(s, 0, sizeof *s);
    uint8_t *counts;
    int32_t *labels;
    int n;
    if (read_checked(path, verify, &counts, &labels, &n) != LSC_OK) return LSC_ERR;
    const size_t px = (size_t)DIGITS_FIELD * DIGITS_FIELD;
    s->pixels = malloc(px * (size_t)n);
    if (!s->pixels) {
        free(counts), free(labels);
        return error_set("Out of memory for %d digits images.", n);
    }
    s->labels = labels;
    s->n = n;
    s->channels = 1;
    s->height = s->width = DIGITS_FIELD;
    for (int i = 0; i < n; i++) {
        if (digits_to_mnist(counts + (size_t)i * DIGITS_SIDE * DIGITS_SIDE, s->pixels + (size_t)i * px, NULL) != LSC_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", error_last());
            free(counts);
            imagedata_free(s);
            return error_set("%s line %d: %s.", path, i + 1, why);
        }
        if (labels[i] + 1 > s->n_classes) s->n_classes = labels[i] + 1;
    }
    free(counts);
    snprintf(s->name, sizeof s->name, "digits");
    return LSC_OK;
}

int digits_load(ImageSet *s) {
    memset(s, 0, sizeof *s);
    char path[1024];
    if (datadir_path(path, sizeof path, DIGITS_DATA_PATH) != LSC_OK) return LSC_ERR;
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set("The UCI digits (shift set \"digits\") are not in the data directory (%s): run "
                         "`lorasc data fetch digits`, which copies them from Debian's python3-sklearn "
                         "(install python3-sklearn first) or from a folder given with --from.", path);
    fclose(f);
    return digits_load_file(s, path, 1);
}

/* ------------------------------------------------------------------------------------------
 * Fetching */

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Checks a candidate file: the right text and row count. */
static int verify_file(const char *path) {
    uint8_t *counts;
    int32_t *labels;
    int n;
    if (read_checked(path, 1, &counts, &labels, &n) != LSC_OK) return LSC_ERR;
    free(counts), free(labels);
    return LSC_OK;
}

int digits_fetch(const char *from, const char *dest_dir, char *src_out, size_t src_size) {
    if (!dest_dir) dest_dir = datadir_root();
    char src[4200], folder[4200], dst[4300], txt[4300];
    if (!from) {
        snprintf(src, sizeof src, "%s", DIGITS_SKLEARN_PATH);
        if (!exists(src))
            return error_set("The UCI digits come from scikit-learn and %s is absent: install python3-sklearn "
                             "(`apt-get install python3-sklearn`), or give a folder holding digits.csv.gz with "
                             "`lorasc data fetch digits --from DIR`.", src);
    } else {
        snprintf(src, sizeof src, "%s/%s", from, DIGITS_DATA_PATH);
        if (!exists(src)) snprintf(src, sizeof src, "%s/digits.csv.gz", from);
        if (!exists(src))
            return error_set("%s holds neither digits/digits.csv.gz nor digits.csv.gz (scikit-learn's "
                             "sklearn/datasets/data/digits.csv.gz).", from);
    }
    if (src_out) snprintf(src_out, src_size, "%s", src);
    if (verify_file(src) != LSC_OK) return LSC_ERR;
    snprintf(folder, sizeof folder, "%s/digits", dest_dir);
    snprintf(dst, sizeof dst, "%s/digits.csv.gz", folder);
    snprintf(txt, sizeof txt, "%s/SOURCE.txt", folder);
    if (mkdir(dest_dir, 0755) != 0 && errno != EEXIST)
        return error_set("Could not create the data directory %s: %s.", dest_dir, strerror(errno));
    if (mkdir(folder, 0755) != 0 && errno != EEXIST) return error_set("Could not create %s: %s.", folder, strerror(errno));
    char want[65], have[65];
    int64_t bytes = 0, have_bytes = -1;
    if (sha256_file_hex(src, want, &bytes) != LSC_OK) return LSC_ERR;
    const int same = strcmp(src, dst) == 0 ||
                     (sha256_file_hex(dst, have, &have_bytes) == LSC_OK && strcmp(have, want) == 0);
    error_clear();
    if (!same && datafetch_copy_file(src, dst) != LSC_OK) return LSC_ERR;
    if (exists(txt) && same) return LSC_OK;
    FILE *f = fopen(txt, "w");
    if (!f) return error_set("Could not create %s: %s.", txt, strerror(errno));
    fprintf(f,
            "dataset: UCI Optical Recognition of Handwritten Digits, test set (1,797 8x8 images, 43 writers'\n"
            "  forms; E. Alpaydin and C. Kaynak, 1998), as scikit-learn ships it (sklearn.datasets.load_digits)\n"
            "source: %s (copied unchanged by lorasc data fetch digits)\n"
            "format: gzip CSV, 64 counts 0..16 (8x8, row by row) then the label 0..9 per line\n"
            "decompressed text sha256: %s\n"
            "license: UCI Machine Learning Repository, CC BY 4.0\n"
            "use: a distribution shift for MNIST, brought to its 28x28 geometry (core/data/digits.h)\n"
            "files (sha256  bytes  path):\n  %s  %lld  digits.csv.gz\n",
            src, DIGITS_CSV_SHA256, want, (long long)bytes);
    return fclose(f) == 0 ? LSC_OK : error_set("Could not write %s: %s.", txt, strerror(errno));
}
