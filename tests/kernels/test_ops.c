/* Every CPU op in double precision (the `ops` test): each backward against central finite
 * differences, forwards against naive loops, and the interface conventions (write vs
 * accumulate, aliasing, 1 vs 2 threads bit for bit). One cmocka group per op family, each in
 * its own file (tests/kernels/meson.build lists them beside the kernel files they test). */
#include "tests/kernels/ops_check.h"

int main(void) {
    int (*const families[])(void) = {
        ops_run_backend,     ops_run_matmul,        ops_run_norms, ops_run_rope,
        ops_run_attention,   ops_run_activations,   ops_run_elementwise,
        ops_run_cross_entropy, ops_run_optim,       ops_run_patchify,
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) failed += families[i]();
    return failed != 0;
}
