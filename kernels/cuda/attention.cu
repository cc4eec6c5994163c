/* Self-attention on CUDA, flash-style: no T x T matrix is ever stored. Causal with
 * grouped-query heads (Llama) and non-causal (ViT) share one set of kernels, CAUSAL a
 * template flag. The forward streams key tiles through shared memory with an online softmax
 * and saves only lse[B,NH,T] (log-sum-exp of the scaled scores, in att's first B*NH*T
 * floats, see kernels/backend.h). The backward recomputes the probabilities from lse, with
 * no atomics, in two kernels:
 *   dq:  one block per (batch*head, 16 query rows): pass 1 over the keys gives
 *        D_t = sum_s P_ts dP_ts (= rowsum(dO * O), saved in datt's first B*NH*T floats),
 *        pass 2 gives dQ = scale dS K with dS = P (dP - D);
 *   dkv: one block per (batch*kv head, 16 key rows), looping over the group's query heads
 *        and query tiles: dV = P^T dO, dK = scale dS^T Q.
 * (The interface gives the backward no `out`, hence pass 1; with it D would be dO . O.)
 *
 * Layout of the work: a block is 4 warps; a warp owns 4 rows (queries in the forward and dq,
 * keys in dkv); a tile has 32 columns, lane j computing the scores of column j against its
 * warp's 4 rows from a transposed tile (conflict-free: row stride ATT_LDT = 33) and the 4
 * rows read as 16-byte broadcasts; the products with V, K, Q or dO then run with lanes over
 * head dimensions (DPL = dims per lane, 1/2/4/8: HD up to 256) and the 32 probabilities
 * broadcast from shared memory. fp32 throughout on the CUDA cores: this is the exact path
 * the parity tests hold to the CPU, and an fp32 run's; a bf16 run's attention takes the
 * tensor-core kernels of attention_tc.cu (the same algorithm with wmma products). */
#include "kernels/cuda/cuda_common.cuh"

enum {
    ATT_WARPS = 4,
    ATT_R = 4,                       /* rows per warp */
    ATT_ROWS = ATT_WARPS * ATT_R,    /* rows per block: 16 */
    ATT_BC = 32,                     /* columns per tile: one per lane */
    ATT_LDT = 33,                    /* row stride of transposed tiles (odd: no bank conflicts) */
    ATT_MAX_HD = 256,
};

typedef struct AttShape {
    int T, NH, NKV, HD, HDQ, rep; /* HDQ = HD rounded up to 4 (16-byte rows in shared) */
    float scale;
} AttShape;

/* ---- kernels: shared-memory tiles ---- */

/* dst[r][d] (row stride HDQ) = row (row0 + r) of a head; zeros past T and in the padding.
 * base points at row 0 of the head, rows are row_stride apart. */
template <typename T>
__device__ void att_load_rows(float *dst, const T *base, size_t row_stride, int row0, int rows,
                              AttShape sh) {
    for (int idx = threadIdx.x; idx < rows * sh.HDQ; idx += blockDim.x) {
        const int r = idx / sh.HDQ, d = idx % sh.HDQ, t = row0 + r;
        dst[idx] = t < sh.T && d < sh.HD ? lsc_ld(base[(size_t)t * row_stride + d]) : 0.0f;
    }
}

/* The same tile transposed: dst[d][r], row stride ATT_LDT. */
template <typename T>
__device__ void att_load_cols(float *dst, const T *base, size_t row_stride, int row0, int rows,
                              AttShape sh) {
    for (int idx = threadIdx.x; idx < rows * sh.HDQ; idx += blockDim.x) {
        const int r = idx / sh.HDQ, d = idx % sh.HDQ, t = row0 + r;
        dst[d * ATT_LDT + r] =
            t < sh.T && d < sh.HD ? lsc_ld(base[(size_t)t * row_stride + d]) : 0.0f;
    }
}

/* acc[r] = rows[r] . colT[:, lane] for the warp's ATT_R rows (row stride HDQ, 16-byte
 * aligned: read as broadcasts) against column `lane` of a transposed tile. */
__device__ __forceinline__ void att_dots(float (&acc)[ATT_R], const float *rows,
                                         const float *colT, int HDQ, int lane) {
#pragma unroll
    for (int r = 0; r < ATT_R; r++) acc[r] = 0.0f;
    for (int d = 0; d < HDQ; d += 4) {
        const float c0 = colT[(d + 0) * ATT_LDT + lane], c1 = colT[(d + 1) * ATT_LDT + lane];
        const float c2 = colT[(d + 2) * ATT_LDT + lane], c3 = colT[(d + 3) * ATT_LDT + lane];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const float4 a = *(const float4 *)(rows + r * HDQ + d);
            acc[r] += a.x * c0 + a.y * c1 + a.z * c2 + a.w * c3;
        }
    }
}

/* acc[r][i] += sum_j w[r][j] * val(j, lane + 32 i) over the 32 columns of a tile, w the
 * warp's [ATT_R][ATT_BC] weights in shared memory (broadcast reads), val(j, d) one float of
 * shared memory at base[j * sj + d * sd]. */
template <int DPL>
__device__ __forceinline__ void att_mix(float (&acc)[ATT_R][DPL], const float *w,
                                        const float *base, int sj, int sd, int HD, int lane) {
    for (int j = 0; j < ATT_BC; j += 4) {
        float val[4][DPL];
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
#pragma unroll
            for (int u = 0; u < 4; u++) val[u][i] = d < HD ? base[(j + u) * sj + d * sd] : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const float4 p = *(const float4 *)(w + r * ATT_BC + j);
#pragma unroll
            for (int i = 0; i < DPL; i++)
                acc[r][i] += p.x * val[0][i] + p.y * val[1][i] + p.z * val[2][i] + p.w * val[3][i];
        }
    }
}

template <int DPL> __device__ __forceinline__ void att_zero(float (&acc)[ATT_R][DPL]) {
#pragma unroll
    for (int r = 0; r < ATT_R; r++)
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[r][i] = 0.0f;
}

/* ---- kernels: forward ---- */

template <typename T, int DPL, bool CAUSAL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v, AttShape sh) {
    extern __shared__ float4 smem4[];
    const int HDQ = sh.HDQ;
    float *sQ = (float *)smem4;           /* [ROWS][HDQ] */
    float *sKT = sQ + ATT_ROWS * HDQ;     /* [HDQ][LDT] */
    float *sV = sKT + HDQ * ATT_LDT;      /* [BC][HDQ] */
    float *sP = sV + ATT_BC * HDQ;        /* [WARPS][R][BC] */
    const int bh = blockIdx.x, b = bh / sh.NH, h = bh % sh.NH, kh = h / sh.rep;
    const int t0 = blockIdx.y * ATT_ROWS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const T *qb = q + (size_t)b * sh.T * qs + (size_t)h * sh.HD;
    const T *kb = k + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    const T *vb = v + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    float *wP = sP + warp * ATT_R * ATT_BC;
    att_load_rows(sQ, qb, qs, t0, ATT_ROWS, sh);

    float m[ATT_R], l[ATT_R], o[ATT_R][DPL];
    att_zero<DPL>(o);
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int kend = CAUSAL ? min(sh.T, t0 + ATT_ROWS) : sh.T;
    for (int s0 = 0; s0 < kend; s0 += ATT_BC) {
        __syncthreads(); /* the previous tile is consumed */
        att_load_cols(sKT, kb, ks, s0, ATT_BC, sh);
        att_load_rows(sV, vb, ks, s0, ATT_BC, sh);
        __syncthreads();
        float sc[ATT_R];
        att_dots(sc, sQ + warp * ATT_R * HDQ, sKT, HDQ, lane);
        const int s = s0 + lane;
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const int t = t0 + warp * ATT_R + r;
            const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
            const float x = ok ? sc[r] * sh.scale : -INFINITY;
            const float mn = fmaxf(m[r], warp_max(x));
            const float p = ok ? expf(x - mn) : 0.0f;
            const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);
            l[r] = l[r] * corr + p; /* this lane's share; summed over the warp at the end */
            m[r] = mn;
            wP[r * ATT_BC + lane] = p;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[r][i] *= corr;
        }
        __syncwarp();
        att_mix<DPL>(o, wP, sV, HDQ, 1, sh.HD, lane);
    }
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        const int t = t0 + warp * ATT_R + r;
        const float L = warp_sum(l[r]);
        if (t >= sh.T) continue;
        const float inv = 1.0f / L;
        T *orow = out + ((size_t)b * sh.T + t) * qs + (size_t)h * sh.HD;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < sh.HD) orow[d] = lsc_st<T>(o[r][i] * inv);
        }
        if (lane == 0) lse[(size_t)bh * sh.T + t] = m[r] + logf(L);
    }
}

/* ---- kernels: backward ---- */

/* dq (pass 2) and D = rowsum(P dP) (pass 1) for 16 query rows of one head. */
template <typename T, int DPL, bool CAUSAL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_backward_dq_kernel(T *dq, float *Dsum, const T *dout, const T *q, const T *k,
                                 const T *v, const float *lse, AttShape sh) {
    extern __shared__ float4 smem4[];
    const int HDQ = sh.HDQ;
    float *sQ = (float *)smem4;           /* [ROWS][HDQ] */
    float *sG = sQ + ATT_ROWS * HDQ;      /* dO rows, [ROWS][HDQ] */
    float *sKT = sG + ATT_ROWS * HDQ;     /* [HDQ][LDT] */
    float *sVT = sKT + HDQ * ATT_LDT;     /* [HDQ][LDT] */
    float *sS = sVT + HDQ * ATT_LDT;      /* [WARPS][R][BC] */
    const int bh = blockIdx.x, b = bh / sh.NH, h = bh % sh.NH, kh = h / sh.rep;
    const int t0 = blockIdx.y * ATT_ROWS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const size_t qoff = (size_t)b * sh.T * qs + (size_t)h * sh.HD;
    const T *kb = k + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    const T *vb = v + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    float *wS = sS + warp * ATT_R * ATT_BC;
    att_load_rows(sQ, q + qoff, qs, t0, ATT_ROWS, sh);
    att_load_rows(sG, dout + qoff, qs, t0, ATT_ROWS, sh);
    float L[ATT_R], Dr[ATT_R];
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        const int t = t0 + warp * ATT_R + r;
        L[r] = t < sh.T ? lse[(size_t)bh * sh.T + t] : 0.0f;
        Dr[r] = 0.0f;
    }
    const int kend = CAUSAL ? min(sh.T, t0 + ATT_ROWS) : sh.T;
#pragma unroll
    for (int pass = 0; pass < 2; pass++) {
        float acc[ATT_R][DPL];
        att_zero<DPL>(acc);
        for (int s0 = 0; s0 < kend; s0 += ATT_BC) {
            __syncthreads();
            att_load_cols(sKT, kb, ks, s0, ATT_BC, sh);
            att_load_cols(sVT, vb, ks, s0, ATT_BC, sh);
            __syncthreads();
            float sc[ATT_R], dp[ATT_R];
            att_dots(sc, sQ + warp * ATT_R * HDQ, sKT, HDQ, lane);
            att_dots(dp, sG + warp * ATT_R * HDQ, sVT, HDQ, lane);
            const int s = s0 + lane;
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                const int t = t0 + warp * ATT_R + r;
                const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
                const float p = ok ? expf(sc[r] * sh.scale - L[r]) : 0.0f;
                if (pass == 0)
                    Dr[r] += p * dp[r];
                else
                    wS[r * ATT_BC + lane] = p * (dp[r] - Dr[r]) * sh.scale;
            }
            if (pass == 0) continue;
            __syncwarp();
            att_mix<DPL>(acc, wS, sKT, 1, ATT_LDT, sh.HD, lane); /* dq += dS K */
        }
        if (pass == 0) {
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                Dr[r] = warp_sum(Dr[r]);
                const int t = t0 + warp * ATT_R + r;
                if (lane == 0 && t < sh.T) Dsum[(size_t)bh * sh.T + t] = Dr[r];
            }
            continue;
        }
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const int t = t0 + warp * ATT_R + r;
            if (t >= sh.T) continue;
            T *row = dq + qoff + (size_t)t * qs;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                const int d = lane + 32 * i;
                if (d < sh.HD) row[d] = lsc_st<T>(acc[r][i]);
            }
        }
    }
}

/* dk and dv for 16 key rows of one kv head, summed over the group's query heads. */
template <typename T, int DPL, bool CAUSAL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_backward_dkv_kernel(T *dk, T *dv, const T *dout, const T *q, const T *k,
                                  const T *v, const float *lse, const float *Dsum, AttShape sh) {
    extern __shared__ float4 smem4[];
    const int HDQ = sh.HDQ;
    float *sK = (float *)smem4;           /* [ROWS][HDQ] */
    float *sV = sK + ATT_ROWS * HDQ;      /* [ROWS][HDQ] */
    float *sQT = sV + ATT_ROWS * HDQ;     /* [HDQ][LDT] */
    float *sGT = sQT + HDQ * ATT_LDT;     /* dO, [HDQ][LDT] */
    float *sP = sGT + HDQ * ATT_LDT;      /* [WARPS][R][BC] */
    float *sS = sP + ATT_ROWS * ATT_BC;   /* [WARPS][R][BC] */
    float *sL = sS + ATT_ROWS * ATT_BC;   /* [BC] */
    float *sD = sL + ATT_BC;              /* [BC] */
    const int bk = blockIdx.x, b = bk / sh.NKV, kh = bk % sh.NKV;
    const int s0 = blockIdx.y * ATT_ROWS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const size_t koff = (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    float *wP = sP + warp * ATT_R * ATT_BC, *wS = sS + warp * ATT_R * ATT_BC;
    att_load_rows(sK, k + koff, ks, s0, ATT_ROWS, sh);
    att_load_rows(sV, v + koff, ks, s0, ATT_ROWS, sh);
    float dka[ATT_R][DPL], dva[ATT_R][DPL];
    att_zero<DPL>(dka);
    att_zero<DPL>(dva);
    const int tstart = CAUSAL ? s0 / ATT_BC * ATT_BC : 0; /* earlier queries see none of ours */
    for (int h = kh * sh.rep; h < (kh + 1) * sh.rep; h++) {
        const size_t qoff = (size_t)b * sh.T * qs + (size_t)h * sh.HD;
        const size_t bh = (size_t)b * sh.NH + h;
        for (int t0 = tstart; t0 < sh.T; t0 += ATT_BC) {
            __syncthreads();
            att_load_cols(sQT, q + qoff, qs, t0, ATT_BC, sh);
            att_load_cols(sGT, dout + qoff, qs, t0, ATT_BC, sh);
            if (threadIdx.x < ATT_BC) {
                const int t = t0 + threadIdx.x;
                sL[threadIdx.x] = t < sh.T ? lse[bh * sh.T + t] : 0.0f;
                sD[threadIdx.x] = t < sh.T ? Dsum[bh * sh.T + t] : 0.0f;
            }
            __syncthreads();
            float sc[ATT_R], dp[ATT_R];
            att_dots(sc, sK + warp * ATT_R * HDQ, sQT, HDQ, lane);
            att_dots(dp, sV + warp * ATT_R * HDQ, sGT, HDQ, lane);
            const int t = t0 + lane;
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                const int s = s0 + warp * ATT_R + r;
                const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
                const float p = ok ? expf(sc[r] * sh.scale - sL[lane]) : 0.0f;
                wP[r * ATT_BC + lane] = p;
                wS[r * ATT_BC + lane] = p * (dp[r] - sD[lane]) * sh.scale;
            }
            __syncwarp();
            att_mix<DPL>(dva, wP, sGT, 1, ATT_LDT, sh.HD, lane); /* dv += P^T dO */
            att_mix<DPL>(dka, wS, sQT, 1, ATT_LDT, sh.HD, lane); /* dk += dS^T Q */
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        const int s = s0 + warp * ATT_R + r;
        if (s >= sh.T) continue;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d >= sh.HD) continue;
            dk[koff + (size_t)s * ks + d] = lsc_st<T>(dka[r][i]);
            dv[koff + (size_t)s * ks + d] = lsc_st<T>(dva[r][i]);
        }
    }
}

/* ---- launchers ---- */

/* Checks the shape and fills sh; 0 with the error recorded when the kernels cannot take it. */
static int att_shape(CudaCtx *ctx, AttShape *sh, int T, int NH, int NKV, int HD) {
    if (NH <= 0 || NKV <= 0 || NH % NKV != 0) {
        CUDA_FAIL(ctx, "%d query heads cannot share %d key/value heads (NH must be a multiple "
                       "of NKV)", NH, NKV);
        return 0;
    }
    if (HD <= 0 || HD > ATT_MAX_HD) {
        CUDA_FAIL(ctx, "head size %d is outside the CUDA attention kernels' range 1..%d", HD,
                  ATT_MAX_HD);
        return 0;
    }
    sh->T = T;
    sh->NH = NH;
    sh->NKV = NKV;
    sh->HD = HD;
    sh->HDQ = (HD + 3) / 4 * 4;
    sh->rep = NH / NKV;
    sh->scale = (float)(1.0 / sqrt((double)HD));
    return 1;
}

template <int DPL, bool CAUSAL>
static void att_forward_run(CudaCtx *ctx, Real *out, Real *lse, const Real *q, const Real *k,
                            const Real *v, int B, AttShape sh) {
    const size_t smem =
        ((size_t)ATT_ROWS * sh.HDQ + (size_t)sh.HDQ * ATT_LDT + (size_t)ATT_BC * sh.HDQ +
         ATT_ROWS * ATT_BC) * sizeof(float);
    auto kernel = attention_forward_kernel<Real, DPL, CAUSAL>;
    if (!cuda_smem_optin(ctx, (const void *)kernel, smem, __FILE__, __LINE__)) return;
    const dim3 grid((unsigned)(B * sh.NH), (unsigned)((sh.T + ATT_ROWS - 1) / ATT_ROWS));
    kernel<<<grid, ATT_WARPS * 32, smem, ctx->stream>>>(out, lse, q, k, v, sh);
    CUDA_LAUNCHED(ctx);
}

template <int DPL, bool CAUSAL>
static void att_backward_run(CudaCtx *ctx, Real *dq, Real *dk, Real *dv, Real *Dsum,
                             const Real *dout, const Real *q, const Real *k, const Real *v,
                             const Real *lse, int B, AttShape sh) {
    const unsigned row_blocks = (unsigned)((sh.T + ATT_ROWS - 1) / ATT_ROWS);
    const size_t smem_dq = ((size_t)2 * ATT_ROWS * sh.HDQ + (size_t)2 * sh.HDQ * ATT_LDT +
                            ATT_ROWS * ATT_BC) * sizeof(float);
    auto kdq = attention_backward_dq_kernel<Real, DPL, CAUSAL>;
    if (!cuda_smem_optin(ctx, (const void *)kdq, smem_dq, __FILE__, __LINE__)) return;
    kdq<<<dim3((unsigned)(B * sh.NH), row_blocks), ATT_WARPS * 32, smem_dq, ctx->stream>>>(
        dq, Dsum, dout, q, k, v, lse, sh);
    if (!CUDA_LAUNCHED(ctx)) return;
    const size_t smem_kv = ((size_t)2 * ATT_ROWS * sh.HDQ + (size_t)2 * sh.HDQ * ATT_LDT +
                            2 * ATT_ROWS * ATT_BC + 2 * ATT_BC) * sizeof(float);
    auto kkv = attention_backward_dkv_kernel<Real, DPL, CAUSAL>;
    if (!cuda_smem_optin(ctx, (const void *)kkv, smem_kv, __FILE__, __LINE__)) return;
    kkv<<<dim3((unsigned)(B * sh.NKV), row_blocks), ATT_WARPS * 32, smem_kv, ctx->stream>>>(
        dk, dv, dout, q, k, v, lse, Dsum, sh);
    CUDA_LAUNCHED(ctx);
}

/* The smallest compiled dims-per-lane that covers HD. */
#define ATT_DISPATCH(HD, CALL)                                                                 \
    do {                                                                                       \
        if ((HD) <= 32) CALL(1);                                                               \
        else if ((HD) <= 64) CALL(2);                                                          \
        else if ((HD) <= 128) CALL(4);                                                         \
        else CALL(8);                                                                          \
    } while (0)

template <bool CAUSAL>
static void att_forward(Backend *be, const char *func, Real *out, Real *att, const Real *q,
                        const Real *k, const Real *v, int B, int T, int NH, int NKV, int HD) {
    CudaCtx *ctx = cuda_begin(be, func);
    AttShape sh;
    if (!ctx || B <= 0 || T <= 0 || !att_shape(ctx, &sh, T, NH, NKV, HD)) return;
#define ATT_FWD(D) att_forward_run<D, CAUSAL>(ctx, out, att, q, k, v, B, sh)
    ATT_DISPATCH(HD, ATT_FWD);
#undef ATT_FWD
}

template <bool CAUSAL>
static void att_backward(Backend *be, const char *func, Real *dq, Real *dk, Real *dv, Real *datt,
                         const Real *dout, const Real *q, const Real *k, const Real *v,
                         const Real *att, int B, int T, int NH, int NKV, int HD) {
    CudaCtx *ctx = cuda_begin(be, func);
    AttShape sh;
    if (!ctx || B <= 0 || T <= 0 || !att_shape(ctx, &sh, T, NH, NKV, HD)) return;
#define ATT_BWD(D) att_backward_run<D, CAUSAL>(ctx, dq, dk, dv, datt, dout, q, k, v, att, B, sh)
    ATT_DISPATCH(HD, ATT_BWD);
#undef ATT_BWD
}

void cuda_attention_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                            const Real *v, int B, int T, int NH, int NKV, int HD) {
    att_forward<true>(be, __func__, out, att, q, k, v, B, T, NH, NKV, HD);
}

void cuda_attention_full_forward(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                 const Real *v, int B, int T, int NH, int NKV, int HD) {
    att_forward<false>(be, __func__, out, att, q, k, v, B, T, NH, NKV, HD);
}

void cuda_attention_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                             const Real *dout, const Real *q, const Real *k, const Real *v,
                             const Real *att, int B, int T, int NH, int NKV, int HD) {
    att_backward<true>(be, __func__, dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD);
}

void cuda_attention_full_backward(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                  const Real *dout, const Real *q, const Real *k, const Real *v,
                                  const Real *att, int B, int T, int NH, int NKV, int HD) {
    att_backward<false>(be, __func__, dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD);
}

/* ---- decoding with a key/value cache (one sequence; see backend.h) ----
 * One block per (new query row, head): the scores of the row against its n = pos0 + t + 1 keys
 * go to shared memory (thread i takes keys i, i + blockDim, ...), the block reduces their
 * maximum and the sum of exponentials in a fixed order, and thread d then sums p_s v[s][d]
 * over s in order for its head dimensions. Decoding is one row per step: this kernel serves
 * generation in evaluation, where the flash kernels' 16-row tiles would be mostly empty. */

enum { ATT_DEC_THREADS = 128 };

template <typename T>
__global__ void __launch_bounds__(ATT_DEC_THREADS)
attention_decode_kernel(T *out, const T *q, const T *kc, const T *vc, int pos0, AttShape sh) {
    extern __shared__ float dec_scores[]; /* [pos0 + Tq] scores, then probabilities */
    __shared__ float red[32];
    __shared__ double red_sum[32];
    const int t = blockIdx.x / sh.NH, h = blockIdx.x % sh.NH, kh = h / sh.rep;
    const int n = pos0 + t + 1;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const T *qr = q + (size_t)t * qs + (size_t)h * sh.HD;
    const T *k0 = kc + (size_t)kh * sh.HD, *v0 = vc + (size_t)kh * sh.HD;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < n; s += blockDim.x) {
        const T *kr = k0 + (size_t)s * ks;
        float dot = 0.0f;
        for (int d = 0; d < sh.HD; d++) dot += lsc_ld(qr[d]) * lsc_ld(kr[d]);
        dec_scores[s] = dot;
        mx = fmaxf(mx, dot);
    }
    mx = block_max(mx, red);
    double sum = 0.0;
    for (int s = threadIdx.x; s < n; s += blockDim.x) {
        const float e = expf((dec_scores[s] - mx) * sh.scale);
        dec_scores[s] = e;
        sum += (double)e;
    }
    sum = block_sum(sum, red_sum);
    const float inv = (float)(1.0 / sum);
    for (int d = threadIdx.x; d < sh.HD; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n; s++) acc += dec_scores[s] * inv * lsc_ld(v0[(size_t)s * ks + d]);
        out[(size_t)t * qs + (size_t)h * sh.HD + d] = lsc_st<T>(acc);
    }
}

void cuda_attention_decode_forward(Backend *be, Real *out, const Real *q, const Real *kcache,
                                   const Real *vcache, int Tq, int pos0, int NH, int NKV, int HD) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    AttShape sh;
    if (!ctx || Tq <= 0 || pos0 < 0 || !att_shape(ctx, &sh, pos0 + Tq, NH, NKV, HD)) return;
    const size_t smem = (size_t)(pos0 + Tq) * sizeof(float);
    auto kernel = attention_decode_kernel<Real>;
    if (!cuda_smem_optin(ctx, (const void *)kernel, smem, __FILE__, __LINE__)) return;
    kernel<<<(unsigned)(Tq * NH), ATT_DEC_THREADS, smem, ctx->stream>>>(out, q, kcache, vcache,
                                                                        pos0, sh);
    CUDA_LAUNCHED(ctx);
}
