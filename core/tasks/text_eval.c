/* Evaluation of a Llama on a byte-level text task. */
#include "core/tasks/text_eval.h"

#include <stdlib.h>

#include "core/base/error.h"
#include "core/model/device.h"

long text_eval_windows(const TextData *d, TextSplit split, int T, long max_windows) {
    const size_t len = d->len[split];
    if (T <= 0 || len < (size_t)T + 1) return 0;
    long n_windows = (long)((len - 1) / (size_t)T);
    if (max_windows > 0 && n_windows > max_windows) n_windows = max_windows;
    return n_windows;
}

int text_eval_run(const TextData *d, TextSplit split, Llama *model, int B, int T,
                  long max_windows, double *loss, double *accuracy) {
    return text_eval_run_windows(d, split, model, B, T, max_windows, loss, accuracy, NULL);
}

int text_eval_run_windows(const TextData *d, TextSplit split, Llama *model, int B, int T,
                          long max_windows, double *loss, double *accuracy, double *per_window) {
    const size_t len = d->len[split];
    if (len < (size_t)T + 1)
        return error_set("task '%s': split too short (%zu bytes) for sequence length %d", d->name,
                         len, T);
    const long n_windows = text_eval_windows(d, split, T, max_windows);
    const int V = model->config.vocab_size;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
    Real *logits = malloc(sizeof(Real) * (size_t)B * (size_t)T * (size_t)V);
    int rc = LSC_OK;
    if (!tokens || !targets || !logits) {
        rc = error_set("task '%s': out of memory in evaluation", d->name);
        goto done;
    }
    const unsigned char *base = d->bytes + d->start[split];
    double loss_sum = 0;
    long correct = 0, count = 0;
    for (long w0 = 0; w0 < n_windows; w0 += B) {
        const int nb = (int)(n_windows - w0 < B ? n_windows - w0 : B);
        for (int b = 0; b < nb; b++) {
            const size_t pos = (size_t)(w0 + b) * (size_t)T;
            for (int i = 0; i < T; i++) {
                tokens[b * T + i] = base[pos + (size_t)i];
                targets[b * T + i] = base[pos + (size_t)i + 1];
            }
        }
        model->forward_only = 1; /* an evaluation: one layer's activations (llama.h) */
        const int frc = llama_forward(model, tokens, targets, nb, T);
        model->forward_only = 0;
        if (frc != LSC_OK) {
            rc = LSC_ERR;
            goto done;
        }
        const long n_tok = (long)nb * T;
        loss_sum += model->mean_loss * (double)n_tok;
        model->be->to_host(model->be, logits, model->acts.logits,
                           sizeof(Real) * (size_t)n_tok * (size_t)V);
        if (device_sync(model->be) != LSC_OK) {
            rc = LSC_ERR;
            goto done;
        }
        for (int b = 0; b < nb; b++) {
            long win_correct = 0;
            for (long t = (long)b * T; t < (long)(b + 1) * T; t++) {
                const Real *row = logits + (size_t)t * (size_t)V;
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (row[v] > row[best]) best = v;
                win_correct += best == targets[t];
            }
            correct += win_correct;
            if (per_window) per_window[w0 + b] = (double)win_correct / (double)T;
        }
        count += n_tok;
    }
    *loss = loss_sum / (double)count;
    *accuracy = (double)correct / (double)count;
done:
    free(tokens);
    free(targets);
    free(logits);
    return rc;
}
