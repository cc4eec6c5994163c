/* Self-attention on the CPU with grouped-query heads: causal (Llama) and non-causal (ViT)
 * share one implementation, the flag setting the last key a query row sees. One (batch, head)
 * per task in the forward, one (batch, kv head) per task in the backward (so a group's query
 * heads add into dk/dv without races). Causal: only the lower triangle (s <= t) of each T x T
 * matrix is computed and stored; above the diagonal att holds zeros only where the backward
 * reads them (att_zeros_end).
 * Not a flash kernel: the T x T matrices are materialised, as the Backend interface asks.
 *
 * The products run through two register-tiled loops on packed, zero-padded copies of a head
 * (ATT_R rows x ATT_W columns of accumulators; the compiler turns the ATT_W loop into vector
 * registers). Measured at B=4, NH=6, T=256, HD=48 on 2 cores: 3x faster than dot-product
 * loops, and 2.5-4x faster than per-head sgemm on full T x T blocks (which computes the masked
 * half too and wakes OpenBLAS's thread pool a few times per head). */
/* 512-bit vectors where the CPU has AVX-512: GCC's tuning for AMD Zen prefers 256 bits, and
 * the tiles then ran 15% slower (a small-shape step's attention: 19.6-20.5 ms, against
 * 17.1-17.4 with 512-bit vectors and ATT_R = 8) */
#pragma GCC target("prefer-vector-width=512")
#include <stdlib.h>

#include "kernels/kernel_assert.h"
#include "kernels/cpu/cpu_ops.h"

enum {
    ATT_R = 8,  /* rows of a register tile (query rows, or key rows for dk/dv): 8 vector
                 * accumulators, enough to hide the FMA latency */
    ATT_W = 16, /* columns of a register tile: one 64-byte vector of floats */
    /* decoder feeds of at least this many rows (a prompt) go through the tiles; single
     * tokens through decode_row, which packs nothing */
    ATT_PREFILL_MIN = 16,
};

static inline int att_round_up(int x) { return (x + ATT_W - 1) / ATT_W * ATT_W; }

/* The end of the zeros row t of a causal att (or datt) must hold past its last key: the
 * backward's dK and dV tiles read the columns of a block of ATT_R from the block's first row
 * on, so a row needs zeros only up to the end of its own block; the rest of the upper
 * triangle is never read, and writing it was half of the forward's memory traffic. */
static inline int att_zeros_end(int t, int n_keys) {
    const int end = (t / ATT_R + 1) * ATT_R;
    return end < n_keys ? end : n_keys;
}

/* One column block [j0, j0 + W) of att_tile_dots (below); W is a constant where it is inlined,
 * so the ATT_R x W accumulators live in vector registers. */
static inline __attribute__((always_inline)) void att_dots_block(
    Real *c, int ldc, const Real *const x[ATT_R], const Real *yt, int ldy, int HD, int j0,
    const int W) {
    Real acc[ATT_R][2 * ATT_W];
    for (int r = 0; r < ATT_R; r++)
        for (int j = 0; j < W; j++) acc[r][j] = 0;
    for (int d = 0; d < HD; d++) {
        const Real *y = yt + (size_t)d * ldy + j0;
        for (int r = 0; r < ATT_R; r++) {
            const Real xr = x[r][d];
#pragma omp simd
            for (int j = 0; j < W; j++) acc[r][j] += xr * y[j];
        }
    }
    for (int r = 0; r < ATT_R; r++)
        for (int j = 0; j < W; j++) c[(size_t)r * ldc + j0 + j] = acc[r][j];
}

/* c[r][j] = sum_{d < HD} x[r][d] * yt[d][j] for r < ATT_R, j < n (n a multiple of ATT_W).
 * Rows x[r] are separate pointers; yt is [HD][ldy] (the other operand, packed transposed).
 * Blocks of two vectors of columns where they fit (16 accumulators: each broadcast of x[r][d]
 * serves two products; a small-shape attention 6% faster than blocks of one), one vector for
 * the rest. */
static void att_tile_dots(Real *c, int ldc, const Real *const x[ATT_R], const Real *yt, int ldy,
                          int HD, int n) {
    int j0 = 0;
    for (; j0 + 2 * ATT_W <= n; j0 += 2 * ATT_W) att_dots_block(c, ldc, x, yt, ldy, HD, j0, 2 * ATT_W);
    if (j0 < n) att_dots_block(c, ldc, x, yt, ldy, HD, j0, ATT_W);
}

/* One column block [j0, j0 + W) of att_tile_mix (below), W a constant where inlined. */
static inline __attribute__((always_inline)) void att_mix_block(
    Real *c, int ldc, const Real *const m[ATT_R], size_t ms, int lo, int hi, const Real *y,
    int ldy, int j0, const int W) {
    Real acc[ATT_R][2 * ATT_W];
    for (int r = 0; r < ATT_R; r++)
        for (int j = 0; j < W; j++) acc[r][j] = 0;
    for (int s = lo; s < hi; s++) {
        const Real *ys = y + (size_t)s * ldy + j0;
        for (int r = 0; r < ATT_R; r++) {
            const Real mr = m[r][(size_t)s * ms];
#pragma omp simd
            for (int j = 0; j < W; j++) acc[r][j] += mr * ys[j];
        }
    }
    for (int r = 0; r < ATT_R; r++)
        for (int j = 0; j < W; j++) c[(size_t)r * ldc + j0 + j] += acc[r][j];
}

/* c[r][j] += sum_{lo <= s < hi} m[r][s * ms] * y[s][j] for r < ATT_R, j < n (a multiple of
 * ATT_W). m[r] are row pointers with element stride ms, so the same loop takes P (ms = 1) or
 * a column of P^T (ms = T); y is [.][ldy], packed and zero-padded to n columns. Column blocks
 * as in att_tile_dots. */
static void att_tile_mix(Real *c, int ldc, const Real *const m[ATT_R], size_t ms, int lo, int hi,
                         const Real *y, int ldy, int n) {
    int j0 = 0;
    for (; j0 + 2 * ATT_W <= n; j0 += 2 * ATT_W)
        att_mix_block(c, ldc, m, ms, lo, hi, y, ldy, j0, 2 * ATT_W);
    if (j0 < n) att_mix_block(c, ldc, m, ms, lo, hi, y, ldy, j0, ATT_W);
}

/* dst[d][s] = src[s][d] for s < T, d < HD, into [HD][Tp]; columns T..Tp-1 are zero. */
static void att_pack_transposed(Real *dst, const Real *src, size_t stride, int T, int HD, int Tp) {
    for (int d = 0; d < HD; d++) {
        Real *row = dst + (size_t)d * Tp;
        for (int s = 0; s < T; s++) row[s] = src[(size_t)s * stride + d];
        for (int s = T; s < Tp; s++) row[s] = 0;
    }
}

/* dst[s][d] = src[s][d] for s < T, d < HD, into [Tp][HDp]; the padding is zero. */
static void att_pack_rows(Real *dst, const Real *src, size_t stride, int T, int HD, int Tp,
                          int HDp) {
    memset(dst, 0, (size_t)Tp * HDp * sizeof(Real));
    for (int s = 0; s < T; s++) memcpy(dst + (size_t)s * HDp, src + (size_t)s * stride,
                                       (size_t)HD * sizeof(Real));
}

/* One head's rows: out_t = softmax(scale q_t K^T) V for query rows t < nq, row t seeing keys
 * 0..last(t), last = pos0 + t when causal (the queries continue a prefix of pos0 keys), else
 * every key. kt [HD][Tp] and vp [Tp][HDp] are the head's keys and values packed by
 * att_pack_transposed / att_pack_rows (Tp, HDp padded); sc [ATT_R][Tp] and oacc [ATT_R][HDp]
 * are scratch. att (NULL: not kept) receives row t's probabilities at att + t * n_keys, zeros
 * past last. Query and output rows have strides qs. */
static void att_head_rows(Real *out, Real *att, const Real *qh, size_t qs, int nq, int pos0,
                          int n_keys, int causal, const Real *kt, const Real *vp, int Tp,
                          int HD, int HDp, Real scale, Real *sc, Real *oacc) {
    for (int t0 = 0; t0 < nq; t0 += ATT_R) {
        const int nr = nq - t0 < ATT_R ? nq - t0 : ATT_R, n = causal ? pos0 + t0 + nr : n_keys;
        const int np = att_round_up(n);
        const Real *qrows[ATT_R], *prows[ATT_R];
        for (int r = 0; r < ATT_R; r++) {
            qrows[r] = qh + (size_t)(r < nr ? t0 + r : t0) * qs; /* spare rows repeat */
            prows[r] = sc + (size_t)r * Tp;
        }
        /* scores of rows t0..t0+nr-1 against keys 0..n-1 */
        att_tile_dots(sc, Tp, qrows, kt, Tp, HD, np);
        for (int r = 0; r < nr; r++) {
            const int t = t0 + r, last = causal ? pos0 + t : n_keys - 1; /* keys 0..last */
            Real *srow = sc + (size_t)r * Tp;
            Real mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int s = 0; s <= last; s++) mx = srow[s] > mx ? srow[s] : mx;
            const double sum = cpu_exp_sum(srow, srow, mx, scale, last + 1);
            const Real inv = (Real)(1.0 / sum);
            for (int s = 0; s <= last; s++) srow[s] = srow[s] * inv;
            for (int s = last + 1; s < np; s++) srow[s] = 0;
            if (att) {
                Real *arow = att + (size_t)t * n_keys;
                memcpy(arow, srow, (size_t)(last + 1) * sizeof(Real));
                for (int s = last + 1; s < att_zeros_end(t, n_keys); s++) arow[s] = 0;
            }
        }
        /* out_t = sum_{s <= last} p_ts v_s */
        memset(oacc, 0, (size_t)ATT_R * HDp * sizeof(Real));
        att_tile_mix(oacc, HDp, prows, 1, 0, n, vp, HDp, HDp);
        for (int r = 0; r < nr; r++)
            memcpy(out + (size_t)(t0 + r) * qs, oacc + (size_t)r * HDp, (size_t)HD * sizeof(Real));
    }
}

static void attention_forward(Real *out, Real *att, const Real *q, const Real *k, const Real *v,
                              int B, int T, int NH, int NKV, int HD, int causal) {
    const int rep = NH / NKV, Tp = att_round_up(T), HDp = att_round_up(HD);
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD; /* row strides over t */
#pragma omp parallel if ((size_t)B * NH * T * T * HD >= CPU_PARALLEL_MIN)
    {
        /* per thread: kt [HD][Tp], vp [Tp][HDp], sc [ATT_R][Tp], oacc [ATT_R][HDp] */
        Real *kt = malloc(((size_t)HD * Tp + (size_t)Tp * HDp + ATT_R * ((size_t)Tp + HDp)) *
                          sizeof(Real));
        KERNEL_ASSERT(kt != NULL);
        Real *vp = kt + (size_t)HD * Tp, *sc = vp + (size_t)Tp * HDp, *oacc = sc + ATT_R * Tp;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH, kh = h / rep;
            att_pack_transposed(kt, k + (size_t)b * T * ks + (size_t)kh * HD, ks, T, HD, Tp);
            att_pack_rows(vp, v + (size_t)b * T * ks + (size_t)kh * HD, ks, T, HD, Tp, HDp);
            att_head_rows(out + (size_t)b * T * qs + (size_t)h * HD, att + (size_t)bh * T * T,
                          q + (size_t)b * T * qs + (size_t)h * HD, qs, T, 0, T, causal, kt, vp,
                          Tp, HD, HDp, scale, sc, oacc);
        }
        free(kt);
    }
}

void cpu_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                           const Real *v, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    attention_forward(out, att, q, k, v, B, T, NH, NKV, HD, 1);
}

void cpu_attention_full_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                const Real *v, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    attention_forward(out, att, q, k, v, B, T, NH, NKV, HD, 0);
}

/* With P = softmax(S), S = scale Q K^T, O = P V:
 *   dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P)); dQ = scale dS K; dK = scale dS^T Q.
 * datt holds scale * dS; a head's is complete before dK and dV read it by columns. */
static void attention_backward(Real *dq, Real *dk, Real *dv, Real *datt, const Real *dout,
                               const Real *q, const Real *k, const Real *v, const Real *att,
                               int B, int T, int NH, int NKV, int HD, int causal) {
    const int rep = NH / NKV, Tp = att_round_up(T), HDp = att_round_up(HD);
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD;
    const size_t tile = (size_t)Tp * HDp; /* one packed [Tp][HDp] head */
#pragma omp parallel if ((size_t)B * NH * T * T * HD >= CPU_PARALLEL_MIN)
    {
        /* per thread: vt [HD][Tp]; kp, qp, gp (dout), dkacc, dvacc [Tp][HDp];
         * sc [ATT_R][Tp] (dP rows); dqacc [ATT_R][HDp] */
        Real *vt = malloc(((size_t)HD * Tp + 5 * tile + ATT_R * ((size_t)Tp + HDp)) *
                          sizeof(Real));
        KERNEL_ASSERT(vt != NULL);
        Real *kp = vt + (size_t)HD * Tp, *qp = kp + tile, *gp = qp + tile, *dkacc = gp + tile,
             *dvacc = dkacc + tile, *sc = dvacc + tile, *dqacc = sc + (size_t)ATT_R * Tp;
#pragma omp for schedule(static)
        for (int bk = 0; bk < B * NKV; bk++) {
            const int b = bk / NKV, kh = bk % NKV;
            const size_t koff = (size_t)b * T * ks + (size_t)kh * HD;
            att_pack_transposed(vt, v + koff, ks, T, HD, Tp);
            att_pack_rows(kp, k + koff, ks, T, HD, Tp, HDp);
            memset(dkacc, 0, 2 * tile * sizeof(Real)); /* dkacc and dvacc */
            for (int h = kh * rep; h < (kh + 1) * rep; h++) {
                const size_t bh = (size_t)b * NH + h, hoff = (size_t)b * T * qs + (size_t)h * HD;
                const Real *ah = att + bh * T * T;
                Real *dh = datt + bh * T * T;
                att_pack_rows(qp, q + hoff, qs, T, HD, Tp, HDp);
                att_pack_rows(gp, dout + hoff, qs, T, HD, Tp, HDp);
                /* dS by row tiles, and dQ = dS K as each tile is done */
                for (int t0 = 0; t0 < T; t0 += ATT_R) {
                    const int nr = T - t0 < ATT_R ? T - t0 : ATT_R, n = causal ? t0 + nr : T;
                    const Real *grows[ATT_R], *drows[ATT_R];
                    for (int r = 0; r < ATT_R; r++) {
                        const int t = r < nr ? t0 + r : t0; /* spare rows repeat row t0 */
                        grows[r] = gp + (size_t)t * HDp;
                        drows[r] = dh + (size_t)t * T;
                    }
                    att_tile_dots(sc, Tp, grows, vt, Tp, HD, att_round_up(n)); /* dP */
                    for (int r = 0; r < nr; r++) {
                        const int t = t0 + r, last = causal ? t : T - 1;
                        const Real *arow = ah + (size_t)t * T, *prow = sc + (size_t)r * Tp;
                        Real *drow = dh + (size_t)t * T;
                        double rs = 0.0;
#pragma omp simd reduction(+ : rs)
                        for (int s = 0; s <= last; s++) rs += (double)prow[s] * arow[s];
                        const Real rsr = (Real)rs;
                        for (int s = 0; s <= last; s++) drow[s] = arow[s] * (prow[s] - rsr) * scale;
                        for (int s = last + 1; s < att_zeros_end(t, T); s++) drow[s] = 0;
                    }
                    memset(dqacc, 0, (size_t)ATT_R * HDp * sizeof(Real));
                    att_tile_mix(dqacc, HDp, drows, 1, 0, n, kp, HDp, HDp);
                    for (int r = 0; r < nr; r++)
                        memcpy(dq + hoff + (size_t)(t0 + r) * qs, dqacc + (size_t)r * HDp,
                               (size_t)HD * sizeof(Real));
                }
                /* dK rows s0.. = columns s0.. of dS against Q; dV the same with P against dO.
                 * Causal: column s is zero above row s, so the sums start at t = s0. */
                for (int s0 = 0; s0 < T; s0 += ATT_R) {
                    const Real *dcols[ATT_R], *acols[ATT_R];
                    for (int r = 0; r < ATT_R; r++) {
                        const int s = s0 + r < T ? s0 + r : s0;
                        dcols[r] = dh + s;
                        acols[r] = ah + s;
                    }
                    const int lo = causal ? s0 : 0;
                    att_tile_mix(dkacc + (size_t)s0 * HDp, HDp, dcols, T, lo, T, qp, HDp, HDp);
                    att_tile_mix(dvacc + (size_t)s0 * HDp, HDp, acols, T, lo, T, gp, HDp, HDp);
                }
            }
            const size_t row_bytes = (size_t)HD * sizeof(Real);
            for (int s = 0; s < T; s++) {
                memcpy(dk + koff + (size_t)s * ks, dkacc + (size_t)s * HDp, row_bytes);
                memcpy(dv + koff + (size_t)s * ks, dvacc + (size_t)s * HDp, row_bytes);
            }
        }
        free(vt);
    }
}

void cpu_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                            const Real *dout, const Real *q, const Real *k, const Real *v,
                            const Real *att, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    attention_backward(dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD, 1);
}

void cpu_attention_full_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                 const Real *dout, const Real *q, const Real *k, const Real *v,
                                 const Real *att, int B, int T, int NH, int NKV, int HD) {
    (void)be;
    attention_backward(dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD, 0);
}

/* Decoding with a key/value cache: the same arithmetic as attention_forward's causal rows
 * (dot products summed over d in order, softmax with the row maximum and a double sum, the
 * mix summed over s in order), so a cached step reproduces the full forward's numbers. */
/* One query row of the decode attention: out[HD] = softmax(q K^T * scale) V over keys
 * 0..last (rows of kh0 / vh0 with stride ks); sc[last + 1] is scratch. Inlined with HD a
 * constant where it is 64 or 128 (below), so the output row is accumulated in vector
 * registers instead of memory. */
static inline __attribute__((always_inline)) void decode_row(Real *restrict outr, const Real *restrict qr,
                                                             const Real *kh0, const Real *vh0, size_t ks,
                                                             int last, Real scale, Real *restrict sc,
                                                             const int HD) {
    Real mx = -INFINITY;
    for (int s = 0; s <= last; s++) {
        const Real *kr = kh0 + (size_t)s * ks;
        Real dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < HD; d++) dot += qr[d] * kr[d];
        sc[s] = dot;
        mx = dot > mx ? dot : mx;
    }
    const double sum = cpu_exp_sum(sc, sc, mx, scale, last + 1);
    const Real inv = (Real)(1.0 / sum);
    Real acc[128];
    const int hd = HD <= 128 ? HD : 128;
    for (int d0 = 0; d0 < HD; d0 += hd) { /* HD > 128 (no model here has it): in 128-wide parts */
        const int w = HD - d0 < hd ? HD - d0 : hd;
        for (int d = 0; d < w; d++) acc[d] = 0;
        for (int s = 0; s <= last; s++) {
            const Real p = sc[s] * inv, *vr = vh0 + (size_t)s * ks + d0;
#pragma omp simd
            for (int d = 0; d < w; d++) acc[d] += p * vr[d];
        }
        for (int d = 0; d < w; d++) outr[d0 + d] = acc[d];
    }
}

/* A prompt fed to the decoder (Tq >= ATT_PREFILL_MIN rows): each head's rows through the
 * training forward's tiles (att_head_rows, causal with the cache's pos0 keys before them),
 * the keys and values packed once per head; the same arithmetic as the full forward's rows. */
static void attention_prefill(Real *out, const Real *q, const Real *kcache, const Real *vcache,
                              int Tq, int pos0, int NH, int NKV, int HD) {
    const int rep = NH / NKV, n_keys = pos0 + Tq, Tp = att_round_up(n_keys);
    const int HDp = att_round_up(HD);
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD;
#pragma omp parallel if ((size_t)Tq * NH * n_keys * HD >= CPU_PARALLEL_MIN)
    {
        Real *kt = malloc(((size_t)HD * Tp + (size_t)Tp * HDp + ATT_R * ((size_t)Tp + HDp)) *
                          sizeof(Real));
        KERNEL_ASSERT(kt != NULL);
        Real *vp = kt + (size_t)HD * Tp, *sc = vp + (size_t)Tp * HDp, *oacc = sc + ATT_R * Tp;
#pragma omp for schedule(static)
        for (int h = 0; h < NH; h++) {
            const int kh = h / rep;
            att_pack_transposed(kt, kcache + (size_t)kh * HD, ks, n_keys, HD, Tp);
            att_pack_rows(vp, vcache + (size_t)kh * HD, ks, n_keys, HD, Tp, HDp);
            att_head_rows(out + (size_t)h * HD, NULL, q + (size_t)h * HD, qs, Tq, pos0, n_keys,
                          1, kt, vp, Tp, HD, HDp, scale, sc, oacc);
        }
        free(kt);
    }
}

void cpu_attention_decode_forward(Backend *be, Real *out, const Real *q, const Real *kcache,
                                  const Real *vcache, int Tq, int pos0, int NH, int NKV, int HD) {
    (void)be;
    if (Tq >= ATT_PREFILL_MIN) {
        attention_prefill(out, q, kcache, vcache, Tq, pos0, NH, NKV, HD);
        return;
    }
    const int rep = NH / NKV, n_keys = pos0 + Tq;
    const Real scale = (Real)(1.0 / sqrt((double)HD));
    const size_t qs = (size_t)NH * HD, ks = (size_t)NKV * HD;
#pragma omp parallel if ((size_t)Tq * NH * n_keys * HD >= CPU_PARALLEL_MIN)
    {
        Real *sc = malloc((size_t)n_keys * sizeof(Real));
        KERNEL_ASSERT(sc != NULL);
#pragma omp for schedule(static)
        for (int th = 0; th < Tq * NH; th++) {
            const int t = th / NH, h = th % NH, kh = h / rep, last = pos0 + t;
            const Real *qr = q + (size_t)t * qs + (size_t)h * HD;
            const Real *kh0 = kcache + (size_t)kh * HD, *vh0 = vcache + (size_t)kh * HD;
            Real *outr = out + (size_t)t * qs + (size_t)h * HD;
            if (HD == 64) decode_row(outr, qr, kh0, vh0, ks, last, scale, sc, 64);
            else if (HD == 128) decode_row(outr, qr, kh0, vh0, ks, last, scale, sc, 128);
            else decode_row(outr, qr, kh0, vh0, ks, last, scale, sc, HD);
        }
        free(sc);
    }
}
