/* A Llama model's frozen matrices packed in the backend's own layout (llama.h, packed): the
 * slots, how many directions of products get packed copies, and dropping copies whose matrix
 * changed. The backend makes a copy on its first product (matmul_frozen in fp32,
 * matmul_bf16_frozen in bf16; the CPU: oneDNN's blocked layout, the same bits as the plain
 * product); llama_weight_matmul asks for the slots. A copy lives until its matrix is written:
 * every write of a base matrix in a LoRA run goes through llama_target_master (the cascade's
 * merges and noise, a run's resumed state) or snapshot_restore, which mark the target stale, and
 * llama_refresh_copies drops its copies before the next forward; full training (every weight
 * changes every step) packs nothing, and re-initialising the weights drops every copy. */
#include <stdlib.h>
#include <unistd.h>

#include "core/model/llama.h"
#include "core/model/llama_internal.h"

/* Elements of the matrices a product reads as frozen: the layers' and the classifier. */
static size_t matrix_elements(const Llama *m) {
    static const int matrices[] = {LLAMA_WQ, LLAMA_WK, LLAMA_WV, LLAMA_WO,
                                   LLAMA_W1, LLAMA_W2, LLAMA_W3};
    size_t n = m->param_sizes[LLAMA_TOKEN_EMBEDDING]; /* the classifier's size, tied or not */
    for (size_t i = 0; i < sizeof matrices / sizeof *matrices; i++) n += m->param_sizes[matrices[i]];
    return n;
}

/* How many directions of copies, each as large as the matrices (`bytes`), fit: while they
 * take at most half the memory the machine has free now (so a model that needs the memory a
 * bf16 base saves keeps it). The CPU backend, the one that packs, keeps them in host memory. */
static int directions_that_fit(size_t bytes, int wanted) {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    const double half_free = 0.5 * (double)pages * (double)page;
    int dirs = wanted;
    while (dirs > 0 && (double)dirs * (double)bytes > half_free) dirs--;
    return dirs;
}

/* Decides, once per precision and training mode, whether and in how many directions to pack:
 * bf16 both directions (10-25% faster products either way), fp32 the forward's (10-18%; the
 * backward's gain 0-3%), none with full gradients or a backend without the op. */
static void decide(Llama *m) {
    m->pack_decided = 1;
    m->pack_dirs = 0;
    const int bf16 = m->precision == PRECISION_BF16;
    if (m->grads || (bf16 ? !m->be->matmul_bf16_frozen : !m->be->matmul_frozen)) return;
    const size_t bytes = matrix_elements(m) * (bf16 ? sizeof(uint16_t) : sizeof(Real));
    const int dirs = directions_that_fit(bytes, bf16 ? 2 : 1);
    const size_t slots = (size_t)LLAMA_NUM_PARAM_TENSORS * (size_t)m->config.n_layers * 2;
    if (dirs && (m->packed = calloc(slots, sizeof *m->packed)) != NULL) m->pack_dirs = dirs;
}

BackendPacked **llama_packed_slot(Llama *m, int tensor, int l, int backward) {
    if (!m->pack_decided) decide(m);
    if (!m->packed || (backward ? 2 : 1) > m->pack_dirs) return NULL;
    return m->packed + ((size_t)tensor * (size_t)m->config.n_layers + (size_t)l) * 2 +
           (backward ? 1 : 0);
}

void llama_packed_drop(Llama *m, int tensor) {
    if (!m->packed) return;
    for (int l = 0; l < m->config.n_layers; l++)
        for (int d = 0; d < 2; d++) {
            BackendPacked **slot = m->packed + ((size_t)tensor * (size_t)m->config.n_layers + (size_t)l) * 2 + d;
            if (*slot) m->be->packed_free(m->be, slot);
        }
}

void llama_packed_free(Llama *m) {
    if (m->packed) {
        for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) llama_packed_drop(m, i);
        free(m->packed);
    }
    m->packed = NULL;
    m->pack_dirs = 0;
    m->pack_decided = 0; /* decided again at the next product */
}

void llama_weights_changed(Llama *m) { llama_packed_free(m); }
