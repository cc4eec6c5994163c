/* `lorasc data fetch`: fills the data directory (core/data/datadir.h) with datasets. From a local
 * mirror (--from DIR) every dataset folder is copied and each file listed in its SOURCE.txt
 * ("files (sha256  bytes  path):" lines) is checked against its sha256 and size. Online
 * fetching from the canonical URLs is not implemented (this build has no network client):
 * it returns an error that says to use --from. */
#ifndef LORASC_DATAFETCH_H
#define LORASC_DATAFETCH_H

#include <stddef.h>

/* Copies src_dir/NAME to dest_dir/NAME (dest_dir NULL: the data directory) for each of the
 * n names (names NULL or n == 0: every folder of src_dir that has a SOURCE.txt). Files listed
 * in SOURCE.txt are copied and verified (a mismatch is an error naming the file, both hashes,
 * and the copy is removed); a folder without a file list is copied whole, unverified, and
 * counted in *unverified (may be NULL). Existing identical files are kept. */
int datafetch_from_dir(const char *const *names, size_t n, const char *src_dir, const char *dest_dir,
                       size_t *unverified);
/* Copies src to dst (its parent folders made) through dst.part and a rename, so a crash
 * leaves no half file. */
int datafetch_copy_file(const char *src, const char *dst);
/* Online fetch: always LSC_ERR with a sentence naming the datasets and the --from command. */
int datafetch_online(const char *const *names, size_t n);

#endif
