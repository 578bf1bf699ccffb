/*
 * Kernels of the random walker's conjugate gradient on a 7-point stencil (see _stencil.pyx).
 *
 * Every value is computed with the same IEEE operations, in the same order, as scipy's
 * sparse products and numpy's element-wise updates: products are rounded before they are
 * added (the build passes -ffp-contract=off and nothing here uses FMA), and a row's sum runs
 * over its columns in increasing order starting from +0.0. SIMD lanes only ever hold
 * *different rows*, never parts of one row's sum, so vectorising changes no result.
 */
#ifndef BIDS_REGIONX_STENCIL_KERNELS_H
#define BIDS_REGIONX_STENCIL_KERNELS_H

#include <stdint.h>
#include <string.h>

#define BRX_SLOTS 7
#define BRX_LANES 4

/* An AVX2 copy next to the baseline one, chosen at load time (GCC/clang on x86-64 glibc, whose
   ifunc resolver picks it; elsewhere the baseline code alone). */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 6))
#define BRX_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define BRX_MULTIVERSION
#endif

typedef double brx_v4d __attribute__((vector_size(32)));

/*
 * q_j = A p_j for the right-hand sides j in which[0..k). p and q hold one vector per row of
 * the arrays, `stride` doubles apart.
 *
 * A has seven slots per row (x-, y-, z-, diagonal, z+, y+, x+: increasing column). A missing
 * neighbour has value +0.0, which never changes a sum (x + 0 == x for x != 0, and a sum
 * started at +0.0 is never -0.0), and any valid column.
 *
 * Rows come in two sets, fixed when the system is built (so no branch depends on the data):
 * - groups: four consecutive rows groups[g]..groups[g]+3 whose columns are consecutive in
 *   every slot. gcols[7g + t] is slot t's first column, gvals[28g + 4t + lane] its values:
 *   the four independent row sums run in SIMD lanes with contiguous loads.
 * - singles: row singles[m] with columns scols[7m + t] and values svals[7m + t].
 * Each group's matrix is read once for all right-hand sides.
 */
BRX_MULTIVERSION
static void brx_stencil_matvec(const int32_t *groups, const int32_t *gcols, const double *gvals,
                               int64_t n_groups, const int32_t *singles, const int32_t *scols,
                               const double *svals, int64_t n_singles, int64_t stride,
                               const double *p, double *q, const int64_t *which, int64_t k)
{
    for (int64_t g = 0; g < n_groups; g++) {
        const int64_t i = groups[g];
        const int32_t *c = gcols + BRX_SLOTS * g;
        const double *v = gvals + BRX_SLOTS * BRX_LANES * g;
        for (int64_t j = 0; j < k; j++) {
            const double *pj = p + which[j] * stride;
            brx_v4d s = {0.0, 0.0, 0.0, 0.0};
            for (int t = 0; t < BRX_SLOTS; t++) {
                brx_v4d a, x;
                memcpy(&a, v + BRX_LANES * t, sizeof a);
                memcpy(&x, pj + c[t], sizeof x);
                s = s + a * x;
            }
            memcpy(q + which[j] * stride + i, &s, sizeof s);
        }
    }
    for (int64_t m = 0; m < n_singles; m++) {
        const int64_t r = singles[m];
        const int32_t *c = scols + BRX_SLOTS * m;
        const double *v = svals + BRX_SLOTS * m;
        for (int64_t j = 0; j < k; j++) {
            const double *pj = p + which[j] * stride;
            double s = 0.0;
            for (int t = 0; t < BRX_SLOTS; t++)
                s = s + v[t] * pj[c[t]];
            q[which[j] * stride + r] = s;
        }
    }
}

/*
 * The new search direction p = p * beta + r (numpy's `p *= beta; p += r`), after applying the
 * previous iteration's x += alpha * p: scipy updates x right after its product, but nothing
 * reads x in between, so doing it here gives the same x with one pass less over p.
 * On the first iteration p = r and x is untouched.
 */
BRX_MULTIVERSION
static void brx_direction(int64_t n, double *x, double *p, const double *r, double alpha,
                          double beta, int first)
{
    if (first) {
        memcpy(p, r, (size_t)n * sizeof(double));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        x[i] = x[i] + alpha * p[i];
        p[i] = p[i] * beta + r[i];
    }
}

/* x += alpha * p: the last iteration's update of x (see brx_direction). */
BRX_MULTIVERSION
static void brx_axpy(int64_t n, double *x, const double *p, double alpha)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] + alpha * p[i];
}

/* r -= alpha * q (numpy's `r -= alpha*q`). */
BRX_MULTIVERSION
static void brx_residual(int64_t n, double *r, const double *q, double alpha)
{
    for (int64_t i = 0; i < n; i++)
        r[i] = r[i] - alpha * q[i];
}

#endif
