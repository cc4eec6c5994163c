/* Self-attention on the tensor cores, for mixed precision (attention_forward_bf16 and
 * attention_backward_bf16 in kernels/backend.h): attention.cu's flash-style algorithm (no T x T
 * matrix stored, the log-sum-exp saved, the backward recomputing the probabilities, no atomics)
 * with its products done by warp matrix multiply-accumulate (wmma 16x16x16: bf16 operands,
 * fp32 accumulation). q, k, v and dO are rounded to bf16 as they are staged in shared memory,
 * the probabilities P and dS = P (dP - D) as they are written there; the softmax statistics,
 * D = rowsum(dO * O) and every accumulator stay fp32.
 *
 * Work: a block is 4 warps owning 64 rows (queries in the forward and dq, keys in dkv), 16 per
 * warp; the other side streams through in tiles of 64. A warp's 16 x 64 score tiles go from
 * accumulator fragments to shared memory, where two lanes per row apply the mask and the
 * softmax: the placement of a fragment's elements over the lanes is unspecified, and nothing
 * here depends on it. The one per-row operation on fragments in registers (scaling the output
 * rows by the online softmax's correction and, at the end, by 1/sum) reads each element's row
 * from a fragment loaded from a tile of row numbers, which has the same placement.
 * Head sizes up to 128, padded with zeros to 32, 64 or 128 in shared memory; larger heads take
 * attention.cu's fp32 kernels. The backward is two kernels like attention.cu's (dq over query
 * tiles; dk, dv over key tiles looping over the group's query heads), so every sum has one
 * order: deterministic without atomics, at the cost of computing the scores twice. */
#include "kernels/cuda/cuda_common.cuh"

#ifndef LORASC_CUDA_EMU
#include <mma.h>
#endif

using namespace nvcuda;

typedef __nv_bfloat16 bf16;

enum {
    TC_WARPS = 4,
    TC_ROWS = 64,          /* rows a block owns: 16 per warp */
    TC_COLS = 64,          /* columns of a streamed tile */
    TC_LDF = TC_COLS + 4,  /* row stride of fp32 64-wide tiles (wmma: a multiple of 4) */
    TC_LDB = TC_COLS + 8,  /* row stride of bf16 64-wide tiles (wmma: a multiple of 8) */
    TC_MAX_HD = 128,
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragBRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBCol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

/* dynamic shared memory, aligned for wmma's 256-bit pointers with room to spare */
struct __align__(128) TcAlign {
    float v[32];
};

typedef struct TcShape {
    int T, NH, NKV, HD, rep;
    float scale;
} TcShape;

/* Shared-memory sizes (bytes) of the tiles; every one a multiple of 128, so tiles laid end to
 * end stay aligned. A head tile is 64 rows of HDP bf16 (+8 padding per row). */
template <int HDP> struct TcTiles {
    static constexpr int LDH = HDP + 8;
    static constexpr size_t head = (size_t)TC_ROWS * LDH * sizeof(bf16);
    static constexpr size_t f32 = (size_t)TC_ROWS * TC_LDF * sizeof(float);
    static constexpr size_t b16 = (size_t)TC_ROWS * TC_LDB * sizeof(bf16);
    static constexpr size_t rows = 256 * sizeof(float); /* the 16 x 16 row numbers */
    static constexpr size_t vec = TC_ROWS * sizeof(float);
    static constexpr size_t forward = 3 * head + f32 + b16 + rows + vec;
    static constexpr size_t dq = 4 * head + 2 * f32 + b16 + 2 * vec;
    static constexpr size_t dkv = 4 * head + 2 * f32 + 2 * b16 + 2 * vec;
};

/* ---- device helpers ---- */

/* dst[r][d] (row stride HDP + 8) = bf16 of row row0 + r of a head, zero past T and HD. */
template <int HDP>
__device__ void tc_stage(bf16 *dst, const float *base, size_t row_stride, int row0, int T,
                         int HD) {
    for (int idx = threadIdx.x; idx < TC_ROWS * HDP; idx += blockDim.x) {
        const int r = idx / HDP, d = idx % HDP, t = row0 + r;
        const float x = t < T && d < HD ? base[(size_t)t * row_stride + d] : 0.0f;
        dst[r * (HDP + 8) + d] = __float2bfloat16_rn(x);
    }
}

/* v[r] = x[(row0 + r) * stride] for the 64 rows, 0 past T */
__device__ void tc_stage_vec(float *v, const float *x, int row0, int T) {
    for (int r = threadIdx.x; r < TC_ROWS; r += blockDim.x) v[r] = row0 + r < T ? x[row0 + r] : 0.0f;
}

/* out[16][64] (fp32, stride TC_LDF) = a[16][HDP] b[64][HDP]^T, a and b bf16 head tiles:
 * a warp's scores against a tile (or dP against dO, ...). */
template <int HDP>
__device__ void tc_scores(float *out, const bf16 *a, const bf16 *b) {
    constexpr int LDH = HDP + 8, NF = HDP / 16;
    FragA fa[NF];
#pragma unroll
    for (int kk = 0; kk < NF; kk++) wmma::load_matrix_sync(fa[kk], a + kk * 16, LDH);
#pragma unroll
    for (int j = 0; j < TC_COLS / 16; j++) {
        FragC c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int kk = 0; kk < NF; kk++) {
            FragBCol fb; /* b^T as a column-major K x N operand: element (d, s) = b[s][d] */
            wmma::load_matrix_sync(fb, b + j * 16 * LDH + kk * 16, LDH);
            wmma::mma_sync(c, fa[kk], fb, c);
        }
        wmma::store_matrix_sync(out + j * 16, c, TC_LDF, wmma::mem_row_major);
    }
}

/* acc[16][HDP] += p[16][64] m[64][HDP]: p bf16 (stride TC_LDB), m a bf16 head tile. */
template <int HDP>
__device__ void tc_accumulate(FragC (&acc)[HDP / 16], const bf16 *p, const bf16 *m) {
    constexpr int LDH = HDP + 8, NF = HDP / 16;
#pragma unroll
    for (int j = 0; j < TC_COLS / 16; j++) {
        FragA fp;
        wmma::load_matrix_sync(fp, p + j * 16, TC_LDB);
#pragma unroll
        for (int f = 0; f < NF; f++) {
            FragBRow fm;
            wmma::load_matrix_sync(fm, m + j * 16 * LDH + f * 16, LDH);
            wmma::mma_sync(acc[f], fp, fm, acc[f]);
        }
    }
}

/* acc's element x[i] is in row rowno.x[i] of its 16 x 16 tile: scale each row r by w[r] */
template <int NF>
__device__ __forceinline__ void tc_scale_rows(FragC (&acc)[NF], const FragC &rowno,
                                              const float *w) {
#pragma unroll
    for (int f = 0; f < NF; f++)
#pragma unroll
        for (int i = 0; i < rowno.num_elements; i++) acc[f].x[i] *= w[(int)rowno.x[i]];
}

template <int NF> __device__ __forceinline__ void tc_scale(FragC (&acc)[NF], float s) {
#pragma unroll
    for (int f = 0; f < NF; f++)
#pragma unroll
        for (int i = 0; i < acc[f].num_elements; i++) acc[f].x[i] *= s;
}

/* Rows row0..row0+15 of a head (fp32, rows row_stride apart) = acc, through the warp's
 * 16 x TC_LDF scratch; rows past T and columns past HD are not written. */
template <int HDP>
__device__ void tc_write_rows(float *base, size_t row_stride, int row0, int T, int HD,
                              FragC (&acc)[HDP / 16], float *scratch, int lane) {
#pragma unroll
    for (int f = 0; f < HDP / 16; f++) {
        wmma::store_matrix_sync(scratch, acc[f], TC_LDF, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            const int r = e / 16, d = f * 16 + e % 16, t = row0 + r;
            if (t < T && d < HD) base[(size_t)t * row_stride + d] = scratch[r * TC_LDF + e % 16];
        }
        __syncwarp();
    }
}

/* ---- kernels ---- */

/* One block per (batch * head, 64 query rows). Online softmax over key tiles: lane pair
 * (2r, 2r + 1) holds row r's running maximum m and sum l, each lane half of its columns. */
template <int HDP, bool CAUSAL>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_forward_kernel(float *out, float *lse, const float *q, const float *k,
                                const float *v, TcShape sh) {
    typedef TcTiles<HDP> S;
    constexpr int NF = HDP / 16;
    extern __shared__ TcAlign tc_smem[];
    char *p = (char *)tc_smem;
    bf16 *sQ = (bf16 *)p, *sK = (bf16 *)(p + S::head), *sV = (bf16 *)(p + 2 * S::head);
    float *sS = (float *)(p + 3 * S::head);                      /* scores, then output */
    bf16 *sP = (bf16 *)(p + 3 * S::head + S::f32);               /* probabilities */
    float *sRowNo = (float *)(p + 3 * S::head + S::f32 + S::b16);
    float *sW = sRowNo + 256;                                    /* per-row factors */
    const int bh = blockIdx.x, b = bh / sh.NH, h = bh % sh.NH, kh = h / sh.rep;
    const int t0 = blockIdx.y * TC_ROWS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const float *kb = k + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    const float *vb = v + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    tc_stage<HDP>(sQ, q + (size_t)b * sh.T * qs + (size_t)h * sh.HD, qs, t0, sh.T, sh.HD);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sRowNo[i] = (float)(i / 16);
    __syncthreads();
    FragC rowno, o[NF];
    wmma::load_matrix_sync(rowno, sRowNo, 16, wmma::mem_row_major);
#pragma unroll
    for (int f = 0; f < NF; f++) wmma::fill_fragment(o[f], 0.0f);
    float *wS = sS + warp * 16 * TC_LDF, *wW = sW + warp * 16;
    bf16 *wP = sP + warp * 16 * TC_LDB;
    const int r = lane / 2, half = lane % 2, t = t0 + warp * 16 + r;
    float m = -INFINITY, l = 0.0f;
    const int kend = CAUSAL ? min(sh.T, t0 + TC_ROWS) : sh.T;
    for (int s0 = 0; s0 < kend; s0 += TC_COLS) {
        __syncthreads(); /* the previous tile is consumed */
        tc_stage<HDP>(sK, kb, ks, s0, sh.T, sh.HD);
        tc_stage<HDP>(sV, vb, ks, s0, sh.T, sh.HD);
        __syncthreads();
        tc_scores<HDP>(wS, sQ + warp * 16 * (HDP + 8), sK);
        __syncwarp();
        const float *srow = wS + r * TC_LDF + half * 32;
        bf16 *prow = wP + r * TC_LDB + half * 32;
        const int c0 = s0 + half * 32;
        float mx = -INFINITY;
        for (int c = 0; c < 32; c++) {
            const int s = c0 + c;
            if (s < sh.T && t < sh.T && (!CAUSAL || s <= t)) mx = fmaxf(mx, srow[c] * sh.scale);
        }
        const float mn = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
        float sum = 0.0f;
        for (int c = 0; c < 32; c++) {
            const int s = c0 + c;
            const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
            const float e = ok ? expf(srow[c] * sh.scale - mn) : 0.0f;
            sum += e;
            prow[c] = __float2bfloat16_rn(e);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float corr = m == -INFINITY ? 0.0f : expf(m - mn);
        l = l * corr + sum;
        m = mn;
        if (half == 0) wW[r] = corr;
        __syncwarp();
        tc_scale_rows<NF>(o, rowno, wW);
        tc_accumulate<HDP>(o, wP, sV);
        __syncwarp(); /* wW is read before the next tile writes it */
    }
    if (half == 0) {
        wW[r] = l > 0.0f ? 1.0f / l : 0.0f;
        if (t < sh.T) lse[(size_t)bh * sh.T + t] = m + logf(l);
    }
    __syncwarp();
    tc_scale_rows<NF>(o, rowno, wW);
    tc_write_rows<HDP>(out + (size_t)b * sh.T * qs + (size_t)h * sh.HD, qs, t0 + warp * 16, sh.T,
                       sh.HD, o, wS, lane);
}

/* D[b, h, t] = sum_d dO[b,t,h,d] O[b,t,h,d]: one warp per row of B*T*NH. */
__global__ void attention_tc_rowdot_kernel(float *D, const float *dout, const float *out,
                                           size_t rows, TcShape sh) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return; /* whole warps */
    const float *g = dout + row * sh.HD, *o = out + row * sh.HD;
    float s = 0.0f;
    for (int d = lane; d < sh.HD; d += 32) s += g[d] * o[d];
    s = warp_sum(s);
    const size_t bt = row / sh.NH, h = row % sh.NH, b = bt / sh.T, t = bt % sh.T;
    if (lane == 0) D[(b * sh.NH + h) * sh.T + t] = s;
}

/* dQ for 64 query rows of one head: over key tiles, S = Q K^T and dP = dO V^T (fragments to
 * shared memory), dS = P (dP - D) with P from lse, dQ += dS K; scaled at the end. */
template <int HDP, bool CAUSAL>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                           const float *v, const float *lse, const float *D, TcShape sh) {
    typedef TcTiles<HDP> S;
    constexpr int NF = HDP / 16, LDH = HDP + 8;
    extern __shared__ TcAlign tc_smem[];
    char *p = (char *)tc_smem;
    bf16 *sQ = (bf16 *)p, *sG = (bf16 *)(p + S::head), *sK = (bf16 *)(p + 2 * S::head);
    bf16 *sV = (bf16 *)(p + 3 * S::head);
    float *sS = (float *)(p + 4 * S::head), *sdP = (float *)(p + 4 * S::head + S::f32);
    bf16 *sdS = (bf16 *)(p + 4 * S::head + 2 * S::f32);
    float *sL = (float *)(p + 4 * S::head + 2 * S::f32 + S::b16), *sD = sL + TC_ROWS;
    const int bh = blockIdx.x, b = bh / sh.NH, h = bh % sh.NH, kh = h / sh.rep;
    const int t0 = blockIdx.y * TC_ROWS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const size_t qoff = (size_t)b * sh.T * qs + (size_t)h * sh.HD;
    const float *kb = k + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    const float *vb = v + (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    tc_stage<HDP>(sQ, q + qoff, qs, t0, sh.T, sh.HD);
    tc_stage<HDP>(sG, dout + qoff, qs, t0, sh.T, sh.HD);
    tc_stage_vec(sL, lse + (size_t)bh * sh.T, t0, sh.T);
    tc_stage_vec(sD, D + (size_t)bh * sh.T, t0, sh.T);
    FragC acc[NF];
#pragma unroll
    for (int f = 0; f < NF; f++) wmma::fill_fragment(acc[f], 0.0f);
    float *wS = sS + warp * 16 * TC_LDF, *wdP = sdP + warp * 16 * TC_LDF;
    bf16 *wdS = sdS + warp * 16 * TC_LDB;
    const int r = lane / 2, half = lane % 2, rr = warp * 16 + r, t = t0 + rr;
    const int kend = CAUSAL ? min(sh.T, t0 + TC_ROWS) : sh.T;
    for (int s0 = 0; s0 < kend; s0 += TC_COLS) {
        __syncthreads();
        tc_stage<HDP>(sK, kb, ks, s0, sh.T, sh.HD);
        tc_stage<HDP>(sV, vb, ks, s0, sh.T, sh.HD);
        __syncthreads();
        tc_scores<HDP>(wS, sQ + warp * 16 * LDH, sK);
        tc_scores<HDP>(wdP, sG + warp * 16 * LDH, sV);
        __syncwarp();
        const float L = sL[rr], Dt = sD[rr];
        for (int c = half * 32; c < half * 32 + 32; c++) {
            const int s = s0 + c;
            const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
            const float pr = ok ? expf(wS[r * TC_LDF + c] * sh.scale - L) : 0.0f;
            wdS[r * TC_LDB + c] = __float2bfloat16_rn(pr * (wdP[r * TC_LDF + c] - Dt));
        }
        __syncwarp();
        tc_accumulate<HDP>(acc, wdS, sK);
    }
    tc_scale<NF>(acc, sh.scale);
    tc_write_rows<HDP>(dq + qoff, qs, t0 + warp * 16, sh.T, sh.HD, acc, wS, lane);
}

/* dK, dV for 64 key rows of one key/value head: over the group's query heads and their query
 * tiles (causal: from the block's first key on), S^T = K Q^T and dP^T = V dO^T, then
 * dV += P^T dO and dK += dS^T Q; dK scaled at the end. */
template <int HDP, bool CAUSAL>
__global__ void __launch_bounds__(TC_WARPS * 32)
    attention_tc_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *lse, const float *D,
                            TcShape sh) {
    typedef TcTiles<HDP> S;
    constexpr int NF = HDP / 16, LDH = HDP + 8;
    extern __shared__ TcAlign tc_smem[];
    char *p = (char *)tc_smem;
    bf16 *sK = (bf16 *)p, *sV = (bf16 *)(p + S::head), *sQ = (bf16 *)(p + 2 * S::head);
    bf16 *sG = (bf16 *)(p + 3 * S::head);
    float *sS = (float *)(p + 4 * S::head), *sdP = (float *)(p + 4 * S::head + S::f32);
    bf16 *sP = (bf16 *)(p + 4 * S::head + 2 * S::f32);
    bf16 *sdS = (bf16 *)(p + 4 * S::head + 2 * S::f32 + S::b16);
    float *sL = (float *)(p + 4 * S::head + 2 * S::f32 + 2 * S::b16), *sD = sL + TC_ROWS;
    const int b = blockIdx.x / sh.NKV, kh = blockIdx.x % sh.NKV, s0 = blockIdx.y * TC_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t qs = (size_t)sh.NH * sh.HD, ks = (size_t)sh.NKV * sh.HD;
    const size_t koff = (size_t)b * sh.T * ks + (size_t)kh * sh.HD;
    tc_stage<HDP>(sK, k + koff, ks, s0, sh.T, sh.HD);
    tc_stage<HDP>(sV, v + koff, ks, s0, sh.T, sh.HD);
    FragC gk[NF], gv[NF];
#pragma unroll
    for (int f = 0; f < NF; f++) wmma::fill_fragment(gk[f], 0.0f), wmma::fill_fragment(gv[f], 0.0f);
    float *wS = sS + warp * 16 * TC_LDF, *wdP = sdP + warp * 16 * TC_LDF;
    bf16 *wP = sP + warp * 16 * TC_LDB, *wdS = sdS + warp * 16 * TC_LDB;
    const int r = lane / 2, half = lane % 2, s = s0 + warp * 16 + r;
    for (int g = 0; g < sh.rep; g++) {
        const int h = kh * sh.rep + g, bh = b * sh.NH + h;
        const size_t qoff = (size_t)b * sh.T * qs + (size_t)h * sh.HD;
        for (int q0 = CAUSAL ? s0 : 0; q0 < sh.T; q0 += TC_ROWS) {
            __syncthreads();
            tc_stage<HDP>(sQ, q + qoff, qs, q0, sh.T, sh.HD);
            tc_stage<HDP>(sG, dout + qoff, qs, q0, sh.T, sh.HD);
            tc_stage_vec(sL, lse + (size_t)bh * sh.T, q0, sh.T);
            tc_stage_vec(sD, D + (size_t)bh * sh.T, q0, sh.T);
            __syncthreads();
            tc_scores<HDP>(wS, sK + warp * 16 * LDH, sQ);
            tc_scores<HDP>(wdP, sV + warp * 16 * LDH, sG);
            __syncwarp();
            for (int c = half * 32; c < half * 32 + 32; c++) {
                const int t = q0 + c;
                const bool ok = s < sh.T && t < sh.T && (!CAUSAL || s <= t);
                const float pr = ok ? expf(wS[r * TC_LDF + c] * sh.scale - sL[c]) : 0.0f;
                wP[r * TC_LDB + c] = __float2bfloat16_rn(pr);
                wdS[r * TC_LDB + c] = __float2bfloat16_rn(pr * (wdP[r * TC_LDF + c] - sD[c]));
            }
            __syncwarp();
            tc_accumulate<HDP>(gv, wP, sG);
            tc_accumulate<HDP>(gk, wdS, sQ);
        }
    }
    tc_scale<NF>(gk, sh.scale);
    tc_write_rows<HDP>(dk + koff, ks, s0 + warp * 16, sh.T, sh.HD, gk, wS, lane);
    tc_write_rows<HDP>(dv + koff, ks, s0 + warp * 16, sh.T, sh.HD, gv, wS, lane);
}

/* ---- launchers ---- */

static int tc_shape(CudaCtx *ctx, TcShape *sh, int T, int NH, int NKV, int HD) {
    if (NH <= 0 || NKV <= 0 || NH % NKV != 0) {
        CUDA_FAIL(ctx, "%d query heads cannot share %d key/value heads (NH must be a multiple "
                       "of NKV)", NH, NKV);
        return 0;
    }
    sh->T = T;
    sh->NH = NH;
    sh->NKV = NKV;
    sh->HD = HD;
    sh->rep = NH / NKV;
    sh->scale = (float)(1.0 / sqrt((double)HD));
    return 1;
}

template <int HDP, bool CAUSAL>
static void tc_forward_run(CudaCtx *ctx, float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, TcShape sh) {
    auto kernel = attention_tc_forward_kernel<HDP, CAUSAL>;
    const size_t smem = TcTiles<HDP>::forward;
    if (!cuda_smem_optin(ctx, (const void *)kernel, smem, __FILE__, __LINE__)) return;
    const dim3 grid((unsigned)(B * sh.NH), (unsigned)((sh.T + TC_ROWS - 1) / TC_ROWS));
    kernel<<<grid, TC_WARPS * 32, smem, ctx->stream>>>(out, lse, q, k, v, sh);
    CUDA_LAUNCHED(ctx);
}

template <int HDP, bool CAUSAL>
static void tc_backward_run(CudaCtx *ctx, float *dq, float *dk, float *dv, float *D,
                            const float *dout, const float *out, const float *q, const float *k,
                            const float *v, const float *lse, int B, TcShape sh) {
    const size_t rows = (size_t)B * sh.T * sh.NH;
    const unsigned warps_per_block = CUDA_BLOCK / 32;
    attention_tc_rowdot_kernel<<<(unsigned)((rows + warps_per_block - 1) / warps_per_block),
                                 CUDA_BLOCK, 0, ctx->stream>>>(D, dout, out, rows, sh);
    if (!CUDA_LAUNCHED(ctx)) return;
    const unsigned tiles = (unsigned)((sh.T + TC_ROWS - 1) / TC_ROWS);
    auto kdq = attention_tc_dq_kernel<HDP, CAUSAL>;
    if (!cuda_smem_optin(ctx, (const void *)kdq, TcTiles<HDP>::dq, __FILE__, __LINE__)) return;
    kdq<<<dim3((unsigned)(B * sh.NH), tiles), TC_WARPS * 32, TcTiles<HDP>::dq, ctx->stream>>>(
        dq, dout, q, k, v, lse, D, sh);
    if (!CUDA_LAUNCHED(ctx)) return;
    auto kkv = attention_tc_dkv_kernel<HDP, CAUSAL>;
    if (!cuda_smem_optin(ctx, (const void *)kkv, TcTiles<HDP>::dkv, __FILE__, __LINE__)) return;
    kkv<<<dim3((unsigned)(B * sh.NKV), tiles), TC_WARPS * 32, TcTiles<HDP>::dkv, ctx->stream>>>(
        dk, dv, dout, q, k, v, lse, D, sh);
    CUDA_LAUNCHED(ctx);
}

/* The head size padded to a compiled tile width (32, 64 or 128). */
#define TC_DISPATCH(HD, CALL)                                                                  \
    do {                                                                                       \
        if ((HD) <= 32) CALL(32);                                                              \
        else if ((HD) <= 64) CALL(64);                                                         \
        else CALL(128);                                                                        \
    } while (0)

void cuda_attention_forward_bf16(Backend *be, Real *out, Real *att, const Real *q, const Real *k,
                                 const Real *v, int B, int T, int NH, int NKV, int HD,
                                 int causal) {
    if (HD > TC_MAX_HD) { /* beyond the tiles: the fp32 kernels */
        (causal ? cuda_attention_forward : cuda_attention_full_forward)(be, out, att, q, k, v, B, T,
                                                                        NH, NKV, HD);
        return;
    }
    CudaCtx *ctx = cuda_begin(be, __func__);
    TcShape sh;
    if (!ctx || B <= 0 || T <= 0 || HD <= 0 || !tc_shape(ctx, &sh, T, NH, NKV, HD)) return;
#define TC_FWD(P)                                                                              \
    (causal ? tc_forward_run<P, true> : tc_forward_run<P, false>)(ctx, out, att, q, k, v, B, sh)
    TC_DISPATCH(HD, TC_FWD);
#undef TC_FWD
}

void cuda_attention_backward_bf16(Backend *be, Real *dq, Real *dk, Real *dv, Real *datt,
                                  const Real *dout, const Real *out, const Real *q,
                                  const Real *k, const Real *v, const Real *att, int B, int T,
                                  int NH, int NKV, int HD, int causal) {
    if (HD > TC_MAX_HD) {
        (causal ? cuda_attention_backward : cuda_attention_full_backward)(
            be, dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD);
        return;
    }
    CudaCtx *ctx = cuda_begin(be, __func__);
    TcShape sh;
    if (!ctx || B <= 0 || T <= 0 || HD <= 0 || !tc_shape(ctx, &sh, T, NH, NKV, HD)) return;
#define TC_BWD(P)                                                                              \
    (causal ? tc_backward_run<P, true> : tc_backward_run<P, false>)(                           \
        ctx, dq, dk, dv, datt, dout, out, q, k, v, att, B, sh)
    TC_DISPATCH(HD, TC_BWD);
#undef TC_BWD
}
