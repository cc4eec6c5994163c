/* The backend seam: one struct of function pointers per device (CPU today, CUDA next).
 * Kernels know nothing of models: every op takes raw device pointers and dimensions,
 * outputs first, then inputs, then dimensions (llm.c order). Tensors are row-major.
 *
 * Conventions, for every op below:
 *  - "writes" means the output is overwritten; "accumulates" means +=.
 *  - Activation gradients are written unless the op says otherwise; parameter gradients
 *    (embedding table, norm weights) always accumulate, so grads are zeroed once per step.
 *  - Shapes use B batch, T time, C channels, NH query heads, NKV key/value heads,
 *    HD head size, V vocabulary, N rows (any flattening of leading dims).
 *  - The residual add's backward is the identity fan-out: the model realises it by having
 *    rmsnorm_backward accumulate into the residual-stream gradient; residual_backward is
 *    the explicit form for callers that keep separate buffers.
 *  - Pointers passed to ops are the backend's memory (from alloc, or offsets into it): host
 *    memory on the CPU, device memory on CUDA; tokens and targets too.
 *
 * Errors. Ops return nothing, so that a step issues them without a check each; a backend
 * whose ops can fail (CUDA: a launch, cuBLAS, out of memory, an asynchronous fault) keeps
 * the first failure as a sticky error, one sentence naming the op, the file and line and the
 * cause ("cuda: matmul failed at kernels/cuda/matmul.cu:120: cublasLtMatmul returned
 * CUBLAS_STATUS_NOT_SUPPORTED"). After it every op returns at once without touching memory.
 * Callers check at their sync points: sync() waits for the device and returns 0, or -1 once
 * an error is recorded (asynchronous faults surface there), and error() gives the sentence
 * (NULL while none). alloc() returns NULL on failure and records the sentence the same way.
 * The CPU backend's ops cannot fail (internal invariants abort through KERNEL_ASSERT): its
 * sync() returns 0 and error() NULL. On CUDA, LORASC_CUDA_SYNC=1 in the environment makes
 * every op synchronise after its launch, so an asynchronous fault names its own op.
 * Determinism: every reduction on every backend sums in an order fixed by the shapes alone
 * (no float atomics), so a run repeats bit for bit on one machine. */
#ifndef LORASC_BACKEND_H
#define LORASC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/real.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum RopeStyle {
    ROPE_INTERLEAVED = 0, /* Meta / llama2.c: rotate pairs (2i, 2i+1) */
    ROPE_HALF = 1,        /* Hugging Face: rotate pairs (i, i + HD/2) */
} RopeStyle;

/* GELU variants (ViT MLPs). */
typedef enum GeluKind {
    GELU_ERF = 0,   /* exact: x Phi(x) (HF ViT "gelu", torch default) */
    GELU_TANH = 1,  /* tanh approximation ("gelu_new", "gelu_pytorch_tanh") */
    GELU_QUICK = 2, /* x sigmoid(1.702 x) (CLIP "quick_gelu") */
} GeluKind;

typedef struct Backend Backend;
typedef struct BackendPacked BackendPacked; /* a frozen weight in a backend's own layout */

struct Backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* backend-private state (BLAS handles, streams, scratch, the error) */

    /* ---- lifetime, errors, description ---- */
    void (*destroy)(Backend *be);           /* frees the backend (backend_destroy calls it) */
    const char *(*error)(Backend *be);      /* the sticky error sentence, NULL while none */
    /* Writes one JSON object describing the device into buf (at most size bytes, always
     * NUL-terminated): {"backend":"cuda","device":"NVIDIA H200","memory_mib":..,...}. */
    void (*describe)(Backend *be, char *buf, size_t size);

    /* ---- memory ---- */
    void *(*alloc)(Backend *be, size_t bytes);      /* zero-filled, 64-byte aligned; NULL on failure */
    void (*free)(Backend *be, void *ptr);
    void (*to_device)(Backend *be, void *dst, const void *src_host, size_t bytes);
    void (*to_host)(Backend *be, void *dst_host, const void *src, size_t bytes);
    void (*copy)(Backend *be, void *dst, const void *src, size_t bytes); /* device to device */
    void (*zero)(Backend *be, void *dst, size_t bytes);
    int (*sync)(Backend *be); /* waits for every op issued; 0, or -1 once an error is recorded */

    /* ---- dense linear algebra ----
     * c[M,N] = alpha * op(a)[M,K] . op(b)[K,N] + beta * c, op(x) = x^T when trans_x.
     * a is stored [M,K] (or [K,M] if trans_a), b is stored [K,N] (or [N,K] if trans_b).
     * A linear layer y = x W^T with W [out,in] is matmul(y, x, W, BT, out, in, 0, 1, 1, 0). */
    void (*matmul)(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                   int trans_a, int trans_b, Real alpha, Real beta);
    /* matmul_frozen: matmul with a never transposed and b a weight w that stays the same over
     * many calls (a frozen base), *packed its slot, as matmul_bf16_frozen below: the backend
     * may keep w in its own layout from the first call on (the CPU: oneDNN's blocked layout,
     * 10-18% faster forward products). NULL where a backend reads w as stored. */
    void (*matmul_frozen)(Backend *be, Real *c, const Real *a, const Real *w,
                          BackendPacked **packed, int M, int N, int K, int trans_w, Real alpha,
                          Real beta);

    /* ---- bf16 storage (a frozen base held in bf16: ARCHITECTURE.md, "Devices and
     * precision") ----
     * A bf16 value is the upper half of an fp32's bits (uint16_t here, 2 bytes per element in
     * the backend's memory). These three are NULL where the backend cannot run them (the
     * double build; the CPU without oneDNN for matmul_bf16): callers refuse bf16 then.
     * to_bf16 writes dst[i] = bf16(src[i]), round to nearest even; NaN stays NaN (quiet, sign
     * kept), +-inf stays +-inf, finite values beyond the largest bf16 become +-inf.
     * from_bf16 writes dst[i] = the fp32 value of src[i] (exact).
     * matmul_bf16: c[M,N] (fp32) = alpha * bf16(a)[M,K] . op(w)[K,N] + beta * c, a fp32
     * activations/gradients stored [M,K] (never transposed) and rounded to bf16 inside the op
     * (scratch owned by the backend), w bf16 stored [K,N], or [N,K] when trans_w; products
     * exact, accumulation in fp32. The two uses of a frozen weight W [out,in]:
     *   forward  y = x W^T:  matmul_bf16(y, x, W, rows, out, in, 1, 1, 0)
     *   backward dx = dy W:  matmul_bf16(dx, dy, W, rows, in, out, 0, 1, beta). */
    void (*to_bf16)(Backend *be, uint16_t *dst, const Real *src, size_t n);
    void (*from_bf16)(Backend *be, Real *dst, const uint16_t *src, size_t n);
    void (*matmul_bf16)(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N,
                        int K, int trans_w, Real alpha, Real beta);
    /* matmul_bf16_rounded: matmul_bf16 with a already bf16 (a16 = to_bf16(a), made by the
     * caller or by cross_entropy_backward_bf16): the same bits as matmul_bf16 on the fp32 a,
     * without the rounding pass over a. NULL where matmul_bf16 is. */
    void (*matmul_bf16_rounded)(Backend *be, Real *c, const uint16_t *a16, const uint16_t *w,
                                int M, int N, int K, int trans_w, Real alpha, Real beta);
    /* matmul_bf16_frozen / matmul_bf16_rounded_frozen: the two above for a w that stays the
     * same over many calls (a frozen base), *packed a slot the caller keeps for this (w, N, K,
     * trans_w), NULL at first. A backend whose GEMM reads its own layout fastest copies w
     * there on the first call and reads the copy afterwards (the CPU: oneDNN's blocked bf16
     * layout, which it otherwise re-makes from w on every call; products 10-25% faster); a
     * call whose M wants another layout reads w as stored. The result may differ from
     * matmul_bf16's in the order of the fp32 sums (the CPU's: the same bits, test packed).
     * The caller frees the copy
     * with packed_free (which sets *packed to NULL) after writing w and before freeing it.
     * NULL where a backend reads w as stored (CUDA: cuBLASLt), and where matmul_bf16 is. */
    void (*matmul_bf16_frozen)(Backend *be, Real *c, const Real *a, const uint16_t *w,
                               BackendPacked **packed, int M, int N, int K, int trans_w,
                               Real alpha, Real beta);
    void (*matmul_bf16_rounded_frozen)(Backend *be, Real *c, const uint16_t *a16,
                                       const uint16_t *w, BackendPacked **packed, int M, int N,
                                       int K, int trans_w, Real alpha, Real beta);
    void (*packed_free)(Backend *be, BackendPacked **packed);

    /* ---- embedding ----
     * out[N,C] = table[tokens[n], :]; backward accumulates dtable[V,C] += scatter(dout). */
    void (*embedding_forward)(Backend *be, Real *out, const int32_t *tokens, const Real *table,
                              int N, int C);
    void (*embedding_backward)(Backend *be, Real *dtable, const Real *dout, const int32_t *tokens,
                               int N, int C);

    /* ---- RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight ----
     * forward writes out[N,C] and rstd[N] (saved for backward).
     * backward accumulates dx[N,C] += ... and, when dweight != NULL, dweight[C] += ... */
    void (*rmsnorm_forward)(Backend *be, Real *out, Real *rstd, const Real *x, const Real *weight,
                            int N, int C, float eps);
    void (*rmsnorm_backward)(Backend *be, Real *dx, Real *dweight, const Real *dout, const Real *x,
                             const Real *weight, const Real *rstd, int N, int C);

    /* ---- rotary position embedding, in place on x[B,T,NH,HD] ----
     * cos/sin tables are [T_max, HD/2] (row t is position pos0 + t). Forward rotates by +theta;
     * backward rotates the gradient by -theta (the transpose of an orthogonal rotation). */
    void (*rope_forward)(Backend *be, Real *x, const Real *cos_tab, const Real *sin_tab,
                         int B, int T, int NH, int HD, int pos0, RopeStyle style);
    void (*rope_backward)(Backend *be, Real *dx, const Real *cos_tab, const Real *sin_tab,
                          int B, int T, int NH, int HD, int pos0, RopeStyle style);

    /* ---- causal self-attention with grouped-query heads ----
     * q[B,T,NH,HD], k,v[B,T,NKV,HD] (NH % NKV == 0; query head h reads kv head h/(NH/NKV)).
     * forward writes out[B,T,NH,HD] and att[B,NH,T,T] (softmax probabilities; scale
     * 1/sqrt(HD)). backward writes dq, dk, dv and uses datt[B,NH,T,T] as scratch.
     * att and datt are backend-private between forward and backward: the CPU keeps the
     * probabilities there (s <= t; above the diagonal only the zeros its backward reads); CUDA (flash-style, never a T x T matrix) writes only the
     * log-sum-exp lse[B,NH,T] of the scaled scores into att's first B*NH*T entries and uses
     * datt's first B*NH*T as scratch (rowsum(dO * O)); the rest of both is untouched. */
    void (*attention_forward)(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                              const Real *v, int B, int T, int NH, int NKV, int HD);
    void (*attention_backward)(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                               const Real *dout, const Real *q, const Real *k, const Real *v,
                               const Real *att, int B, int T, int NH, int NKV, int HD);
    /* The same two on the tensor cores, for mixed precision (CUDA; NULL on the CPU, whose
     * models then use the fp32 pair): q, k, v and dout rounded to bf16 where they multiply,
     * the probabilities and their gradients rounded to bf16 before they multiply, fp32
     * accumulation and softmax statistics (within bf16 tolerance of the fp32 ops, not their
     * bits). causal 1 is attention_forward/backward's mask, 0 the full attention's. att and
     * datt as above (the log-sum-exp, scratch); backward also reads the forward's out (for
     * rowsum(dO * O)). A forward and its backward must both be these or both the fp32 pair. */
    void (*attention_forward_bf16)(Backend *be, Real *out, Real *att, const Real *q,
                                   const Real *k, const Real *v, int B, int T, int NH, int NKV,
                                   int HD, int causal);
    void (*attention_backward_bf16)(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                    const Real *dout, const Real *out, const Real *q,
                                    const Real *k, const Real *v, const Real *att, int B, int T,
                                    int NH, int NKV, int HD, int causal);
    /* Inference with a key/value cache (one sequence): Tq new query rows q[Tq,NH,HD] at
     * positions pos0..pos0+Tq-1, each attending causally to rows 0..its position of
     * kcache, vcache [>= pos0+Tq, NKV, HD] (the new rows already written there). Writes
     * out[Tq,NH,HD]; no probabilities are kept (nothing to differentiate). */
    void (*attention_decode_forward)(Backend *be, Real *out, const Real *q, const Real *kcache,
                                     const Real *vcache, int Tq, int pos0, int NH, int NKV,
                                     int HD);

    /* ---- SwiGLU: out = silu(gate) * up, elementwise over n ----
     * backward writes dgate and dup. */
    void (*swiglu_forward)(Backend *be, Real *out, const Real *gate, const Real *up, size_t n);
    void (*swiglu_backward)(Backend *be, Real *dgate, Real *dup, const Real *dout, const Real *gate,
                            const Real *up, size_t n);

    /* ---- residual add: out = a + b (out may alias a or b); backward accumulates
     * da += dout and db += dout (either may be NULL). ---- */
    void (*residual_forward)(Backend *be, Real *out, const Real *a, const Real *b, size_t n);
    void (*residual_backward)(Backend *be, Real *da, Real *db, const Real *dout, size_t n);

    /* ---- softmax cross-entropy over logits[N,V] ----
     * forward writes losses[N] = logsumexp(logits) - logits[target] and lse[N];
     * rows with target < 0 get loss 0 (ignored).
     * backward writes dlogits[N,V] = (softmax - onehot(target)) * dloss[n]; dlogits may alias
     * logits (in place); rows with target < 0 or dloss[n] == 0 get zeros. The per-token loss
     * mask and the mean over unmasked tokens live in dloss (mask[n] / count). */
    void (*cross_entropy_forward)(Backend *be, Real *losses, Real *lse, const Real *logits,
                                  const int32_t *targets, int N, int V);
    void (*cross_entropy_backward)(Backend *be, Real *dlogits, const Real *logits, const Real *lse,
                                   const int32_t *targets, const Real *dloss, int N, int V);
    /* cross_entropy_backward_bf16: the same gradient written as bf16 (dlogits16[i] =
     * to_bf16 of what cross_entropy_backward writes, bit for bit), for a frozen bf16
     * classifier whose dx = dlogits W reads it through matmul_bf16_rounded: one pass writing
     * 2 bytes per logit instead of writing 4, reading them back and rounding. NULL where the
     * backend has no bf16 storage. */
    void (*cross_entropy_backward_bf16)(Backend *be, uint16_t *dlogits16, const Real *logits,
                                        const Real *lse, const int32_t *targets,
                                        const Real *dloss, int N, int V);
    /* cross_entropy_forward_backward: forward and backward in one pass over each row (a
     * training step whose dloss is known before its forward): losses and lse as forward, the
     * gradient as backward into dlogits (may alias logits) or, when dlogits16 is not NULL, as
     * cross_entropy_backward_bf16 into dlogits16 (dlogits unused); the bits of the separate
     * ops, with the logits read from memory once instead of twice. dlogits16 must be NULL in
     * the double build. */
    void (*cross_entropy_forward_backward)(Backend *be, Real *losses, Real *lse, Real *dlogits,
                                           uint16_t *dlogits16, const Real *logits,
                                           const int32_t *targets, const Real *dloss, int N,
                                           int V);

    /* ---- per-row and per-column ops on a matrix x[N,C] ----
     * (DoRA splits a weight into a per-row magnitude and a direction with these.)
     * row_norm writes norm[N] = sqrt(sum_c x[n,c]^2), accumulated in double;
     * col_dot writes out[C] = sum_n a[n,c] * b[n,c], accumulated in double;
     * scale_rows writes out[n,c] = s[n] * x[n,c]; scale_cols writes out[n,c] = x[n,c] * s[c]
     * (out may alias x); divide writes out[i] = a[i] / b[i] for i < n (out may alias a or b).
     * Each output element is computed by one thread in a fixed order (deterministic). */
    void (*row_norm)(Backend *be, Real *norm, const Real *x, int N, int C);
    void (*col_dot)(Backend *be, Real *out, const Real *a, const Real *b, int N, int C);
    void (*scale_rows)(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
    void (*scale_cols)(Backend *be, Real *out, const Real *x, const Real *s, int N, int C);
    void (*divide)(Backend *be, Real *out, const Real *a, const Real *b, size_t n);

    /* ---- optimizer and reductions ----
     * AdamW with decoupled weight decay on n parameters, in torch.optim.AdamW's order of
     * operations (each step rounded to Real; scalars computed in double, then rounded):
     *   g' = g * grad_scale;
     *   p = p * (1 - lr*wd);                                  (decay first, as torch does)
     *   m = fma(1-b1, g' - m, m)            (torch's vectorised lerp_; when 1-b1 >= 0.5 it is
     *                                         fma((1-b1) - 1, g' - m, g') instead);
     *   v = v * b2 + (1-b2) * g' * g';
     *   p = p + (-lr/bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step (given). */
    void (*adamw_update)(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                         float bias_correction1, float bias_correction2);
    /* Returns sum(x^2) accumulated in double (deterministic for a fixed thread count). */
    double (*sum_squares)(Backend *be, const Real *x, size_t n);
    /* x *= s */
    void (*scale)(Backend *be, Real *x, size_t n, float s);
    /* y += s * x */
    void (*axpy)(Backend *be, Real *y, const Real *x, size_t n, float s);
    /* w[i] += scale * (u_i - 1/2), u_i = philox_unit_float(word i of Philox (seed, stream)):
     * uniform noise in [-scale/2, scale/2), bit-identical on every backend (the LoRASC
     * cascading noise; kernels/philox_block.h has the generator). */
    void (*add_uniform_noise)(Backend *be, Real *w, size_t n, uint64_t seed, uint64_t stream,
                              float scale);

    /* ---- vision (ViT) ---- */
    /* LayerNorm: out = (x - mean) / sqrt(var + eps) * weight + bias over rows of x[N,C]
     * (biased variance). forward writes out, mean[N], rstd[N]; backward accumulates dx and,
     * when not NULL, dweight[C] and dbias[C]. */
    void (*layernorm_forward)(Backend *be, Real *out, Real *mean, Real *rstd, const Real *x,
                              const Real *weight, const Real *bias, int N, int C, float eps);
    void (*layernorm_backward)(Backend *be, Real *dx, Real *dweight, Real *dbias,
                               const Real *dout, const Real *x, const Real *weight,
                               const Real *mean, const Real *rstd, int N, int C);
    /* GELU elementwise over n (GeluKind): forward writes out; backward writes dx
     * (may alias dout). */
    void (*gelu_forward)(Backend *be, Real *out, const Real *x, size_t n, GeluKind kind);
    void (*gelu_backward)(Backend *be, Real *dx, const Real *dout, const Real *x, size_t n,
                          GeluKind kind);
    /* Non-causal self-attention: as attention_forward/backward with every query row seeing
     * every key (att has no zeros). */
    void (*attention_full_forward)(Backend *be, Real *out, Real *att, const Real *q,
                                   const Real *k, const Real *v, int B, int T, int NH, int NKV,
                                   int HD);
    void (*attention_full_backward)(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                    const Real *dout, const Real *q, const Real *k,
                                    const Real *v, const Real *att, int B, int T, int NH,
                                    int NKV, int HD);
    /* img[B,C,H,W] -> out[B, (H/P)(W/P), C*P*P] (writes): patch p = py*(W/P) + px, column
     * c*P*P + i*P + j, i.e. torch's Conv2d(kernel = stride = P) as a matmul with its weight
     * [D,C,P,P] viewed as [D, C*P*P]. H and W must be multiples of P. */
    void (*patchify)(Backend *be, Real *out, const Real *img, int B, int C, int H, int W, int P);
    /* y[N,C] += bias[C] on every row; backward accumulates dbias[c] += sum_n dy[n,c]. */
    void (*bias_forward)(Backend *be, Real *y, const Real *bias, int N, int C);
    void (*bias_backward)(Backend *be, Real *dbias, const Real *dy, int N, int C);

    /* ---- device-resident step statistics (issue 11: no per-step host round trips) ----
     * A block of its own (the bf16 storage work changes the ops above). Each op writes its
     * result into backend memory (a double or a float there), so a training step reads nothing
     * back; the host reads the step's loss and gradient norm when it logs. Deterministic:
     * fixed-order sums, no atomics. On the CPU each gives the bits of the host code it replaces. */
    /* out[0] = (sum_i x[i]) / divisor, summed in double (in index order on the CPU, a fixed
     * tree on CUDA); 0 when divisor == 0. A batch's mean loss over its unmasked rows. */
    void (*mean_to)(Backend *be, double *out, const Real *x, size_t n, double divisor);
    /* acc[0] += sum_squares(x, n): the same double sum_squares returns, added in place. */
    void (*sum_squares_acc)(Backend *be, double *acc, const Real *x, size_t n);
    /* From acc[0], the sum of squares of every gradient: norm[0] = sqrt(acc[0]) and
     * scale[0] = (float)min(1, max_norm / (norm + 1e-6)) in double (torch's clip_grad_norm_),
     * or 1 when max_norm <= 0. */
    void (*clip_scale)(Backend *be, float *scale, double *norm, const double *acc,
                       float max_norm);
    /* adamw_update with its gradient scale read from backend memory (grad_scale[0]). */
    void (*adamw_update_dev)(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             const float *grad_scale, float bias_correction1,
                             float bias_correction2);
};

/* A backend by name (kernels/backend.c): "cpu" (threads <= 0 keeps the OpenMP default) or
 * "cuda" (threads is ignored; the current CUDA device). Returns NULL and writes one sentence
 * into err (at most err_size bytes) when the name is unknown, the backend is not built into
 * this lorasc, or it cannot start (no device, driver too old, out of memory). */
Backend *backend_create(const char *name, int threads, char *err, size_t err_size);
void backend_destroy(Backend *be); /* NULL is a no-op */

/* The CPU backend (kernels/cpu). threads <= 0 keeps the OpenMP default; GEMM runs on the
 * same OpenMP (libgomp) threads as every other op, so there is one thread pool. NULL when
 * out of memory. One caller thread at a time per backend (its GEMM primitive cache is not
 * locked); separate backends are independent. */
Backend *backend_cpu_create(int threads);
void backend_cpu_destroy(Backend *be);

/* The CPU backend's GEMM library. Float builds with oneDNN default to CPU_GEMM_AUTO: oneDNN's
 * matmul except the shape classes where OpenBLAS measured faster (kernels/cpu/matmul.c). The
 * choice depends on the shape only, so a run is as deterministic as either library. The
 * double build (LORASC_REAL_DOUBLE) and builds without oneDNN always use OpenBLAS. */
typedef enum CpuGemm {
    CPU_GEMM_AUTO = 0,
    CPU_GEMM_OPENBLAS = 1,
    CPU_GEMM_ONEDNN = 2,
} CpuGemm;

typedef struct CpuGemmStats {
    long long openblas_calls, onednn_calls; /* matmul calls (non-empty) each library ran */
    long long onednn_primitives;            /* primitives built (cache misses) */
    long long onednn_evictions;             /* cached primitives dropped to make room */
    long long onednn_fallbacks;             /* oneDNN could not build one: OpenBLAS ran */
} CpuGemmStats;

/* Selects the GEMM library: 0, or -1 (nothing changed) when asked for oneDNN where this build
 * has none. */
int backend_cpu_set_gemm(Backend *be, CpuGemm gemm);
/* 1 when this build can run matmuls through oneDNN (float build linked with it), else 0. */
int backend_cpu_has_onednn(void);
/* Counters since the backend was created. */
void backend_cpu_gemm_stats(const Backend *be, CpuGemmStats *out);

/* The CUDA backend (kernels/cuda), in builds configured with -Dcuda (LORASC_HAVE_CUDA in
 * lorasc_config.h) and float Real only: stream, cuBLASLt handle and 32 MiB workspace on the
 * current device. NULL and a sentence in err when no usable device is found. */
Backend *backend_cuda_create(char *err, size_t err_size);
void backend_cuda_destroy(Backend *be);

#ifdef __cplusplus
}
#endif

#endif
