/* Evaluation of a Llama on a byte-level text task (core/data/textdata.h): mean next-byte loss
 * and accuracy over consecutive windows of a split. Not here: the paper's language tasks
 * (core/tasks/task.h). */
#ifndef LORASC_TEXT_EVAL_H
#define LORASC_TEXT_EVAL_H

#include "core/data/textdata.h"
#include "core/model/llama.h"

/* Mean next-byte loss and accuracy of model on consecutive windows of length T covering the
 * split (at most max_windows windows, 0 = all), B windows per forward. */
int text_eval_run(const TextData *d, TextSplit split, Llama *model, int B, int T,
                  long max_windows, double *loss, double *accuracy);
/* How many windows text_eval_run evaluates (0 when the split is shorter than T + 1 bytes). */
long text_eval_windows(const TextData *d, TextSplit split, int T, long max_windows);
/* text_eval_run, and each window's next-byte accuracy into per_window[0 .. text_eval_windows)
 * when per_window is not NULL (every window has T targets, so their mean is *accuracy). */
int text_eval_run_windows(const TextData *d, TextSplit split, Llama *model, int B, int T,
                          long max_windows, double *loss, double *accuracy, double *per_window);
#endif
