/* Per-row and per-column ops on the CPU: row L2 norms, column-wise dot products, and
 * broadcast scaling of rows or columns, plus elementwise division of vectors. They are the
 * pieces of DoRA's magnitude/direction split; nothing here knows that. */
#include "kernels/cpu/cpu_ops.h"

/* Columns handled together by col_dot: one double accumulator each, on the stack. */
#define COL_CHUNK 256

void cpu_row_norm(Backend *be, Real *norm, const Real *x, int N, int C) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real *row = x + (size_t)n * (size_t)C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += (double)row[c] * (double)row[c];
        norm[n] = (Real)sqrt(s);
    }
}

/* Rows are walked in order inside each chunk of columns, so memory is read row by row and
 * every sum has one fixed order whatever the thread count. */
void cpu_col_dot(Backend *be, Real *out, const Real *a, const Real *b, int N, int C) {
    (void)be;
    const int chunks = (C + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PARALLEL_MIN)
    for (int k = 0; k < chunks; k++) {
        const int c0 = k * COL_CHUNK, width = C - c0 < COL_CHUNK ? C - c0 : COL_CHUNK;
        double acc[COL_CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const Real *ra = a + (size_t)n * (size_t)C + c0, *rb = b + (size_t)n * (size_t)C + c0;
            for (int c = 0; c < width; c++) acc[c] += (double)ra[c] * (double)rb[c];
        }
        for (int c = 0; c < width; c++) out[c0 + c] = (Real)acc[c];
    }
}

void cpu_scale_rows(Backend *be, Real *out, const Real *x, const Real *s, int N, int C) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const Real sn = s[n];
        const size_t base = (size_t)n * (size_t)C;
        for (int c = 0; c < C; c++) out[base + c] = sn * x[base + c];
    }
}

void cpu_scale_cols(Backend *be, Real *out, const Real *x, const Real *s, int N, int C) {
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const size_t base = (size_t)n * (size_t)C;
#pragma omp simd
        for (int c = 0; c < C; c++) out[base + c] = x[base + c] * s[c];
    }
}

void cpu_divide(Backend *be, Real *out, const Real *a, const Real *b, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] / b[i];
}
