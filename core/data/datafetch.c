/* Dataset fetching from a local mirror with sha256 checks; see datafetch.h. */
#include "core/data/datafetch.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/data/datadir.h"
#include "core/base/error.h"
#include "core/base/sha256.h"

/* mkdir -p of the directory part of path (everything before the last '/'). */
static int make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) return LSC_OK;
    *slash = 0;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return error_set("Could not create directory %s: %s.", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return error_set("Could not create directory %s: %s.", buf, strerror(errno));
    return LSC_OK;
}

int datafetch_copy_file(const char *src, const char *dst) {
    char part[4200];
    snprintf(part, sizeof part, "%s.part", dst);
    if (make_parents(dst) != LSC_OK) return LSC_ERR;
    FILE *in = fopen(src, "rb");
    if (!in) return error_set("Could not open %s: %s.", src, strerror(errno));
    FILE *out = fopen(part, "wb");
    if (!out) {
        fclose(in);
        return error_set("Could not create %s: %s.", part, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int rc = LSC_OK;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = error_set("Could not write %s: %s.", part, strerror(errno));
            break;
        }
    if (rc == LSC_OK && ferror(in)) rc = error_set("Could not read %s.", src);
    fclose(in);
    if (fclose(out) != 0 && rc == LSC_OK) rc = error_set("Could not write %s: %s.", part, strerror(errno));
    if (rc == LSC_OK && rename(part, dst) != 0) rc = error_set("Could not rename %s to %s: %s.", part, dst, strerror(errno));
    if (rc != LSC_OK) remove(part);
    return rc;
}

/* Copies and verifies one listed file (skips the copy when dst already matches). */
static int fetch_listed(const char *name, const char *src_root, const char *dst_root, const char *rel,
                        const char *want_hex, int64_t want_bytes) {
    char src[4200], dst[4200], hex[65];
    int64_t bytes;
    snprintf(src, sizeof src, "%s/%s", src_root, rel);
    snprintf(dst, sizeof dst, "%s/%s", dst_root, rel);
    if (sha256_file_hex(dst, hex, &bytes) == LSC_OK && strcmp(hex, want_hex) == 0 && bytes == want_bytes)
        return LSC_OK;
    if (datafetch_copy_file(src, dst) != LSC_OK) return LSC_ERR;
    if (sha256_file_hex(dst, hex, &bytes) != LSC_OK) return LSC_ERR;
    if (strcmp(hex, want_hex) != 0 || bytes != want_bytes) {
        remove(dst);
        return error_set("Dataset '%s': %s has sha256 %s and %lld bytes, but its SOURCE.txt lists %s and %lld "
                         "bytes; the mirror copy is corrupt or modified (copy removed).",
                         name, src, hex, (long long)bytes, want_hex, (long long)want_bytes);
    }
    return LSC_OK;
}

/* Recursive copy of a folder without a file list. */
static int copy_tree(const char *src, const char *dst, size_t *files) {
    DIR *d = opendir(src);
    if (!d) return error_set("Could not open directory %s: %s.", src, strerror(errno));
    struct dirent *de;
    int rc = LSC_OK;
    while (rc == LSC_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char s[4200], t[4200];
        snprintf(s, sizeof s, "%s/%s", src, de->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, de->d_name);
        struct stat st;
        if (stat(s, &st) != 0) rc = error_set("Could not stat %s: %s.", s, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = copy_tree(s, t, files);
        else if (S_ISREG(st.st_mode)) rc = datafetch_copy_file(s, t), (*files)++;
    }
    closedir(d);
    return rc;
}

static int is_hex64(const char *s) {
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == ' ' || s[64] == '\t';
}

static int fetch_one(const char *name, const char *src_dir, const char *dest_dir, size_t *unverified) {
    char src_root[4096], dst_root[4096], source_txt[4200];
    if (!*name || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
        return error_set("'%s' is not a dataset folder name.", name);
    snprintf(src_root, sizeof src_root, "%s/%s", src_dir, name);
    snprintf(dst_root, sizeof dst_root, "%s/%s", dest_dir, name);
    struct stat st;
    if (stat(src_root, &st) != 0 || !S_ISDIR(st.st_mode))
        return error_set("Dataset '%s' is not in the mirror: %s is not a directory (see %s/README.md for "
                         "what the mirror holds).", name, src_root, src_dir);
    snprintf(source_txt, sizeof source_txt, "%s/SOURCE.txt", src_root);
    FILE *f = fopen(source_txt, "r");
    size_t listed = 0;
    int rc = LSC_OK;
    if (f) {
        char line[8192];
        int in_list = 0;
        while (rc == LSC_OK && fgets(line, sizeof line, f)) {
            if (strncmp(line, "files (sha256", 13) == 0) {
                in_list = 1;
                continue;
            }
            char *p = line;
            while (*p == ' ' || *p == '\t') p++;
            if (!in_list || !is_hex64(p)) continue;
            char hex[65];
            memcpy(hex, p, 64), hex[64] = 0;
            char *end;
            long long bytes = strtoll(p + 64, &end, 10);
            while (*end == ' ' || *end == '\t') end++;
            end[strcspn(end, "\r\n")] = 0;
            if (!*end || strstr(end, "..") || *end == '/') {
                rc = error_set("%s: a file line names no safe relative path.", source_txt);
                break;
            }
            rc = fetch_listed(name, src_root, dst_root, end, hex, bytes);
            listed++;
        }
        fclose(f);
        if (rc == LSC_OK) {
            char dst_txt[4200];
            snprintf(dst_txt, sizeof dst_txt, "%s/SOURCE.txt", dst_root);
            rc = datafetch_copy_file(source_txt, dst_txt);
        }
    }
    if (rc == LSC_OK && listed == 0) {
        size_t files = 0;
        rc = copy_tree(src_root, dst_root, &files);
        if (unverified) *unverified += files;
    }
    return rc;
}

int datafetch_from_dir(const char *const *names, size_t n, const char *src_dir, const char *dest_dir,
                       size_t *unverified) {
    if (!src_dir || !*src_dir) return error_set("datafetch_from_dir needs a source directory (--from DIR).");
    if (!dest_dir) dest_dir = datadir_root();
    if (unverified) *unverified = 0;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/x", dest_dir);
    if (make_parents(probe) != LSC_OK) return LSC_ERR;
    if (names && n) {
        for (size_t i = 0; i < n; i++)
            if (fetch_one(names[i], src_dir, dest_dir, unverified) != LSC_OK) return LSC_ERR;
        return LSC_OK;
    }
    DIR *d = opendir(src_dir);
    if (!d) return error_set("Could not open the mirror %s: %s.", src_dir, strerror(errno));
    struct dirent *de;
    int rc = LSC_OK;
    while (rc == LSC_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char st_path[4200];
        snprintf(st_path, sizeof st_path, "%s/%s/SOURCE.txt", src_dir, de->d_name);
        if (access(st_path, R_OK) == 0) rc = fetch_one(de->d_name, src_dir, dest_dir, unverified);
    }
    closedir(d);
    return rc;
}

int datafetch_online(const char *const *names, size_t n) {
    return error_set("Online fetching of %s is not available in this build (no network client); copy from a "
                     "local mirror with `lorasc data fetch %s --from DIR` (for example --from ../shared/data).",
                     names && n ? names[0] : "datasets", names && n ? names[0] : "[NAMES]");
}
