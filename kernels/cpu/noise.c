/* Counter-based uniform noise added in place (the LoRASC cascading noise). Each block of
 * four words is independent, so threads split the blocks and the result does not depend
 * on the thread count. */
#include "kernels/cpu/cpu_ops.h"
#include "kernels/philox_block.h"

void cpu_add_uniform_noise(Backend *be, Real *w, size_t n, uint64_t seed, uint64_t stream,
                           float scale) {
    (void)be;
    const size_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > 4096)
    for (size_t blk = 0; blk < blocks; blk++) {
        uint32_t r[4];
        philox_sequence_block(r, seed, stream, blk);
        for (size_t j = 0; j < 4 && blk * 4 + j < n; j++)
            w[blk * 4 + j] += (Real)(scale * (philox_unit_float(r[j]) - 0.5f));
    }
}
