/* Rotary position embedding on CUDA, in place on x[B,T,NH,HD]: one thread per rotated pair.
 * ROPE_INTERLEAVED pairs (2i, 2i+1) as Meta/llama2.c do; ROPE_HALF pairs (i, i + HD/2) as
 * Hugging Face's rotate_half does. Tables are [T_max, HD/2], row pos0 + t. The backward is
 * the rotation by -angle (the transpose of an orthogonal map). */
#include "kernels/cuda/cuda_common.cuh"

/* ---- kernels ---- */

template <typename T>
__global__ void rope_kernel(T *x, const float *cos_tab, const float *sin_tab, size_t pairs, int T_,
                            int NH, int HD, int pos0, int step, int off, float sign) {
    const int half = HD / 2;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < pairs;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half);
        const size_t bth = idx / half; /* (b*T + t)*NH + h */
        const int t = (int)((bth / NH) % T_);
        const size_t tab = (size_t)(pos0 + t) * half + i;
        const float c = cos_tab[tab], s = sign * sin_tab[tab];
        T *xh = x + bth * HD;
        const float x0 = lsc_ld(xh[i * step]), x1 = lsc_ld(xh[i * step + off]);
        xh[i * step] = lsc_st<T>(x0 * c - x1 * s);
        xh[i * step + off] = lsc_st<T>(x0 * s + x1 * c);
    }
}

/* ---- launchers ---- */

static void rope_launch(CudaCtx *ctx, Real *x, const Real *cos_tab, const Real *sin_tab, int B,
                        int T, int NH, int HD, int pos0, RopeStyle style, float sign) {
    const size_t pairs = (size_t)B * T * NH * (HD / 2);
    if (pairs == 0) return;
    const int step = style == ROPE_INTERLEAVED ? 2 : 1;
    const int off = style == ROPE_INTERLEAVED ? 1 : HD / 2;
    rope_kernel<Real><<<cuda_grid_for(ctx, pairs, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        x, cos_tab, sin_tab, pairs, T, NH, HD, pos0, step, off, sign);
    CUDA_LAUNCHED(ctx);
}

void cuda_rope_forward(Backend *be, Real *x, const Real *cos_tab, const Real *sin_tab, int B,
                       int T, int NH, int HD, int pos0, RopeStyle style) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (ctx) rope_launch(ctx, x, cos_tab, sin_tab, B, T, NH, HD, pos0, style, 1.0f);
}

void cuda_rope_backward(Backend *be, Real *dx, const Real *cos_tab, const Real *sin_tab, int B,
                        int T, int NH, int HD, int pos0, RopeStyle style) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (ctx) rope_launch(ctx, dx, cos_tab, sin_tab, B, T, NH, HD, pos0, style, -1.0f);
}
