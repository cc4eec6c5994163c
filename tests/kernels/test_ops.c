/* Every CPU op in double precision (the `ops` test): each backward against central finite
 * differences, forwards against naive loops, and the interface conventions (write vs
 * accumulate, aliasing, 1 vs 2 threads bit for bit). One cmocka group per op family, each in
 * its own file (tests/kernels/meson.build lists them beside the kernel files they test). */
#include "tests/kernels/ops_check.h"

int main(void) {
    int (*const families[])(void) = {
        ops_backend_run,       ops_matmul_run, ops_norms_run,       ops_rope_run,
        ops_attention_run,     ops_activations_run, ops_elementwise_run,
        ops_cross_entropy_run, ops_optim_run,  ops_patchify_run,
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) failed += families[i]();
    return failed != 0;
}
