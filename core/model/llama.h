/* The Llama model: explicit forward and backward per layer (the llm.c way, no autograd).
 * Two training modes share one code path:
 *  - full: gradients for every weight (pretraining / full fine-tuning);
 *  - LoRA: a LoraAdapters is attached, the base is frozen, and base-weight gradients are
 *    never computed (only activation gradients flow through the frozen matmuls).
 * Parameters live in one block carved by a size table; gradients in a second block with the
 * same layout (allocated only for full training); activations in a third, sized for (B, T).
 * Not here: tokenizers, data, checkpoint formats (core/formats/checkpoint.h, core/formats/llama2c.h). */
#ifndef LORASC_LLAMA_H
#define LORASC_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/model/lora.h"
#include "core/model/precision.h"
#include "kernels/backend.h"

typedef struct LlamaConfig {
    int dim;            /* C */
    int hidden_dim;     /* H, SwiGLU width */
    int n_layers;       /* L */
    int n_heads;        /* NH */
    int n_kv_heads;     /* NKV (grouped-query attention when < NH) */
    int vocab_size;     /* V */
    int seq_len;        /* maximum T */
    float rope_theta;   /* 10000 for Llama 1/2 */
    float norm_eps;     /* RMSNorm epsilon */
    int tied_embeddings; /* 1: the classifier is token_embedding */
    RopeStyle rope_style;
} LlamaConfig;

/* Bounds on what a config (from a file or a user) may ask for, checked before anything is
 * allocated: seq_len sizes the RoPE tables (seq_len x head_size/2 each), and the parameter
 * count is computed without overflow. 2^20 positions is 8x the longest context of public
 * Llamas (131072); 2^36 parameters is 256 GiB of fp32 weights. */
#define LLAMA_MAX_SEQ_LEN (1 << 20)
#define LLAMA_MAX_PARAMS ((size_t)1 << 36)

/* Returns LSC_OK or LSC_ERR with a sentence naming the bad field (also a seq_len above
 * LLAMA_MAX_SEQ_LEN or a parameter count above LLAMA_MAX_PARAMS). */
int llama_config_validate(const LlamaConfig *c);

enum {
    LLAMA_TOKEN_EMBEDDING = 0, /* [V, C] */
    LLAMA_RMS_ATT,             /* [L, C] */
    LLAMA_WQ,                  /* [L, NH*HD, C] */
    LLAMA_WK,                  /* [L, NKV*HD, C] */
    LLAMA_WV,                  /* [L, NKV*HD, C] */
    LLAMA_WO,                  /* [L, C, NH*HD] */
    LLAMA_RMS_FFN,             /* [L, C] */
    LLAMA_W1,                  /* [L, H, C]  gate */
    LLAMA_W2,                  /* [L, C, H]  down */
    LLAMA_W3,                  /* [L, H, C]  up */
    LLAMA_RMS_FINAL,           /* [C] */
    LLAMA_WCLS,                /* [V, C]; size 0 when tied */
    LLAMA_NUM_PARAM_TENSORS
};

typedef struct LlamaWeights {
    Real *tensors[LLAMA_NUM_PARAM_TENSORS]; /* pointers into one block; WCLS aliases the
                                             * token embedding when tied */
} LlamaWeights;

const char *llama_param_name(int tensor);
/* Row-major shape of one layer's slice of a stacked tensor (or of a global tensor):
 * [rows, cols], cols = 0 for vectors (the norm weights). */
void llama_tensor_shape(const LlamaConfig *c, int tensor, int64_t *rows, int64_t *cols);
/* Number of elements of each tensor for config c. */
void llama_param_sizes(const LlamaConfig *c, size_t sizes[LLAMA_NUM_PARAM_TENSORS]);

/* Where a forward with targets left the classifier's gradient (Llama.head_grad). */
enum {
    HEAD_GRAD_NONE = 0, /* not computed: llama_backward runs the cross-entropy's backward */
    HEAD_GRAD_LOGITS,   /* the logits' gradient is done: in acts.dlogits16 for a frozen bf16
                         * classifier with the backend's bf16 head ops, else in acts.logits */
    HEAD_GRAD_DX,       /* the head's input gradient is done (a chunked head's forward) */
};

/* Rows of logits a head on a device keeps at once (llama_head.c): 256 MiB of fp32 logits at a
 * vocabulary of 65,536. */
#define LLAMA_HEAD_CHUNK 1024

/* Activations for one step at (B, T), carved from one block. Shapes in comments. */
typedef struct LlamaActs {
    Real *resid;     /* [L+1, BT, C] residual stream entering each layer (and final) */
    Real *xn_att;    /* [L, BT, C]  rmsnorm before attention */
    Real *rstd_att;  /* [L, BT] */
    Real *q;         /* [L, BT, NH*HD]  after rope */
    Real *k;         /* [L, BT, NKV*HD] after rope */
    Real *v;         /* [L, BT, NKV*HD] */
    Real *att;       /* [L, B, NH, T, T] softmax probabilities */
    Real *atty;      /* [L, BT, NH*HD] attention output before wo */
    Real *resid_mid; /* [L, BT, C] residual after attention */
    Real *xn_ffn;    /* [L, BT, C] */
    Real *rstd_ffn;  /* [L, BT] */
    Real *gate;      /* [L, BT, H] x W1^T */
    Real *up;        /* [L, BT, H] x W3^T */
    Real *swi;       /* [L, BT, H] silu(gate) * up */
    Real *xn_final;  /* [BT, C] */
    Real *rstd_final; /* [BT] */
    Real *logits;    /* [BT, V] (every position's, llama_forward), or a chunk's rows of the
                      * head's (llama_head.c); overwritten by their gradient in place */
    Real *losses;    /* [BT] per-token loss (0 where masked) */
    Real *lse;       /* [BT] */
    Real *dloss;     /* [BT] mask / count */
    Real *proj;      /* [BT, C] scratch: an o/down projection that DoRA scales, before the
                      * residual add (forward); its gradient (backward) */
    /* backward scratch */
    Real *dresid;    /* [BT, C] */
    Real *dxn;       /* [BT, C] */
    Real *dq, *dk, *dv; /* [BT, NH*HD], [BT, NKV*HD] x2 */
    Real *datt;      /* [B, NH, T, T] */
    Real *datty;     /* [BT, NH*HD] */
    Real *dgate, *dup, *dswi; /* [BT, H] */
    uint16_t *dlogits16; /* [BT, V] the classifier's gradient in bf16, for a frozen bf16
                          * classifier (NULL in fp32): cross_entropy_backward_bf16 writes it */
    uint16_t *x16;       /* [BT, C] a bf16 base's xn or xn2 rounded once for the products
                          * that share it (NULL in fp32) */
    uint16_t *store16;   /* [L, a layer's stored activations] in bf16 (acts_precision bf16;
                          * NULL otherwise): llama.c's stored_acts gives the layout */
} LlamaActs;

typedef struct Llama {
    LlamaConfig config;
    Backend *be;
    LlamaWeights w;
    Real *params;                 /* one block, sizes from param_sizes */
    size_t param_sizes[LLAMA_NUM_PARAM_TENSORS];
    size_t num_params;
    LlamaWeights dw;              /* same layout as w, NULL until llama_enable_full_grads */
    Real *grads;
    LoraAdapters *lora;           /* attached adapters (not owned), or NULL */
    Real *rope_cos, *rope_sin;    /* [seq_len, HD/2] */
    LlamaActs acts;
    Arena acts_arena;             /* owns the activation memory */
    int32_t *tokens, *targets;    /* device copies [BT] */
    int32_t *head_idx;            /* [BT] positions of the unmasked targets (sparse head) */
    int head_rows;                /* rows the classifier ran on in the last forward with targets
                                   * when some were masked; 0: every position (dense) */
    int backward_follows;         /* set by a trainer around a forward that llama_backward
                                   * follows: the forward then computes the classifier's
                                   * gradient with the loss (cross_entropy_forward_backward) */
    int forward_only;             /* set by an evaluation around forwards that no backward
                                   * follows: each layer's activations then overwrite the last
                                   * layer's (one layer's worth of memory instead of n_layers';
                                   * a 5-shot MMLU batch of SmolLM2 took 14 GB), and
                                   * llama_backward refuses until a forward without it */
    int acts_one_layer;           /* the arena is carved for one layer (forward_only) */
    /* Stored activations (llama_set_activations): PRECISION_BF16 keeps the activations a
     * backward reads (each layer's input, norms' outputs, q k v, attention output, mid,
     * gate, up, swi) in bf16 between forward and backward, in acts.store16; the layers
     * compute in fp32 through one layer of working buffers (the forward packs a layer as it
     * ends, the backward unpacks it as it starts). The forward's values are those of fp32
     * storage bit for bit; the gradients read bf16-rounded activations, as a bf16 model's
     * would. The softmax statistics (att) and the norms' rstd stay fp32. Default fp32. */
    ModelPrecision acts_precision;
    int acts_carved16;            /* the arena is carved with the bf16 store */
    int head_grad;                /* HEAD_GRAD_*: where the last forward left that gradient */
    int head_chunked;             /* rows per chunk of the last forward's head; 0: one pass */
    int head_chunk;               /* rows of logits the head keeps at once; 0 (default): all on
                                   * the CPU, LLAMA_HEAD_CHUNK on a device (llama_head.c) */
    int logits_rows;              /* rows acts.logits holds (all BT, or a chunk's) */
    size_t row_capacity;          /* entries in tokens/targets */
    int B, T;                     /* current activation capacity */
    double mean_loss;             /* of the last forward with targets */
    int n_loss_tokens;            /* unmasked targets in the last forward */
    double *loss_out;             /* backend memory, or NULL (default): when set, a forward with
                                   * targets writes its mean loss there and reads nothing back
                                   * (mean_loss is then NaN), and neither it nor the backward
                                   * waits for the device (a training step between logs) */
    /* A bf16 frozen base (llama_set_precision; core/model/llama_bf16.c). In bf16 the 2-D
     * matrices (wq wk wv wo w1 w2 w3 and the classifier) live in w16, their fp32 tensors in
     * w are NULL except the fp32 masters of adapted targets (separate blocks, made by
     * llama_ensure_masters), and params holds the embedding and norm weights only. */
    ModelPrecision precision;
    uint16_t *w16[LLAMA_NUM_PARAM_TENSORS]; /* NULL for the vectors and in fp32 */
    uint16_t *base16;             /* the block w16 points into */
    size_t params_len;            /* Reals in params (num_params in fp32) */
    unsigned stale;               /* LORA_BIT of targets written since the last forward: their
                                   * bf16 copies (bf16) and packed copies lag (llama_refresh_copies) */
    /* The frozen matrices in the backend's own layout (matmul_frozen, matmul_bf16_frozen; the
     * CPU's oneDNN layout, the same bits as plain products), one slot per (tensor, layer,
     * direction), filled on first use, dropped when the matrix is written (llama_packed.c).
     * Each direction's copies take as much memory as the matrices, so they are a cache sized
     * to the machine: pack_dirs is 2 (forward and backward products: bf16), 1 (forward: fp32,
     * or bf16 where two do not fit in half the free memory) or 0 (none; and with full
     * gradients), decided at the first product (pack_decided). */
    BackendPacked **packed;
    int pack_dirs, pack_decided;
} Llama;

/* Allocates parameters (zeroed) for c on be. */
int llama_create(Llama *m, Backend *be, const LlamaConfig *c);
void llama_free(Llama *m);
/* m = a copy of src on src's backend (weights only: no gradients, adapters or optimiser), in
 * src's precision (a bf16 copy's masters are re-made from its bf16 values when needed). */
int llama_clone(Llama *m, const Llama *src);

/* ---- precision (core/model/llama_bf16.c) ----
 * PRECISION_BF16: rounds the matrices to bf16 (round to nearest even) and frees their fp32
 * storage; the frozen matmuls then run bf16 x bf16 with fp32 accumulation (matmul_bf16),
 * everything else stays fp32. Refused (one sentence) on a backend without matmul_bf16, with
 * full gradients on, or with adapters attached. Back to PRECISION_FP32 widens every matrix
 * (exactly: the model stays the bf16-rounded one). */
int llama_set_precision(Llama *m, ModelPrecision p);
/* How the activations a backward reads are stored between forward and backward (see
 * Llama.acts_precision): PRECISION_FP32 (default) or PRECISION_BF16, half the memory of
 * those activations. Independent of the base's precision; takes effect at the next forward.
 * Refused (one sentence) on a backend without the bf16 conversions. */
int llama_set_activations(Llama *m, ModelPrecision p);
/* bf16: gives each target of the LORA_BIT mask an fp32 master (the bf16 values widened,
 * exactly), which merges and noise write and llama_target_weight returns; a no-op in fp32
 * and for targets that have one. */
int llama_ensure_masters(Llama *m, unsigned targets);
/* The writable master of a target (llama_target_weight) marked stale: its bf16 copy is
 * refreshed from it before the next forward. What the cascade writes through. */
Real *llama_target_master(Llama *m, int target, int layer);
/* Brings the copies of the targets written since the last forward up to date (forwards call
 * it): bf16, their masters rounded into the bf16 copies; their packed copies dropped. */
void llama_refresh_copies(Llama *m);
/* After writing weights other than through llama_target_master or snapshot_restore (a loader,
 * a test writing params): drops every packed copy of the old values (llama_packed.c). */
void llama_weights_changed(Llama *m);
/* Tensor `tensor` in fp32 on the device: *ptr = the model's own (owned = 0), or, for a
 * bf16-only matrix, a fresh widened copy the caller frees with be->free (owned = 1). */
int llama_tensor_fp32(const Llama *m, int tensor, Real **ptr, int *owned);
/* Sum of squares (double) of every weight that can change (fp32 block and masters). */
double llama_weight_sum_squares(Llama *m);

/* Random initialisation for pretraining: normal(0, 0.02) matrices, ones for norm weights. */
void llama_init_random(Llama *m, uint64_t seed);

/* Allocates the gradient block: after this, backward computes gradients of every weight. */
int llama_enable_full_grads(Llama *m);
/* Attaches adapters (must have been created from llama_lora_shapes of this model); NULL detaches.
 * With adapters attached and no full grads, the base is frozen. A DoRA adapter whose
 * magnitudes were never set (lora->magnitudes_set == 0) gets them from this model's weights
 * (llama_init_lora_magnitudes). */
void llama_attach_lora(Llama *m, LoraAdapters *lora);
/* DoRA: m = ||W + s B A||_row for every slot of the attached adapter, from this model's
 * weights (PEFT's initialisation; = ||W||_row while B = 0, leaving the model unchanged). */
void llama_init_lora_magnitudes(Llama *m);
/* The (in, out) dimensions of each LoRA target for this model. */
void llama_lora_shapes(const LlamaConfig *c, int in_dim[LORA_NUM_TARGETS],
                       int out_dim[LORA_NUM_TARGETS]);
/* The base weight [L, out, in] that target t adapts (layer l's slice is at l*out*in); in
 * bf16 its fp32 master (the target must have one: llama_ensure_masters). */
Real *llama_target_weight(Llama *m, int target, int layer);
/* Merge every adapter into the base (sign +1) or take it out again (sign -1): s*B*A for LoRA,
 * the rule in core/model/lora.h for DoRA. */
void llama_merge_lora(Llama *m, float sign);

/* Forward on tokens[B*T] (host memory). targets[B*T] may be NULL (inference only);
 * a target < 0 is masked out of the loss (the per-token loss mask).
 * Returns LSC_OK; the mean loss over unmasked targets is in m->mean_loss. Logits for
 * inference are in m->acts.logits [B*T, V]. */
int llama_forward(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T);
/* The same for training, when only the loss and the gradients matter: where some targets are
 * masked, the classifier runs on the unmasked positions only (the same loss and gradients,
 * far less work with a large vocabulary), and acts.logits then holds those m->head_rows rows
 * in position order. */
int llama_forward_loss(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T);
/* llama_forward_loss that also writes each row's summed loss over its unmasked targets into
 * row_loss[B] (host memory): B independent sequences scored in one forward. */
int llama_forward_row_losses(Llama *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                             double *row_loss);
/* Backward of the last forward (which must have had targets). Accumulates into the gradient
 * blocks (model grads in full mode, adapter grads when LoRA is attached). */
int llama_backward(Llama *m);
/* Zeroes model grads (if any) and attached adapter grads. */
void llama_zero_grad(Llama *m);

/* ---- inference with a key/value cache (core/model/llama_decode.c) ----
 * A decoder feeds tokens of one sequence in chunks (the prompt, then one token at a time),
 * keeping each layer's keys and values, so a step costs one token's work instead of the whole
 * prefix's. Its logits equal llama_forward's on the whole sequence up to float rounding of the
 * softmax sum (tests/ check the greedy tokens are identical). Adapters attached to the model
 * (merged or not, LoRA or DoRA) apply as in llama_forward. */
typedef struct LlamaDecoder {
    Llama *m;            /* not owned */
    int capacity;        /* positions the cache holds (<= seq_len) */
    int pos;             /* tokens fed so far */
    int rows;            /* chunk rows the scratch is sized for */
    Real *k, *v;         /* [L, capacity, NKV*HD] */
    Real *x, *xn, *q, *atty, *mid, *gate, *up, *proj; /* per chunk: [rows, C | qdim | H] */
    Real *logits;        /* [V] of the last token fed */
    int32_t *tokens;     /* device copy of a chunk [rows] */
    Arena arena;         /* owns all of the above */
} LlamaDecoder;

/* One token for each of several sequences in one forward (greedy generation of a batch of
 * examples): the matmuls run on all rows at once, so a step reads the weights once for all
 * of them instead of once per sequence; each row's rotary position, cache and attention are
 * its own decoder's. The scratch is sized for `max_rows` sequences. */
typedef struct LlamaDecodeBatch {
    Llama *m;            /* not owned */
    int max_rows;
    Real *x, *xn, *q, *k, *v, *atty, *mid, *gate, *up, *proj; /* [rows, C | qdim | kvdim | H] */
    Real *logits;        /* [rows, V] */
    int32_t *tokens;     /* device copy [rows] */
    Arena arena;         /* owns all of the above */
} LlamaDecodeBatch;

int llama_decode_batch_create(LlamaDecodeBatch *b, Llama *m, int max_rows);
void llama_decode_batch_free(LlamaDecodeBatch *b);
/* Feeds tokens[i] to decoder ds[i] (each at its own position; every decoder on b's model,
 * none full) for i < n <= max_rows; logits (host, [n, V]) receive each row's next-token
 * logits. Row i equals llama_decoder_feed(ds[i], tokens + i, 1, ...) up to float rounding
 * (the matmuls run on n rows instead of one). */
int llama_decode_batch_step(LlamaDecodeBatch *b, LlamaDecoder *const *ds, const int32_t *tokens,
                            int n, Real *logits);

/* A decoder for up to `capacity` positions (0 = the model's seq_len) on m's backend. */
int llama_decoder_create(LlamaDecoder *d, Llama *m, int capacity);
void llama_decoder_free(LlamaDecoder *d);
/* Forgets the sequence (keeps the memory). */
void llama_decoder_reset(LlamaDecoder *d);
/* Feeds tokens[0..n) at positions pos..pos+n-1; logits (host, [V], may be NULL) receive the
 * last token's logits. LSC_ERR with a sentence if the cache would overflow. */
int llama_decoder_feed(LlamaDecoder *d, const int32_t *tokens, int n, Real *logits);

/* Greedy decoding: extends tokens[0..n_prompt) to n_total tokens with a key/value cache. */
int llama_generate_greedy(Llama *m, int32_t *tokens, int n_prompt, int n_total);
/* Index of the largest of x[0..n) (the first on ties). */
int llama_argmax(const Real *x, int n);

#endif
