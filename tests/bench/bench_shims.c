/* bench_llama's timing shims (see bench_shims.h): the wrappers, the category and shape tallies.
 * Not the report (bench_llama.c prints and writes what they gathered). */
#include "tests/bench/bench_shims.h"

#include <string.h>

const char *const phase_names[N_PHASES] = {"forward", "backward", "optimizer"};
const char *const cat_names[N_CATS] = {
    "matmul base (frozen W)", "matmul classifier", "matmul lora (r=8)", "attention",
    "cross_entropy", "rmsnorm", "rope", "swiglu", "residual", "embedding",
    "copy/zero/transfer", "adamw+norm", "untracked (core/)",
};
const char *const cat_keys[N_CATS] = {
    "matmul_base", "matmul_classifier", "matmul_lora", "attention", "cross_entropy", "rmsnorm",
    "rope", "swiglu", "residual", "embedding", "memory", "adamw", "untracked",
};

BenchProf prof;

#define SHIM_TIME(cat, call)                                \
    do {                                                    \
        const double t0_ = bench_now_s();                         \
        call;                                               \
        prof.seconds[prof.phase][cat] += bench_now_s() - t0_;     \
    } while (0)

static int matmul_category(int M, int N, int K) {
    if (M == prof.lora_rank || N == prof.lora_rank || K == prof.lora_rank) return CAT_MM_LORA;
    if (M == prof.vocab || N == prof.vocab || K == prof.vocab) return CAT_MM_CLS;
    return CAT_MM_BASE;
}

/* Adds a matmul call of dt seconds to its category and its (M, N, K, tA, tB) shape. */
static void matmul_tally(int M, int N, int K, int ta, int tb, double dt) {
    const int cat = matmul_category(M, N, K);
    prof.seconds[prof.phase][cat] += dt;
    int i = 0;
    while (i < prof.n_mm && !(prof.mm[i].M == M && prof.mm[i].N == N && prof.mm[i].K == K &&
                              prof.mm[i].ta == ta && prof.mm[i].tb == tb))
        i++;
    if (i == prof.n_mm) {
        if (i == MAX_MM_SHAPES) return;
        prof.mm[prof.n_mm++] = (MatmulShape){M, N, K, ta, tb, cat, 0, 0.0, 0.0};
    }
    prof.mm[i].calls++;
    prof.mm[i].seconds += dt;
}

static void shim_matmul(Backend *be, Real *c, const Real *a, const Real *b, int M, int N, int K,
                        int ta, int tb, Real alpha, Real beta) {
    const double t0 = bench_now_s();
    prof.orig.matmul(be, c, a, b, M, N, K, ta, tb, alpha, beta);
    matmul_tally(M, N, K, ta, tb, bench_now_s() - t0);
}

/* bf16 matmuls are tallied as shapes with tA = 2 (a rounded to bf16 inside) */
static void shim_matmul_bf16(Backend *be, Real *c, const Real *a, const uint16_t *w, int M, int N,
                             int K, int tw, Real alpha, Real beta) {
    const double t0 = bench_now_s();
    prof.orig.matmul_bf16(be, c, a, w, M, N, K, tw, alpha, beta);
    matmul_tally(M, N, K, 2, tw, bench_now_s() - t0);
}
/* ... and with a already bf16 (tA = 3) */
static void shim_matmul_bf16_rounded(Backend *be, Real *c, const uint16_t *a, const uint16_t *w,
                                     int M, int N, int K, int tw, Real alpha, Real beta) {
    const double t0 = bench_now_s();
    prof.orig.matmul_bf16_rounded(be, c, a, w, M, N, K, tw, alpha, beta);
    matmul_tally(M, N, K, 3, tw, bench_now_s() - t0);
}
/* the frozen-weight forms of the two, tallied alike */
static void shim_matmul_bf16_frozen(Backend *be, Real *c, const Real *a, const uint16_t *w,
                                    BackendPacked **packed, int M, int N, int K, int tw,
                                    Real alpha, Real beta) {
    const double t0 = bench_now_s();
    prof.orig.matmul_bf16_frozen(be, c, a, w, packed, M, N, K, tw, alpha, beta);
    matmul_tally(M, N, K, 2, tw, bench_now_s() - t0);
}
static void shim_matmul_bf16_rounded_frozen(Backend *be, Real *c, const uint16_t *a,
                                            const uint16_t *w, BackendPacked **packed, int M,
                                            int N, int K, int tw, Real alpha, Real beta) {
    const double t0 = bench_now_s();
    prof.orig.matmul_bf16_rounded_frozen(be, c, a, w, packed, M, N, K, tw, alpha, beta);
    matmul_tally(M, N, K, 3, tw, bench_now_s() - t0);
}
static void shim_to_bf16(Backend *be, uint16_t *d, const Real *s, size_t n) {
    SHIM_TIME(CAT_MEMORY, prof.orig.to_bf16(be, d, s, n));
}

static void shim_to_device(Backend *be, void *d, const void *s, size_t n) {
    SHIM_TIME(CAT_MEMORY, prof.orig.to_device(be, d, s, n));
}
static void shim_to_host(Backend *be, void *d, const void *s, size_t n) {
    SHIM_TIME(CAT_MEMORY, prof.orig.to_host(be, d, s, n));
}
static void shim_copy(Backend *be, void *d, const void *s, size_t n) {
    SHIM_TIME(CAT_MEMORY, prof.orig.copy(be, d, s, n));
}
static void shim_zero(Backend *be, void *d, size_t n) {
    SHIM_TIME(CAT_MEMORY, prof.orig.zero(be, d, n));
}
static void shim_embedding_forward(Backend *be, Real *out, const int32_t *tok, const Real *tab,
                                   int N, int C) {
    SHIM_TIME(CAT_EMBED, prof.orig.embedding_forward(be, out, tok, tab, N, C));
}
static void shim_embedding_backward(Backend *be, Real *dtab, const Real *dout, const int32_t *tok,
                                    int N, int C) {
    SHIM_TIME(CAT_EMBED, prof.orig.embedding_backward(be, dtab, dout, tok, N, C));
}
static void shim_rmsnorm_forward(Backend *be, Real *out, Real *rstd, const Real *x, const Real *w,
                                 int N, int C, float eps) {
    SHIM_TIME(CAT_RMSNORM, prof.orig.rmsnorm_forward(be, out, rstd, x, w, N, C, eps));
}
static void shim_rmsnorm_backward(Backend *be, Real *dx, Real *dw, const Real *dout, const Real *x,
                                  const Real *w, const Real *rstd, int N, int C) {
    SHIM_TIME(CAT_RMSNORM, prof.orig.rmsnorm_backward(be, dx, dw, dout, x, w, rstd, N, C));
}
static void shim_rope_forward(Backend *be, Real *x, const Real *c, const Real *s, int B, int T,
                              int NH, int HD, int pos0, RopeStyle st) {
    SHIM_TIME(CAT_ROPE, prof.orig.rope_forward(be, x, c, s, B, T, NH, HD, pos0, st));
}
static void shim_rope_backward(Backend *be, Real *dx, const Real *c, const Real *s, int B, int T,
                               int NH, int HD, int pos0, RopeStyle st) {
    SHIM_TIME(CAT_ROPE, prof.orig.rope_backward(be, dx, c, s, B, T, NH, HD, pos0, st));
}
static void shim_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                   const Real *v, int B, int T, int NH, int NKV, int HD) {
    SHIM_TIME(CAT_ATTENTION, prof.orig.attention_forward(be, out, att, q, k, v, B, T, NH, NKV, HD));
}
static void shim_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                    const Real *dout, const Real *q, const Real *k, const Real *v,
                                    const Real *att, int B, int T, int NH, int NKV, int HD) {
    SHIM_TIME(CAT_ATTENTION, prof.orig.attention_backward(be, dq, dk, dv, datt, dout, q, k, v, att,
                                                          B, T, NH, NKV, HD));
}
static void shim_swiglu_forward(Backend *be, Real *out, const Real *g, const Real *u, size_t n) {
    SHIM_TIME(CAT_SWIGLU, prof.orig.swiglu_forward(be, out, g, u, n));
}
static void shim_swiglu_backward(Backend *be, Real *dg, Real *du, const Real *dout, const Real *g,
                                 const Real *u, size_t n) {
    SHIM_TIME(CAT_SWIGLU, prof.orig.swiglu_backward(be, dg, du, dout, g, u, n));
}
static void shim_residual_forward(Backend *be, Real *out, const Real *a, const Real *b, size_t n) {
    SHIM_TIME(CAT_RESIDUAL, prof.orig.residual_forward(be, out, a, b, n));
}
static void shim_residual_backward(Backend *be, Real *da, Real *db, const Real *dout, size_t n) {
    SHIM_TIME(CAT_RESIDUAL, prof.orig.residual_backward(be, da, db, dout, n));
}
static void shim_ce_forward(Backend *be, Real *losses, Real *lse, const Real *logits,
                            const int32_t *tg, int N, int V) {
    SHIM_TIME(CAT_CE, prof.orig.cross_entropy_forward(be, losses, lse, logits, tg, N, V));
}
static void shim_ce_backward(Backend *be, Real *dl, const Real *logits, const Real *lse,
                             const int32_t *tg, const Real *dloss, int N, int V) {
    SHIM_TIME(CAT_CE, prof.orig.cross_entropy_backward(be, dl, logits, lse, tg, dloss, N, V));
}
static void shim_ce_backward_bf16(Backend *be, uint16_t *dl, const Real *logits, const Real *lse,
                                  const int32_t *tg, const Real *dloss, int N, int V) {
    SHIM_TIME(CAT_CE, prof.orig.cross_entropy_backward_bf16(be, dl, logits, lse, tg, dloss, N, V));
}
static void shim_ce_forward_backward(Backend *be, Real *losses, Real *lse, Real *dl,
                                     uint16_t *dl16, const Real *logits, const int32_t *tg,
                                     const Real *dloss, int N, int V) {
    SHIM_TIME(CAT_CE, prof.orig.cross_entropy_forward_backward(be, losses, lse, dl, dl16, logits,
                                                               tg, dloss, N, V));
}
static void shim_adamw_update(Backend *be, Real *p, const Real *g, Real *m, Real *v, size_t n,
                              float lr, float b1, float b2, float eps, float wd, float gs,
                              float bc1, float bc2) {
    SHIM_TIME(CAT_ADAMW, prof.orig.adamw_update(be, p, g, m, v, n, lr, b1, b2, eps, wd, gs, bc1, bc2));
}
static double shim_sum_squares(Backend *be, const Real *x, size_t n) {
    double r;
    SHIM_TIME(CAT_ADAMW, r = prof.orig.sum_squares(be, x, n));
    return r;
}
static void shim_scale(Backend *be, Real *x, size_t n, float s) {
    SHIM_TIME(CAT_ADAMW, prof.orig.scale(be, x, n, s));
}
static void shim_axpy(Backend *be, Real *y, const Real *x, size_t n, float s) {
    SHIM_TIME(CAT_ADAMW, prof.orig.axpy(be, y, x, n, s));
}

void shims_install(Backend *be, int vocab, int lora_rank) {
    memset(&prof, 0, sizeof prof);
    prof.orig = *be;
    prof.vocab = vocab;
    prof.lora_rank = lora_rank;
    be->to_device = shim_to_device;
    be->to_host = shim_to_host;
    be->copy = shim_copy;
    be->zero = shim_zero;
    be->matmul = shim_matmul;
    if (be->matmul_bf16) be->matmul_bf16 = shim_matmul_bf16;
    if (be->matmul_bf16_rounded) be->matmul_bf16_rounded = shim_matmul_bf16_rounded;
    if (be->matmul_bf16_frozen) be->matmul_bf16_frozen = shim_matmul_bf16_frozen;
    if (be->matmul_bf16_rounded_frozen)
        be->matmul_bf16_rounded_frozen = shim_matmul_bf16_rounded_frozen;
    if (be->to_bf16) be->to_bf16 = shim_to_bf16;
    be->embedding_forward = shim_embedding_forward;
    be->embedding_backward = shim_embedding_backward;
    be->rmsnorm_forward = shim_rmsnorm_forward;
    be->rmsnorm_backward = shim_rmsnorm_backward;
    be->rope_forward = shim_rope_forward;
    be->rope_backward = shim_rope_backward;
    be->attention_forward = shim_attention_forward;
    be->attention_backward = shim_attention_backward;
    be->swiglu_forward = shim_swiglu_forward;
    be->swiglu_backward = shim_swiglu_backward;
    be->residual_forward = shim_residual_forward;
    be->residual_backward = shim_residual_backward;
    be->cross_entropy_forward = shim_ce_forward;
    be->cross_entropy_backward = shim_ce_backward;
    if (be->cross_entropy_backward_bf16) be->cross_entropy_backward_bf16 = shim_ce_backward_bf16;
    if (be->cross_entropy_forward_backward)
        be->cross_entropy_forward_backward = shim_ce_forward_backward;
    be->adamw_update = shim_adamw_update;
    be->sum_squares = shim_sum_squares;
    be->scale = shim_scale;
    be->axpy = shim_axpy;
}

void shims_remove(Backend *be) { *be = prof.orig; }

