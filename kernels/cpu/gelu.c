/* GELU on the CPU, three variants (GeluKind in kernels/backend.h):
 *  exact   x Phi(x) = x (1 + erf(x / sqrt 2)) / 2           (HF ViT's "gelu", torch's default)
 *  tanh    x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2  ("gelu_new", GPT-2)
 *  quick   x sigmoid(1.702 x)                               (CLIP's "quick_gelu")
 * erf and tanh come from libm (erf has no vectorised form here; ViT's MLP is a small share
 * of a step); quick uses cpu_exp. */
#include "kernels/cpu/cpu_ops.h"

#define GELU_SQRT1_2 0.70710678118654752440
#define GELU_SQRT2_PI 0.79788456080286535588 /* sqrt(2/pi) */
#define GELU_INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */

static inline Real gelu_value(Real x, GeluKind kind, Real *deriv) {
    switch (kind) {
    case GELU_TANH: {
        const Real u = (Real)GELU_SQRT2_PI * (x + (Real)0.044715 * x * x * x);
        const Real th = (Real)tanh(u);
        /* d/dx = (1 + th) / 2 + x (1 - th^2) / 2 * du/dx */
        if (deriv)
            *deriv = (1 + th) / 2 + x * (1 - th * th) / 2 * (Real)GELU_SQRT2_PI *
                                        (1 + 3 * (Real)0.044715 * x * x);
        return x * (1 + th) / 2;
    }
    case GELU_QUICK: {
        const Real s = 1 / (1 + cpu_exp((Real)-1.702 * x));
        /* d/dx = s + 1.702 x s (1 - s) */
        if (deriv) *deriv = s + (Real)1.702 * x * s * (1 - s);
        return x * s;
    }
    case GELU_ERF:
    default: {
        const Real cdf = (Real)(0.5 * (1.0 + erf((double)x * GELU_SQRT1_2)));
        /* d/dx = Phi(x) + x phi(x) */
        if (deriv) *deriv = cdf + x * (Real)(GELU_INV_SQRT_2PI * exp(-0.5 * (double)x * x));
        return x * cdf;
    }
    }
}

void cpu_gelu_forward(Backend *be, Real *out, const Real *x, size_t n, GeluKind kind) {
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN / 4)
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(x[i], kind, NULL);
}

void cpu_gelu_backward(Backend *be, Real *dx, const Real *dout, const Real *x, size_t n,
                       GeluKind kind) {
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN / 4)
    for (size_t i = 0; i < n; i++) {
        Real d;
        gelu_value(x[i], kind, &d);
        dx[i] = dout[i] * d;
    }
}
