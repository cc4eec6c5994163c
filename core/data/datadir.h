/* The data directory: where datasets and pretrained weights live. It is $LORASC_DATA when
 * set, else "data" (relative to the working directory, git-ignored). Nothing in lorasc
 * hard-codes any other location; `lorasc data fetch` fills it. */
#ifndef LORASC_DATADIR_H
#define LORASC_DATADIR_H

#include <stddef.h>

const char *datadir_root(void);
/* Writes root/relative into out; returns LSC_ERR if it does not fit. */
int datadir_path(char *out, size_t size, const char *relative);
/* 1 if root/relative exists and is readable. */
int datadir_has(const char *relative);

#endif
