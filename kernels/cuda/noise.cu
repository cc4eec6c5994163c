/* Counter-based uniform noise added in place on CUDA (the LoRASC cascading noise):
 * w[i] += scale * (u_i - 1/2) with u_i word i of Philox-4x32-10 (seed, stream), one thread
 * per block of four words. kernels/philox_block.h is the CPU's own generator, compiled for
 * the device; the add is written with round-to-nearest intrinsics (no FMA contraction), so
 * every element is bit-identical to kernels/cpu/noise.c. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/philox_block.h"

/* ---- kernels ---- */

__global__ void uniform_noise_kernel(float *w, size_t n, uint64_t seed, uint64_t stream,
                                     float scale) {
    const size_t blocks = (n + 3) / 4;
    for (size_t blk = blockIdx.x * (size_t)blockDim.x + threadIdx.x; blk < blocks;
         blk += (size_t)gridDim.x * blockDim.x) {
        uint32_t r[4];
        philox_sequence_block(r, seed, stream, blk);
        for (size_t j = 0; j < 4 && blk * 4 + j < n; j++) {
            const float u = __fsub_rn(philox_unit_float(r[j]), 0.5f);
            w[blk * 4 + j] = __fadd_rn(w[blk * 4 + j], __fmul_rn(scale, u));
        }
    }
}

/* ---- launchers ---- */

void cuda_add_uniform_noise(Backend *be, Real *w, size_t n, uint64_t seed, uint64_t stream,
                            float scale) {
    CudaCtx *ctx = cuda_begin(be, __func__);
    if (!ctx || n == 0) return;
    const size_t blocks = (n + 3) / 4;
    uniform_noise_kernel<<<cuda_grid_for(ctx, blocks, CUDA_BLOCK), CUDA_BLOCK, 0, ctx->stream>>>(
        w, n, seed, stream, scale);
    CUDA_LAUNCHED(ctx);
}
