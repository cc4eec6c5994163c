/* The pieces of the Llama forward that llama.c (training) and llama_decode.c (cached
 * inference) share. Private to core/model: callers outside use core/model/llama.h. */
#ifndef LORASC_LLAMA_INTERNAL_H
#define LORASC_LLAMA_INTERNAL_H

#include "core/model/llama.h"

int llama_head_dim(const LlamaConfig *c);
/* The slice of a stacked [L, ...] weight for layer l. */
Real *llama_layer_slice(Real *stacked, size_t per_layer, int l);
/* y[rows,out] (=, or += when accumulate) x[rows,in] W^T */
void llama_linear(Backend *be, Real *y, const Real *x, const Real *w, int rows, int in, int out,
                  int accumulate);
/* The tensor (LLAMA_WQ ...) that LoRA target t adapts. */
int llama_tensor_of_target(int target);
/* With W the [out,in] slice of `tensor` for layer l (l = 0 for the classifier), in the
 * model's precision: y[rows,out] = x W^T (forward), or y[rows,in] = x W (backward, x the
 * output's gradient); written, or added to y when accumulate. fp32 runs exactly the matmul
 * llama_linear (forward) or the plain transpose-free one (backward) would. */
void llama_weight_matmul(Llama *m, Real *y, const Real *x, int tensor, int l, int rows,
                         int backward, int accumulate);
/* llama_clone of a bf16 model: a bf16 copy (its matrices widened and rounded again, the same
 * bits; masters re-made from them by llama_ensure_masters when needed). */
int llama_clone_bf16(Llama *m, const Llama *src);
/* Frees the bf16 block and the masters (llama_free). */
void llama_free_bf16(Llama *m);
/* ---- packed copies of the frozen matrices (llama_packed.c) ---- */
/* The slot of the packed copy of (tensor, layer l, backward or forward) for matmul_frozen or
 * matmul_bf16_frozen; NULL where nothing is packed (then matmul, matmul_bf16). */
BackendPacked **llama_packed_slot(Llama *m, int tensor, int l, int backward);
/* Drops one tensor's copies (all layers and directions): the tensor changed. */
void llama_packed_drop(Llama *m, int tensor);
/* Drops every copy and the slots; packing is decided again at the next product. */
void llama_packed_free(Llama *m);
/* The attached adapter of (layer, target) applied to the projection y = x W^T, if any. */
void llama_adapter_forward(Llama *m, Real *y, const Real *x, int l, int target, int rows);
/* out[rows,C] = resid + x W^T (+ adapter) for the o / down projections; proj [rows, C] is
 * scratch that DoRA's output scaling needs. */
void llama_residual_projection(Llama *m, Real *out, const Real *resid, const Real *x, int l,
                               int target, int rows, int in, Real *proj);

/* ---- the head (llama_head.c) ---- */
/* The rows of logits the head keeps at once for a batch of `rows` head rows. */
int llama_head_chunk(const Llama *m, int rows);
/* The classifier and the loss of a forward with targets (see llama_head.c). */
int llama_head_forward(Llama *m, const int32_t *targets, int BT, int T, int sparse_ok,
                       double *row_loss);
/* The head's part of the backward: d(xn_final) into acts.dxn. */
void llama_head_backward(Llama *m);

#endif
