/* The Vision Transformer (ViT, Dosovitskiy et al. 2021; CLIP's vision tower has the same
 * shape): explicit forward and backward per layer, like core/model/llama.h.
 *   patches = patchify(image) [B*Np, C*P*P];  e = patches Wp^T + bp        (conv as matmul)
 *   x0 = [cls; e] + pos                          [B, T, D], T = 1 + Np
 *   (CLIP: x0 = LayerNorm_pre(x0))
 *   per block: x = x + attn(LN1(x)) (q, k, v, o with biases, non-causal heads)
 *              x = x + fc2(gelu(fc1(LN2(x))))
 *   logits = head(LN_final(x[:, 0]))              [B, K], loss = mean cross-entropy.
 * Two training modes share one code path, as for Llama:
 *  - full: gradients for every weight;
 *  - LoRA: adapters attached (default targets q and v), the base frozen; the classification
 *    head is still trained in full (PEFT's modules_to_save): its gradient lives in its own
 *    block, head_grads, in this mode.
 * LoRA slots: LORA_Q/K/V/O for attention, LORA_UP = fc1 and LORA_DOWN = fc2 (LORA_GATE is
 * not a ViT matrix). Biases are added after the adapter (and after DoRA's scaling), as PEFT
 * does with a base layer's bias.
 * Not here: checkpoint readers (Hugging Face safetensors), image datasets. */
#ifndef LORASC_VIT_H
#define LORASC_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/model/lora.h"
#include "core/model/precision.h"
#include "kernels/backend.h"

typedef struct ViTConfig {
    int image_size;   /* H = W */
    int patch_size;   /* P; image_size % P == 0 */
    int channels;     /* C_in (3 RGB, 1 grey) */
    int dim;          /* D */
    int n_layers;     /* L */
    int n_heads;      /* NH; D % NH == 0 */
    int mlp_dim;      /* M */
    int n_classes;    /* K */
    float norm_eps;   /* LayerNorm epsilon (HF ViT 1e-12, CLIP 1e-5) */
    GeluKind gelu;    /* GELU_ERF for HF ViT, GELU_QUICK for CLIP */
    int pre_norm;     /* 1: CLIP's LayerNorm on the embeddings before the first block
                       * ("pre_layrnorm"); 0: HF ViT */
    int patch_bias;   /* 1: the patch embedding has a bias (HF ViT); 0: none (CLIP) */
} ViTConfig;

/* At most 2^36 parameters (256 GiB of fp32 weights), checked before anything is allocated. */
#define VIT_MAX_PARAMS ((size_t)1 << 36)

/* Returns LSC_OK or LSC_ERR with a sentence naming the bad field (also a parameter count
 * above VIT_MAX_PARAMS). */
int vit_config_validate(const ViTConfig *c);
/* Patches per image, (image_size / patch_size)^2, and tokens per image, 1 + that. */
int vit_num_patches(const ViTConfig *c);
int vit_seq_len(const ViTConfig *c);

enum {
    VIT_PATCH_W = 0, /* [D, C*P*P] (torch Conv2d weight [D, C, P, P] flattened) */
    VIT_PATCH_B,     /* [D]; size 0 without patch_bias */
    VIT_CLS,         /* [D] class token */
    VIT_POS,         /* [T, D] position embeddings, row 0 for the class token */
    VIT_LN_PRE_W,    /* [D]; size 0 without pre_norm */
    VIT_LN_PRE_B,    /* [D]; size 0 without pre_norm */
    VIT_LN1_W,       /* [L, D] */
    VIT_LN1_B,       /* [L, D] */
    VIT_WQ,          /* [L, D, D] */
    VIT_BQ,          /* [L, D] */
    VIT_WK,          /* [L, D, D] */
    VIT_BK,          /* [L, D] */
    VIT_WV,          /* [L, D, D] */
    VIT_BV,          /* [L, D] */
    VIT_WO,          /* [L, D, D] */
    VIT_BO,          /* [L, D] */
    VIT_LN2_W,       /* [L, D] */
    VIT_LN2_B,       /* [L, D] */
    VIT_W1,          /* [L, M, D] fc1 */
    VIT_B1,          /* [L, M] */
    VIT_W2,          /* [L, D, M] fc2 */
    VIT_B2,          /* [L, D] */
    VIT_LNF_W,       /* [D] final LayerNorm */
    VIT_LNF_B,       /* [D] */
    VIT_HEAD_W,      /* [K, D] classification head */
    VIT_HEAD_B,      /* [K] (directly after HEAD_W: the head is one contiguous run) */
    VIT_NUM_PARAM_TENSORS
};

typedef struct ViTWeights {
    Real *tensors[VIT_NUM_PARAM_TENSORS]; /* pointers into one block; NULL for size-0 tensors */
} ViTWeights;

/* Short names ("patch_w", "wq", "head_b", ...): the golden files' record names. */
const char *vit_param_name(int tensor);
/* Tensor index for a name from vit_param_name, or -1. */
int vit_param_index(const char *name);
void vit_param_sizes(const ViTConfig *c, size_t sizes[VIT_NUM_PARAM_TENSORS]);

/* Activations for one step at batch B, carved from one arena. BT = B*T rows. */
typedef struct ViTActs {
    Real *images;    /* [B, C, H, W] device copy of the input */
    Real *patches;   /* [B*Np, C*P*P] */
    Real *pemb;      /* [B*Np, D] patch embeddings; their gradient in backward */
    Real *x0;        /* [BT, D] embeddings before LN_pre (pre_norm only) */
    Real *mean0, *rstd0; /* [BT] (pre_norm only) */
    Real *resid;     /* [L+1, BT, D] residual stream entering each block (and leaving the last) */
    Real *ln1;       /* [L, BT, D] */
    Real *mean1, *rstd1; /* [L, BT] */
    Real *q, *k, *v; /* [L, BT, D] ([B, T, NH, HD]) */
    Real *att;       /* [L, B, NH, T, T] */
    Real *atty;      /* [L, BT, D] attention output before wo */
    Real *resid_mid; /* [L, BT, D] */
    Real *ln2;       /* [L, BT, D] */
    Real *mean2, *rstd2; /* [L, BT] */
    Real *fc1;       /* [L, BT, M] before GELU */
    Real *act;       /* [L, BT, M] after GELU */
    Real *cls;       /* [B, D] class-token rows of the last residual */
    Real *lnf;       /* [B, D] */
    Real *meanf, *rstdf; /* [B] */
    Real *logits;    /* [B, K]; overwritten by dlogits in backward */
    Real *losses, *lse, *dloss; /* [B] */
    Real *proj;      /* [BT, D] o / fc2 projection before the residual add; its gradient */
    /* backward scratch */
    Real *dresid;    /* [BT, D] */
    Real *dxn;       /* [BT, D] */
    Real *dq, *dk, *dv; /* [BT, D] */
    Real *datt;      /* [B, NH, T, T] */
    Real *datty;     /* [BT, D] */
    Real *dfc1;      /* [BT, M] */
    Real *dact;      /* [BT, M] */
    Real *dcls;      /* [B, D] */
    uint16_t *x16;     /* [BT, D] a bf16 base's ln1 output rounded once for q, k, v (NULL in
                        * fp32) */
    uint16_t *store16; /* [L, a layer's stored activations] in bf16 (acts_precision bf16;
                        * NULL otherwise): vit.c's stored_acts gives the layout */
} ViTActs;

typedef struct ViT {
    ViTConfig config;
    Backend *be;
    ViTWeights w;
    Real *params;                 /* one block, sizes from param_sizes */
    size_t param_sizes[VIT_NUM_PARAM_TENSORS];
    size_t num_params;
    ViTWeights dw;                /* same layout as w; NULL until vit_enable_full_grads */
    Real *grads;
    /* The head as one run [K*D + K] (weight then bias) of params, and its gradient: inside
     * grads in full mode, else its own block (allocated by vit_create) so LoRA training
     * trains the head too. Zeroed by vit_zero_grad; NULL-free always. */
    Real *head_params;
    Real *head_grads;
    size_t head_size;             /* K*D + K */
    int train_head;               /* 1 (default): LoRA mode computes head gradients */
    LoraAdapters *lora;           /* attached adapters (not owned), or NULL */
    ViTActs acts;
    Arena acts_arena;
    int32_t *labels;              /* device copy [B] */
    int B;                        /* current activation capacity */
    /* Stored activations (vit_set_activations), as a Llama's (core/model/llama.h): bf16 keeps
     * each layer's input, ln1, q, k, v, atty, mid, ln2, fc1 and act in bf16 between forward
     * and backward, the layers computing through one fp32 layer; att and the norms' mean and
     * rstd stay fp32. Default fp32. */
    ModelPrecision acts_precision;
    int acts_carved16;            /* the arena is carved with the bf16 store */
    double mean_loss;             /* of the last forward with labels */
    int n_loss_rows;              /* labels >= 0 in the last forward */
    double *loss_out;             /* backend memory, or NULL (default): as Llama's loss_out (a
                                   * training step's mean loss stays on the device) */
    Real *head_grad_own;          /* private: the LoRA-mode head gradient block */
    /* A bf16 frozen base (vit_set_precision; core/model/vit_bf16.c): the encoder matrices
     * (wq wk wv wo w1 w2) in w16, their fp32 tensors in w NULL except the fp32 masters of
     * adapted targets (separate blocks); params holds the rest (patch embedding, biases,
     * norms, head). */
    ModelPrecision precision;
    uint16_t *w16[VIT_NUM_PARAM_TENSORS];
    uint16_t *base16;
    size_t params_len;            /* Reals in params (num_params in fp32) */
    unsigned stale;               /* LORA_BIT of targets whose bf16 copy lags its master */
} ViT;

/* ---- precision (core/model/vit_bf16.c), as for a Llama (core/model/llama.h) ----
 * bf16: the encoder matrices rounded to bf16, used through matmul_bf16; refused with full
 * gradients, adapters attached, or a backend without matmul_bf16. fp32 widens back. */
int vit_set_precision(ViT *m, ModelPrecision p);
/* How the activations a backward reads are stored (ViT.acts_precision): fp32 (default) or
 * bf16; takes effect at the next forward. Refused on a backend without bf16 conversions. */
int vit_set_activations(ViT *m, ModelPrecision p);
/* bf16: fp32 masters (the bf16 values widened) for the targets of the LORA_BIT mask. */
int vit_ensure_masters(ViT *m, unsigned targets);
/* The writable master of a target, its bf16 copy marked stale (refreshed before a forward). */
Real *vit_target_master(ViT *m, int target, int layer);
void vit_refresh_bf16(ViT *m);
/* Tensor `tensor` in fp32: the model's own (owned 0) or a widened copy to free (owned 1). */
int vit_tensor_fp32(const ViT *m, int tensor, Real **ptr, int *owned);
/* Sum of squares of every weight that can change (fp32 block and masters). */
double vit_weight_sum_squares(ViT *m);
/* The tensor (VIT_WQ ...) that target t adapts, -1 for none (gate). */
int vit_tensor_of_target(int target);

/* Allocates parameters (zeroed) for c on be. */
int vit_create(ViT *m, Backend *be, const ViTConfig *c);
void vit_free(ViT *m);

/* Random initialisation for pretraining: normal(0, 0.02) for matrices, class token and
 * position embeddings (as HF ViT's truncated normal, untruncated), zero biases, LayerNorm
 * weights 1. */
void vit_init_random(ViT *m, uint64_t seed);

/* A new classification head: weights normal(0, 0.02) drawn from seed, bias zero. */
int vit_init_head(ViT *m, uint64_t seed);
/* The head set to head[K*D + K] (host: the weight [K, D] row-major, then the bias). */
int vit_set_head(ViT *m, const Real *head);
/* m = a copy of src on src's backend (weights only: no gradients, adapters or optimiser). */
int vit_clone(ViT *m, const ViT *src);
/* m = src with a new head for n_classes classes (vit_init_head(head_seed)); every other weight
 * is copied, as a transfer to a new label set does. */
int vit_clone_new_head(ViT *m, const ViT *src, int n_classes, uint64_t head_seed);

/* Allocates the gradient block: after this, backward computes gradients of every weight. */
int vit_enable_full_grads(ViT *m);
/* Attaches adapters created from vit_lora_shapes (NULL detaches). Returns LSC_ERR (with a
 * sentence) when they do not fit the model or target LORA_GATE. A DoRA adapter without
 * magnitudes gets them from this model's weights. */
int vit_attach_lora(ViT *m, LoraAdapters *lora);
/* The (in, out) dimensions of each LoRA target (GATE is 0 x 0: not a ViT matrix). */
void vit_lora_shapes(const ViTConfig *c, int in_dim[LORA_NUM_TARGETS],
                     int out_dim[LORA_NUM_TARGETS]);
/* The base weight [out, in] that target t adapts in layer l (NULL for LORA_GATE). */
Real *vit_target_weight(ViT *m, int target, int layer);
/* DoRA magnitudes from this model's weights (see llama_init_lora_magnitudes). */
void vit_init_lora_magnitudes(ViT *m);
/* Merges the adapters into the base (sign +1) or takes them out again (-1). */
void vit_merge_lora(ViT *m, float sign);

/* Forward on images[B, C, H, W] (host, already normalised). labels[B] may be NULL
 * (inference); a label < 0 is left out of the loss. Logits [B, K] are in m->acts.logits,
 * the mean loss over labelled rows in m->mean_loss. */
int vit_forward(ViT *m, const Real *images, const int32_t *labels, int B);
/* Backward of the last forward (which had labels): accumulates into grads (full mode) or
 * into the adapter's grads and head_grads (LoRA mode). */
int vit_backward(ViT *m);
/* Zeroes model grads, head grads and attached adapter grads. */
void vit_zero_grad(ViT *m);
/* argmax of each row of the last logits into pred[B] (host); returns the number of rows
 * whose prediction equals labels[b] when labels is not NULL, else 0; LSC_ERR (< 0, the
 * device's sentence in error_last()) when the device failed. */
int vit_predict(ViT *m, int32_t *pred, const int32_t *labels);
/* The last forward's logits [B, K] into host; LSC_ERR when the device failed. */
int vit_read_logits(ViT *m, Real *host);

#endif
