/* Dense matmul through oneDNN's matmul primitive: f32 x f32 -> f32, and bf16 x bf16 -> f32
 * for a bf16 frozen base (fp32 accumulation; oneDNN 2.6 has no f32 x bf16 matmul, so the
 * caller rounds the activations to bf16 first: matmul.c). One primitive per (M, N, K,
 * trans_a, trans_b, alpha, beta, threads, data type), kept in the CPU backend's context (a
 * small LRU cache).
 * Not the dispatcher (matmul.c chooses oneDNN or OpenBLAS) and not built in double.
 *
 * Why each key field: alpha is baked into the primitive as a constant output scale, because a
 * runtime scale (DNNL_RUNTIME_F32_VAL) makes oneDNN 2.6 fall back from its brgemm kernels
 * (brg:avx512_core) to gemm:jit; beta is a sum post-op (dst = alpha * a.b + beta * dst),
 * also fixed at creation; the thread count, because a primitive plans its blocking for the
 * OpenMP thread count it was created under. Debian's oneDNN uses the OpenMP runtime, so it
 * runs on the same libgomp pool as lorasc's kernels (one pool; nothing spins against it).
 *
 * Frozen weights (cpu_dnnl_matmul_packed, cpu_dnnl_matmul_bf16_packed): a primitive built
 * with the weights' layout left to oneDNN (format "any") reads them in its blocked layout;
 * given a plain weight it copies it into that layout on every call: bf16 10-25% of a
 * base-shaped product here (1024 x 288 x 288 ... 768: 843-1011 -> 1074-1105 GFLOP/s; the
 * classifier's dx 878 -> 985), f32 forward products 10-18% (456-492 -> 538-555; the
 * classifier's forward 475 -> 511), f32 backward ones 0-3%. The copy is made once, into the
 * caller's CpuPacked, and reused while the caller keeps it. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernel_assert.h"

enum { DNNL_CACHE_SLOTS = 256 }; /* primitives kept; the least recently used one goes */

typedef struct DnnlKey {
    int M, N, K, trans_a, trans_b, threads;
    uint32_t alpha_bits, beta_bits;
    int bf16;   /* 1: a and b are bf16 (c stays f32) */
    int packed; /* 1: b in the layout oneDNN picks (a packed frozen weight) */
} DnnlKey;

typedef struct DnnlEntry {
    DnnlKey key;
    dnnl_primitive_t prim;                /* NULL: free slot */
    dnnl_memory_t mem_a, mem_b, mem_c;    /* descriptors of the primitive; handles set per call */
    dnnl_memory_desc_t md_b;              /* packed: the weights' layout oneDNN chose */
    unsigned long long last_use;
} DnnlEntry;

/* A frozen bf16 weight in a primitive's blocked layout (kernels/backend.h, BackendPacked) */
struct BackendPacked {
    int N, K, trans_b;
    dnnl_memory_desc_t md; /* the layout data is in */
    void *data;
};

struct CpuDnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    DnnlEntry slots[DNNL_CACHE_SLOTS];
    unsigned long long clock;
};

CpuDnnl *cpu_dnnl_create(void) {
    CpuDnnl *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (dnnl_engine_create(&d->engine, dnnl_cpu, 0) != dnnl_success) {
        free(d);
        return NULL;
    }
    if (dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(d->engine);
        free(d);
        return NULL;
    }
    return d;
}

static void dnnl_entry_clear(DnnlEntry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->mem_a) dnnl_memory_destroy(e->mem_a);
    if (e->mem_b) dnnl_memory_destroy(e->mem_b);
    if (e->mem_c) dnnl_memory_destroy(e->mem_c);
    memset(e, 0, sizeof *e);
}

void cpu_dnnl_destroy(CpuDnnl *d) {
    if (!d) return;
    for (int i = 0; i < DNNL_CACHE_SLOTS; i++) dnnl_entry_clear(&d->slots[i]);
    dnnl_stream_destroy(d->stream);
    dnnl_engine_destroy(d->engine);
    free(d);
}

static uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static int dnnl_key_equal(const DnnlKey *x, const DnnlKey *y) {
    return x->M == y->M && x->N == y->N && x->K == y->K && x->trans_a == y->trans_a &&
           x->trans_b == y->trans_b && x->threads == y->threads &&
           x->alpha_bits == y->alpha_bits && x->beta_bits == y->beta_bits && x->bf16 == y->bf16 &&
           x->packed == y->packed;
}

/* Row-major [rows, cols] with the given strides (a transposed operand is a [rows, cols] view
 * of the stored [cols, rows] matrix: strides {1, rows}). */
static dnnl_status_t dnnl_md_init(dnnl_memory_desc_t *md, int rows, int cols, int transposed,
                                  dnnl_data_type_t type) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {transposed ? 1 : cols, transposed ? rows : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides);
}

/* Builds the primitive and its three memory objects (no data handles yet) into e. */
static int dnnl_entry_build(CpuDnnl *d, DnnlEntry *e, const DnnlKey *k, float alpha, float beta) {
    dnnl_memory_desc_t md_a, md_b, md_c;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_data_type_t in_type = k->bf16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_dims_t dims_b = {k->K, k->N};
    int ok = dnnl_md_init(&md_a, k->M, k->K, k->trans_a, in_type) == dnnl_success &&
             (k->packed ? dnnl_memory_desc_init_by_tag(&md_b, 2, dims_b, in_type, dnnl_format_tag_any)
                        : dnnl_md_init(&md_b, k->K, k->N, k->trans_b, in_type)) == dnnl_success &&
             dnnl_md_init(&md_c, k->M, k->N, 0, dnnl_f32) == dnnl_success &&
             dnnl_matmul_desc_init(&desc, &md_a, &md_b, NULL, &md_c) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && alpha != 1.0f)
        ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
    if (ok && beta != 0.0f)
        ok = dnnl_post_ops_create(&post_ops) == dnnl_success &&
             dnnl_post_ops_append_sum(post_ops, beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, d->engine, NULL) == dnnl_success &&
         dnnl_primitive_create(&e->prim, pd) == dnnl_success &&
         dnnl_memory_create(&e->mem_a, &md_a, d->engine, DNNL_MEMORY_NONE) == dnnl_success;
    if (ok) e->md_b = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    ok = ok && dnnl_memory_create(&e->mem_b, &e->md_b, d->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_c, &md_c, d->engine, DNNL_MEMORY_NONE) == dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        dnnl_entry_clear(e);
        return -1;
    }
    e->key = *k;
    return 0;
}

/* The cached primitive for k, built on a miss (into a free slot, else the least recently
 * used one); NULL when oneDNN cannot build it. */
static DnnlEntry *dnnl_entry_get(CpuDnnl *d, CpuGemmStats *st, const DnnlKey *k, float alpha,
                                 float beta) {
    DnnlEntry *victim = NULL;
    for (int i = 0; i < DNNL_CACHE_SLOTS; i++) {
        DnnlEntry *e = &d->slots[i];
        if (e->prim && dnnl_key_equal(&e->key, k)) return e;
        if (!victim || (victim->prim && (!e->prim || e->last_use < victim->last_use))) victim = e;
    }
    if (victim->prim) {
        dnnl_entry_clear(victim);
        st->onednn_evictions++;
    }
    if (dnnl_entry_build(d, victim, k, alpha, beta) != 0) return NULL;
    st->onednn_primitives++;
    return victim;
}

/* Runs entry e's primitive on (a, b, c), b in the layout e was built for. */
static int dnnl_execute(CpuDnnl *d, DnnlEntry *e, float *c, const void *a, const void *b) {
    /* oneDNN only reads SRC and WEIGHTS: the casts drop const for its generic setter */
    if (dnnl_memory_set_data_handle(e->mem_a, (void *)a) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_b, (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_c, c) != dnnl_success)
        return -1;
    const dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, e->mem_a}, {DNNL_ARG_WEIGHTS, e->mem_b}, {DNNL_ARG_DST, e->mem_c}};
    /* a primitive that was built runs (it may have written c by the time it fails, so a
     * failure here cannot fall back to OpenBLAS: it is a broken invariant) */
    KERNEL_ASSERT(dnnl_primitive_execute(e->prim, d->stream, 3, args) == dnnl_success);
    KERNEL_ASSERT(dnnl_stream_wait(d->stream) == dnnl_success);
    return 0;
}

/* Runs the cached primitive of k on (a, b, c). */
static int dnnl_run(CpuDnnl *d, CpuGemmStats *st, const DnnlKey *k, float *c, const void *a,
                    const void *b, float alpha, float beta) {
    DnnlEntry *e = dnnl_entry_get(d, st, k, alpha, beta);
    if (!e) return -1;
    e->last_use = ++d->clock;
    return dnnl_execute(d, e, c, a, b);
}

int cpu_dnnl_matmul(CpuDnnl *d, CpuGemmStats *st, float *c, const float *a, const float *b,
                    int M, int N, int K, int trans_a, int trans_b, float alpha, float beta) {
    const DnnlKey k = {M, N, K, trans_a ? 1 : 0, trans_b ? 1 : 0, omp_get_max_threads(),
                       float_bits(alpha), float_bits(beta), 0, 0};
    return dnnl_run(d, st, &k, c, a, b, alpha, beta);
}

int cpu_dnnl_matmul_bf16(CpuDnnl *d, CpuGemmStats *st, float *c, const uint16_t *a,
                         const uint16_t *b, int M, int N, int K, int trans_b, float alpha,
                         float beta) {
    const DnnlKey k = {M, N, K, 0, trans_b ? 1 : 0, omp_get_max_threads(), float_bits(alpha),
                       float_bits(beta), 1, 0};
    return dnnl_run(d, st, &k, c, a, b, alpha, beta);
}

/* *packed: b copied into the layout of k's primitive e (a reorder from b as stored). */
static int dnnl_pack(CpuDnnl *d, const DnnlEntry *e, const DnnlKey *k, const void *b,
                     CpuPacked **packed) {
    dnnl_memory_desc_t md_plain;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    CpuPacked *p = calloc(1, sizeof *p);
    const size_t bytes = dnnl_memory_desc_get_size(&e->md_b);
    if (p) p->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    int ok = p && p->data &&
             dnnl_md_init(&md_plain, k->K, k->N, k->trans_b, k->bf16 ? dnnl_bf16 : dnnl_f32) ==
                 dnnl_success &&
             dnnl_reorder_primitive_desc_create(&rpd, &md_plain, d->engine, &e->md_b, d->engine,
                                                NULL) == dnnl_success &&
             dnnl_primitive_create(&reorder, rpd) == dnnl_success &&
             dnnl_memory_create(&from, &md_plain, d->engine, (void *)b) == dnnl_success &&
             dnnl_memory_create(&to, &e->md_b, d->engine, p->data) == dnnl_success;
    if (ok) {
        const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        ok = dnnl_primitive_execute(reorder, d->stream, 2, args) == dnnl_success &&
             dnnl_stream_wait(d->stream) == dnnl_success;
    }
    if (to) dnnl_memory_destroy(to);
    if (from) dnnl_memory_destroy(from);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (!ok) {
        cpu_dnnl_packed_free(p);
        return -1;
    }
    p->N = k->N, p->K = k->K, p->trans_b = k->trans_b, p->md = e->md_b;
    *packed = p;
    return 0;
}

/* The packed-weight matmul of key k (bf16 or f32 operands); b as stored where the primitive
 * for this M wants another layout than *packed's. */
static int dnnl_run_packed(CpuDnnl *d, CpuGemmStats *st, const DnnlKey *k, float *c,
                           const void *a, const void *b, CpuPacked **packed, float alpha,
                           float beta) {
    DnnlEntry *e = dnnl_entry_get(d, st, k, alpha, beta);
    if (!e) return -1;
    e->last_use = ++d->clock;
    CpuPacked *p = *packed;
    if (p && (p->N != k->N || p->K != k->K || p->trans_b != k->trans_b ||
              !dnnl_memory_desc_equal(&p->md, &e->md_b))) {
        DnnlKey plain = *k;
        plain.packed = 0;
        return dnnl_run(d, st, &plain, c, a, b, alpha, beta);
    }
    if (!p && dnnl_pack(d, e, k, b, packed) != 0) return -1;
    return dnnl_execute(d, e, c, a, (*packed)->data);
}

int cpu_dnnl_matmul_bf16_packed(CpuDnnl *d, CpuGemmStats *st, float *c, const uint16_t *a,
                                const uint16_t *b, CpuPacked **packed, int M, int N, int K,
                                int trans_b, float alpha, float beta) {
    const DnnlKey k = {M, N, K, 0, trans_b ? 1 : 0, omp_get_max_threads(), float_bits(alpha),
                       float_bits(beta), 1, 1};
    return dnnl_run_packed(d, st, &k, c, a, b, packed, alpha, beta);
}

int cpu_dnnl_matmul_packed(CpuDnnl *d, CpuGemmStats *st, float *c, const float *a,
                           const float *b, CpuPacked **packed, int M, int N, int K, int trans_b,
                           float alpha, float beta) {
    const DnnlKey k = {M, N, K, 0, trans_b ? 1 : 0, omp_get_max_threads(), float_bits(alpha),
                       float_bits(beta), 0, 1};
    return dnnl_run_packed(d, st, &k, c, a, b, packed, alpha, beta);
}

void cpu_dnnl_packed_free(CpuPacked *p) {
    if (!p) return;
    free(p->data);
    free(p);
}
