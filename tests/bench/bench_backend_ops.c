/* Op-level benchmark of one backend through kernels/backend.h: the heavy ops of a Llama-2-7B
 * layer (dim 4096, hidden 11008, 32 heads of 128, T = 1024) and of its loss and optimizer, each
 * timed as the median of several synchronised runs, reported as ms and as TFLOP/s or GB/s next
 * to this device's own ceilings measured in the same run (a large device-to-device copy, a
 * large square matmul). Not the training-step benchmark (that needs the model on the device)
 * and not a test: it checks nothing. Usage: bench_backend_ops [cpu|cuda] [--quick]
 * (--quick: shapes 8x smaller per dimension, for a dry run on a CPU). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/philox_block.h"

enum { REPS = 7 };

static Backend *be;
static double copy_gbs, gemm_tflops; /* the ceilings */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die_if_failed(const char *what) {
    if (be->sync(be) != 0) {
        fprintf(stderr, "bench_backend_ops: %s: %s\n", what, be->error(be));
        exit(1);
    }
}

/* n floats of uniform noise in [-1, 1) on the device */
static float *dev_random(size_t n, uint64_t stream) {
    float *h = malloc(n * sizeof(float));
    if (!h) exit(1);
    for (size_t i = 0; i < n; i++) {
        uint32_t w[4];
        philox_sequence_block(w, 1234, stream, i / 4);
        h[i] = 2 * philox_unit_float(w[i % 4]) - 1;
    }
    float *d = be->alloc(be, n * sizeof(float));
    if (!d) die_if_failed("alloc");
    be->to_device(be, d, h, n * sizeof(float));
    free(h);
    return d;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*OpFn)(void *arg);

/* median seconds of REPS synchronised runs, after one warm-up */
static double time_op(OpFn fn, void *arg, const char *name) {
    double t[REPS];
    fn(arg);
    die_if_failed(name);
    for (int r = 0; r < REPS; r++) {
        const double t0 = now_s();
        fn(arg);
        die_if_failed(name);
        t[r] = now_s() - t0;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    return t[REPS / 2];
}

static void report(const char *op, const char *shape, double s, double flops, double bytes) {
    printf("  %-24s %-26s %9.3f ms", op, shape, 1e3 * s);
    if (flops > 0)
        printf("  %8.2f TFLOP/s (%4.1f%% of the matmul ceiling)", flops / s * 1e-12,
               100 * flops / s * 1e-12 / gemm_tflops);
    if (bytes > 0)
        printf("  %8.1f GB/s (%4.1f%% of the copy ceiling)", bytes / s * 1e-9,
               100 * bytes / s * 1e-9 / copy_gbs);
    printf("\n");
}

/* ---- the ops, as closures over their buffers ---- */

typedef struct Bufs {
    float *a, *b, *c, *d, *e, *f;
    int32_t *tok;
    int M, N, K, B, T, NH, HD;
    size_t n;
} Bufs;

static void op_copy(void *p) {
    Bufs *x = p;
    be->copy(be, x->b, x->a, x->n * sizeof(float));
}
static void op_matmul(void *p) {
    Bufs *x = p; /* y[M,N] = x[M,K] W[N,K]^T, a linear layer */
    be->matmul(be, x->c, x->a, x->b, x->M, x->N, x->K, 0, 1, 1, 0);
}
static void op_att_fwd(void *p) {
    Bufs *x = p;
    be->attention_forward(be, x->d, x->e, x->a, x->b, x->c, x->B, x->T, x->NH, x->NH, x->HD);
}
static void op_att_bwd(void *p) {
    Bufs *x = p; /* f holds dq, dk, dv and datt; d (the forward's output) serves as dout */
    const size_t nq = (size_t)x->B * x->T * x->NH * x->HD;
    be->attention_backward(be, x->f, x->f + nq, x->f + 2 * nq, x->f + 3 * nq, x->d, x->a, x->b,
                           x->c, x->e, x->B, x->T, x->NH, x->NH, x->HD);
}
static void op_rmsnorm(void *p) {
    Bufs *x = p;
    be->rmsnorm_forward(be, x->b, x->c, x->a, x->d, x->M, x->K, 1e-5f);
}
static void op_swiglu(void *p) {
    Bufs *x = p;
    be->swiglu_forward(be, x->c, x->a, x->b, x->n);
}
static void op_ce(void *p) {
    Bufs *x = p;
    be->cross_entropy_forward(be, x->b, x->c, x->a, x->tok, x->M, x->N);
    be->cross_entropy_backward(be, x->a, x->a, x->c, x->tok, x->d, x->M, x->N);
}
static void op_adamw(void *p) {
    Bufs *x = p;
    be->adamw_update(be, x->a, x->b, x->c, x->d, x->n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 0.5f,
                     0.5f);
}
static void op_noise(void *p) {
    Bufs *x = p;
    be->add_uniform_noise(be, x->a, x->n, 7, 1, 1e-3f);
}
static void op_sumsq(void *p) {
    Bufs *x = p;
    (void)be->sum_squares(be, x->a, x->n);
}

static void free_all(Bufs *x) {
    float *ps[] = {x->a, x->b, x->c, x->d, x->e, x->f};
    for (int i = 0; i < 6; i++) be->free(be, ps[i]);
    be->free(be, x->tok);
    memset(x, 0, sizeof *x);
}

int main(int argc, char **argv) {
    const char *device = "cuda";
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else
            device = argv[i];
    }
    char err[512];
    be = backend_create(device, 0, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_backend_ops: %s\n", err);
        return 1;
    }
    char desc[512];
    be->describe(be, desc, sizeof desc);
    printf("device: %s\n", desc);
    const int s = quick ? 8 : 1; /* --quick divides every dimension by 8 */
    const int C = 4096 / s, H = 11008 / s, V = 32000 / s, T = 1024 / s, NH = 32 / (quick ? 4 : 1);
    const int HD = C / NH, BT = T;
    Bufs x = {0};
    char shape[64];

    /* ceilings: a large device-to-device copy (read + write bytes), a large square matmul */
    x.n = (size_t)(quick ? 1 << 24 : 1 << 28); /* 1 GiB of floats on the GPU */
    x.a = dev_random(x.n, 1), x.b = be->alloc(be, x.n * sizeof(float));
    copy_gbs = 2.0 * x.n * sizeof(float) / time_op(op_copy, &x, "copy") * 1e-9;
    free_all(&x);
    x.M = x.N = x.K = 8192 / s;
    x.a = dev_random((size_t)x.M * x.K, 2), x.b = dev_random((size_t)x.N * x.K, 3);
    x.c = be->alloc(be, (size_t)x.M * x.N * sizeof(float));
    gemm_tflops = 2.0 * x.M * x.N * x.K / time_op(op_matmul, &x, "matmul") * 1e-12;
    free_all(&x);
    printf("ceilings: copy %.1f GB/s, fp32 matmul %d^3 %.2f TFLOP/s\n\n", copy_gbs, 8192 / s,
           gemm_tflops);

    const int linears[3][2] = {{C, C}, {H, C}, {C, H}}; /* q/k/v/o, gate/up, down: [out, in] */
    const char *lin_names[3] = {"matmul (x Wq^T)", "matmul (x Wup^T)", "matmul (h Wdown^T)"};
    for (int l = 0; l < 3; l++) {
        x.M = BT, x.N = linears[l][0], x.K = linears[l][1];
        x.a = dev_random((size_t)x.M * x.K, 4), x.b = dev_random((size_t)x.N * x.K, 5);
        x.c = be->alloc(be, (size_t)x.M * x.N * sizeof(float));
        snprintf(shape, sizeof shape, "%dx%dx%d", x.M, x.N, x.K);
        report(lin_names[l], shape, time_op(op_matmul, &x, "matmul"), 2.0 * x.M * x.N * x.K, 0);
        free_all(&x);
    }

    x.B = 1, x.T = T, x.NH = NH, x.HD = HD;
    const size_t nq = (size_t)T * NH * HD, natt = (size_t)NH * T * T;
    x.a = dev_random(nq, 6), x.b = dev_random(nq, 7), x.c = dev_random(nq, 8);
    x.d = be->alloc(be, nq * sizeof(float)), x.f = be->alloc(be, (3 * nq + natt) * sizeof(float));
    x.e = be->alloc(be, natt * sizeof(float)); /* T x T for the CPU; CUDA uses NH*T of it */
    const double att_flops = 4.0 * NH * T * (double)T * HD / 2; /* causal: half of QK^T and PV */
    snprintf(shape, sizeof shape, "B1 T%d NH%d HD%d causal", T, NH, HD);
    report("attention_forward", shape, time_op(op_att_fwd, &x, "attention_forward"), att_flops, 0);
    report("attention_backward", shape, time_op(op_att_bwd, &x, "attention_backward"),
           2.5 * att_flops, 0);
    free_all(&x);

    x.M = BT, x.K = C;
    x.a = dev_random((size_t)BT * C, 9), x.b = be->alloc(be, (size_t)BT * C * sizeof(float));
    x.c = be->alloc(be, BT * sizeof(float)), x.d = dev_random(C, 10);
    snprintf(shape, sizeof shape, "%dx%d", BT, C);
    report("rmsnorm_forward", shape, time_op(op_rmsnorm, &x, "rmsnorm"), 0, 8.0 * BT * C);
    free_all(&x);

    x.n = (size_t)BT * H;
    x.a = dev_random(x.n, 11), x.b = dev_random(x.n, 12), x.c = be->alloc(be, x.n * sizeof(float));
    snprintf(shape, sizeof shape, "%zu", x.n);
    report("swiglu_forward", shape, time_op(op_swiglu, &x, "swiglu"), 0, 12.0 * x.n);
    free_all(&x);

    x.M = BT, x.N = V;
    x.a = dev_random((size_t)BT * V, 13), x.b = be->alloc(be, BT * sizeof(float));
    x.c = be->alloc(be, BT * sizeof(float)), x.d = dev_random(BT, 14);
    x.tok = be->alloc(be, BT * sizeof(int32_t)); /* zeros: target 0 on every row */
    snprintf(shape, sizeof shape, "%dx%d (fwd + bwd in place)", BT, V);
    report("cross_entropy", shape, time_op(op_ce, &x, "cross_entropy"), 0, 12.0 * BT * V);
    free_all(&x);

    x.n = (size_t)32 * 2 * 2 * 8 * C; /* LoRA r = 8 on q and v of 32 layers: A and B */
    x.a = dev_random(x.n, 15), x.b = dev_random(x.n, 16), x.c = dev_random(x.n, 17);
    x.d = be->alloc(be, x.n * sizeof(float));
    snprintf(shape, sizeof shape, "%zu params", x.n);
    report("adamw_update", shape, time_op(op_adamw, &x, "adamw"), 0, 28.0 * x.n);
    report("sum_squares (to host)", shape, time_op(op_sumsq, &x, "sum_squares"), 0, 4.0 * x.n);
    free_all(&x);

    x.n = (size_t)C * C;
    x.a = dev_random(x.n, 18);
    snprintf(shape, sizeof shape, "%dx%d (a q matrix)", C, C);
    report("add_uniform_noise", shape, time_op(op_noise, &x, "noise"), 0, 8.0 * x.n);
    free_all(&x);

    die_if_failed("the end");
    backend_destroy(be);
    return 0;
}
