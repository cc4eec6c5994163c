/* A Llama's head in training and evaluation: the classifier (logits = x Wcls^T), the
 * cross-entropy and, going back, the head's input gradient. Rows whose target is masked are
 * left out (a sparse head), and on a device whose memory is not the host's the rows go
 * through in chunks of LLAMA_HEAD_CHUNK, so the batch's logits are never all in memory at
 * once (a 7B-shaped batch of 8 x 1024 tokens would hold 1 GiB of fp32 logits). On the CPU the
 * head runs on every row at once: its matmul library repacks the classifier's weight on
 * every call, so chunks cost more than the memory they save.
 * Not here: the layers (llama.c), decoding (llama_decode.c). */
#include <math.h>
#include <stdlib.h>

#include "core/base/error.h"
#include "core/model/device.h"
#include "core/model/llama_internal.h"

int llama_head_chunk(const Llama *m, int rows) {
    const int c = m->head_chunk > 0             ? m->head_chunk
                  : device_is_host(m->be) ? rows
                                          : LLAMA_HEAD_CHUNK;
    return c < rows ? c : rows;
}

/* Whether the classifier's gradient can go through the bf16 head: a frozen bf16 classifier
 * (dlogits16 exists in bf16 only) and a backend with the two ops. */
static int grad_bf16(const Llama *m) {
    return !m->grads && m->acts.dlogits16 && m->be->cross_entropy_backward_bf16 &&
           m->be->matmul_bf16_rounded;
}

/* The rows r0 .. r0+n-1 of the head's input: the gathered rows of a sparse head (in a->proj),
 * else the final norm's output. */
static const Real *head_input(const Llama *m, int r0) {
    const Real *x = m->head_rows ? m->acts.proj : m->acts.xn_final;
    return x + (size_t)r0 * m->config.dim;
}

/* The head's input gradient [rows, C]: scratch a->dq for a sparse head (scattered into dxn by
 * llama_head_backward), else a->dxn. Both are free until the backward. */
static Real *head_dx(const Llama *m, int r0) {
    Real *dx = m->head_rows ? m->acts.dq : m->acts.dxn;
    return dx + (size_t)r0 * m->config.dim;
}

/* From the logits of rows r0 .. r0+n-1 in a->logits (their gradient already there, or in
 * dlogits16, when `ready`): their input gradient, and the classifier's when it trains. */
static void rows_backward(Llama *m, int r0, int n, int ready) {
    Backend *be = m->be;
    LlamaActs *a = &m->acts;
    const int C = m->config.dim, V = m->config.vocab_size;
    if (grad_bf16(m)) {
        /* a frozen bf16 classifier: the gradient written once, as the bf16 its matmul would
         * round it to (the same bits as the fp32 path below, a third of its memory traffic) */
        if (!ready)
            be->cross_entropy_backward_bf16(be, a->dlogits16, a->logits, a->lse + r0,
                                            m->targets + r0, a->dloss + r0, n, V);
        BackendPacked **packed = llama_packed_slot(m, LLAMA_WCLS, 0, 1);
        if (packed)
            be->matmul_bf16_rounded_frozen(be, head_dx(m, r0), a->dlogits16, m->w16[LLAMA_WCLS],
                                           packed, n, C, V, 0, 1, 0);
        else
            be->matmul_bf16_rounded(be, head_dx(m, r0), a->dlogits16, m->w16[LLAMA_WCLS], n, C,
                                    V, 0, 1, 0);
        return;
    }
    Real *dlogits = a->logits; /* in place */
    if (!ready)
        be->cross_entropy_backward(be, dlogits, a->logits, a->lse + r0, m->targets + r0,
                                   a->dloss + r0, n, V);
    if (m->grads) /* dWcls += dlogits^T x (gradients are zeroed before the forward) */
        be->matmul(be, m->dw.tensors[LLAMA_WCLS], dlogits, head_input(m, r0), V, C, n, 1, 0, 1, 1);
    llama_weight_matmul(m, head_dx(m, r0), dlogits, LLAMA_WCLS, 0, n, 1, 0);
}

/* The loss of rows r0 .. r0+n-1 (logits, then the cross-entropy's forward into losses and
 * lse); in a training step (backward_follows) their gradient too, while each row is in
 * cache, and when the head is chunked their input gradient at once (the chunk's logits are
 * overwritten by the next). Returns the HEAD_GRAD_* the rows are left in. */
static int rows_forward(Llama *m, int r0, int n, int chunked) {
    Backend *be = m->be;
    LlamaActs *a = &m->acts;
    const int V = m->config.vocab_size;
    llama_weight_matmul(m, a->logits, head_input(m, r0), LLAMA_WCLS, 0, n, 0, 0);
    if (!m->backward_follows || !be->cross_entropy_forward_backward) {
        be->cross_entropy_forward(be, a->losses + r0, a->lse + r0, a->logits, m->targets + r0, n,
                                  V);
        return HEAD_GRAD_NONE;
    }
    const int bf16 = grad_bf16(m);
    be->cross_entropy_forward_backward(be, a->losses + r0, a->lse + r0, a->logits,
                                       bf16 ? a->dlogits16 : NULL, a->logits, m->targets + r0,
                                       a->dloss + r0, n, V);
    if (!chunked) return HEAD_GRAD_LOGITS;
    rows_backward(m, r0, n, 1);
    return HEAD_GRAD_DX;
}

/* Positions whose target is masked (< 0) contribute nothing, so when some are masked (a task's
 * label words, a response after its prompt) and the caller allows it (sparse_ok), the head
 * runs on the unmasked rows only, gathered into a->proj (free at this point of the step): with
 * a vocabulary of 49,152 the logits of every position would cost more than a layer. Then
 * m->head_rows = count, and lse, losses, dloss and the device targets hold `count` rows in
 * position order. Loss = mean over unmasked positions; dloss = 1 / count. row_loss (NULL: not
 * wanted) gets each of the BT / T batch rows' summed loss. */
int llama_head_forward(Llama *m, const int32_t *targets, int BT, int T, int sparse_ok,
                       double *row_loss) {
    Backend *be = m->be;
    LlamaActs *a = &m->acts;
    const int C = m->config.dim;
    int32_t *host_idx = malloc((size_t)BT * 2 * sizeof(int32_t));
    Real *host = calloc((size_t)BT * 2, sizeof(Real)); /* losses read back, then dloss */
    if (!host || !host_idx) {
        free(host), free(host_idx);
        return error_set("Out of memory computing the loss of %d tokens.", BT);
    }
    Real *host_dloss = host + BT;
    int32_t *host_tgt = host_idx + BT;
    int count = 0;
    for (int i = 0; i < BT; i++)
        if (targets[i] >= 0) host_idx[count] = i, host_tgt[count++] = targets[i];
    const int sparse = sparse_ok && count > 0 && count < BT, rows = sparse ? count : BT;
    if (sparse) {
        be->to_device(be, m->head_idx, host_idx, (size_t)count * sizeof(int32_t));
        be->embedding_forward(be, a->proj, m->head_idx, a->xn_final, count, C); /* gather rows */
        m->head_rows = count;
    }
    /* dloss first: a training step's forward computes the gradient with the loss */
    for (int i = 0; i < rows; i++)
        host_dloss[i] = (sparse || targets[i] >= 0) && count ? (Real)(1.0 / count) : 0;
    be->to_device(be, a->dloss, host_dloss, (size_t)rows * sizeof(Real));
    be->to_device(be, m->targets, sparse ? host_tgt : targets, (size_t)rows * sizeof(int32_t));
    /* a caller of llama_forward reads every row's logits: no chunks then */
    int chunk = sparse_ok ? llama_head_chunk(m, rows) : rows;
    if (chunk > m->logits_rows) chunk = m->logits_rows; /* head_chunk raised after the carve */
    m->head_chunked = chunk < rows ? chunk : 0;
    for (int r0 = 0; r0 < rows; r0 += chunk)
        m->head_grad = rows_forward(m, r0, rows - r0 < chunk ? rows - r0 : chunk, chunk < rows);
    double sum = 0.0;
    if (m->loss_out && !row_loss) { /* a training step: the mean loss stays on the device */
        be->mean_to(be, m->loss_out, a->losses, (size_t)rows, (double)count);
    } else {
        be->to_host(be, host, a->losses, (size_t)rows * sizeof(Real));
        if (device_sync(be) != LSC_OK) { /* the losses are read: every op of the forward has run */
            free(host), free(host_idx);
            return LSC_ERR;
        }
        for (int i = 0; i < rows; i++) sum += host[i];
        if (row_loss) {
            for (int b = 0; b < BT / T; b++) row_loss[b] = 0.0;
            for (int i = 0; i < rows; i++) row_loss[(sparse ? host_idx[i] : i) / T] += host[i];
        }
    }
    free(host);
    free(host_idx);
    m->n_loss_tokens = count;
    m->mean_loss = m->loss_out && !row_loss ? NAN : count ? sum / count : 0.0;
    return m->loss_out && !row_loss ? device_check(be) : LSC_OK;
}

void llama_head_backward(Llama *m) {
    Backend *be = m->be;
    LlamaActs *a = &m->acts;
    const int BT = m->B * m->T, C = m->config.dim;
    const int rows = m->head_rows ? m->head_rows : BT;
    if (m->head_grad != HEAD_GRAD_DX) {
        if (!m->head_chunked) {
            rows_backward(m, 0, rows, m->head_grad != HEAD_GRAD_NONE);
        } else { /* a chunked forward without backward_follows: each chunk's logits again */
            const int chunk = m->head_chunked;
            for (int r0 = 0; r0 < rows; r0 += chunk) {
                const int n = rows - r0 < chunk ? rows - r0 : chunk;
                llama_weight_matmul(m, a->logits, head_input(m, r0), LLAMA_WCLS, 0, n, 0, 0);
                rows_backward(m, r0, n, 0);
            }
        }
    }
    if (m->head_rows) { /* scatter the gathered rows' gradient back (the gather's transpose) */
        be->zero(be, a->dxn, (size_t)BT * C * sizeof(Real));
        be->embedding_backward(be, a->dxn, a->dq, m->head_idx, rows, C);
    }
}
