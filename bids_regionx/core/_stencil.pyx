# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled parts of the random walker: its linear system on a 6-neighbour grid, and the
steps of its conjugate gradient.

The reference builds a scipy sparse Laplacian over the map's voxels and solves it with
``scipy.sparse.linalg.cg``. On a voxel grid that matrix is a 7-point stencil, so this module
stores it as rows of seven slots (x-, y-, z-, diagonal, z+, y+, x+ -- increasing column order)
and computes every entry, every right-hand side and every product with the reference's
operations in the reference's order (see ``_stencil_kernels.h``): the results are
bit-identical, not merely close. Only the Python-level loop and the dot products (numpy's BLAS
``ddot``, as in the reference) stay outside the compiled code.

A system is the tuple ``(groups, gcols, gvals, singles, scols, svals)`` described in
``_stencil_kernels.h``: groups of four consecutive rows whose products run in SIMD lanes, and
single rows.
"""

import numpy as np

from libc.math cimport sqrt
from libc.stdint cimport int32_t, int64_t

cdef extern from "_stencil_kernels.h" nogil:
    void brx_stencil_matvec(const int32_t *groups, const int32_t *gcols, const double *gvals,
                            int64_t n_groups, const int32_t *singles, const int32_t *scols,
                            const double *svals, int64_t n_singles, int64_t stride,
                            const double *p, double *q, const int64_t *which, int64_t k)
    void brx_direction(int64_t n, double *x, double *p, const double *r, double alpha,
                       double beta, int first)
    void brx_axpy(int64_t n, double *x, const double *p, double alpha)
    void brx_residual(int64_t n, double *r, const double *q, double alpha)

ctypedef fused image_t:
    float
    double

#: Marks a neighbour that is outside the crop or not part of the graph (label -1).
ABSENT = -2147483648
cdef int32_t _ABSENT = -2147483648

# Stencil directions in increasing node order: x-, y-, z-, z+, y+, x+.
cdef int _DI[6]
cdef int _DJ[6]
cdef int _DK[6]
_DI[:] = [-1, 0, 0, 0, 0, 1]
_DJ[:] = [0, -1, 0, 0, 1, 0]
_DK[:] = [0, 0, -1, 1, 0, 0]


def prune(int32_t[:, :, ::1] labels):
    """Drop (set to -1) what the walker cannot use, per 6-connected component of labels >= 0.

    Unlabelled voxels (0) in a component without a seed, and seeds (> 0) in a component
    without an unlabelled voxel, become -1; ``labels`` is modified in place. This is what
    the reference's two ``binary_propagation`` calls (seeds, then unlabelled voxels, within
    labels >= 0) leave, computed in one breadth-first pass.
    """
    cdef Py_ssize_t nx = labels.shape[0], ny = labels.shape[1], nz = labels.shape[2]
    cdef Py_ssize_t size = nx * ny * nz, start, head, tail, v, u, i, j, k, s, w
    cdef int32_t *lab = &labels[0, 0, 0] if size else NULL
    cdef bint has_seed, has_unknown
    seen_arr = np.zeros(size, dtype=np.uint8)
    queue_arr = np.empty(size, dtype=np.intp)
    cdef unsigned char[::1] seen = seen_arr
    cdef Py_ssize_t[::1] queue = queue_arr
    cdef Py_ssize_t step[6]
    step[:] = [-ny * nz, -nz, -1, 1, nz, ny * nz]
    tail = 0
    with nogil:
        for v in range(size):
            if lab[v] < 0 or seen[v]:
                continue
            start = head = tail
            queue[tail] = v
            tail += 1
            seen[v] = 1
            has_seed = has_unknown = False
            while head < tail:
                u = queue[head]
                head += 1
                if lab[u] > 0:
                    has_seed = True
                else:
                    has_unknown = True
                i = u // (ny * nz)
                j = (u // nz) % ny
                k = u % nz
                for s in range(6):
                    if (s == 0 and i == 0) or (s == 5 and i == nx - 1) or \
                            (s == 1 and j == 0) or (s == 4 and j == ny - 1) or \
                            (s == 2 and k == 0) or (s == 3 and k == nz - 1):
                        continue
                    w = u + step[s]
                    if lab[w] >= 0 and not seen[w]:
                        seen[w] = 1
                        queue[tail] = w
                        tail += 1
            if has_seed and has_unknown:
                continue
            for head in range(start, tail):
                lab[queue[head]] = -1


def neighbour_steps(const int32_t[:, :, ::1] labels, const image_t[:, :, :] image,
                    double scale):
    """Neighbours of each unknown voxel and the squared, scaled intensity steps to them.

    Parameters
    ----------
    labels : ndarray of int32, shape (x, y, z), C-contiguous
        0 for unknown voxels, 1..L for seeds, -1 outside the graph.
    image : ndarray of float32 or float64, shape (x, y, z)
        Intensities (any memory layout).
    scale : float
        ``beta / (10 std)``; multiplies the squared steps.

    Returns
    -------
    neighbours : ndarray of int32, shape (6, n)
        For unknown voxel ``u`` (numbered in C order) and direction ``s`` (x-, y-, z-, z+, y+,
        x+): the neighbour's unknown number, ``-label`` for a seed, or :data:`ABSENT`.
    edges : ndarray of int32, shape (6, n)
        Where the edge from ``u`` in direction ``s`` is in ``gradients`` (-1 if absent): an
        edge between two unknown voxels is listed once, so both ends share it.
    gradients : ndarray of float64, shape (n_edges,)
        ``float64(|I[u] - I[v]|) ** 2 * scale``, the step taken in the image's dtype as the
        reference does (and ``|a - b| == |b - a|`` exactly, so either end gives it).
    """
    cdef Py_ssize_t nx = labels.shape[0], ny = labels.shape[1], nz = labels.shape[2]
    cdef Py_ssize_t i, j, k, ii, jj, kk, s
    cdef int64_t n = 0, m = 0
    cdef int32_t lab, v
    cdef image_t step
    cdef double d
    number_arr = np.empty((nx, ny, nz), dtype=np.int32)
    cdef int32_t[:, :, ::1] number = number_arr
    with nogil:
        for i in range(nx):
            for j in range(ny):
                for k in range(nz):
                    if labels[i, j, k] == 0:
                        number[i, j, k] = <int32_t>n
                        n += 1
                    else:
                        number[i, j, k] = -1
    neighbours_arr = np.full((6, n), ABSENT, dtype=np.int32)
    edges_arr = np.full((6, n), -1, dtype=np.int32)
    gradients_arr = np.empty(6 * n, dtype=np.float64)
    cdef int32_t[:, ::1] neighbours = neighbours_arr
    cdef int32_t[:, ::1] edges = edges_arr
    cdef double[::1] gradients = gradients_arr
    cdef int64_t u = 0
    with nogil:
        for i in range(nx):
            for j in range(ny):
                for k in range(nz):
                    if labels[i, j, k] != 0:
                        continue
                    for s in range(6):
                        ii = i + _DI[s]
                        jj = j + _DJ[s]
                        kk = k + _DK[s]
                        if ii < 0 or jj < 0 or kk < 0 or ii >= nx or jj >= ny or kk >= nz:
                            continue
                        lab = labels[ii, jj, kk]
                        if lab < 0:
                            continue
                        if lab == 0:
                            v = number[ii, jj, kk]
                            neighbours[s, u] = v
                            if s < 3:
                                # An earlier unknown: it listed this edge in the opposite
                                # direction (x- <-> x+ is s <-> 5 - s).
                                edges[s, u] = edges[5 - s, v]
                                continue
                        else:
                            neighbours[s, u] = -lab
                        # |I[a] - I[b]| in the image's dtype, then float64, squared, scaled.
                        step = image[i, j, k] - image[ii, jj, kk]
                        if step < 0:
                            step = -step
                        d = <double>step
                        gradients[m] = (d * d) * scale
                        edges[s, u] = <int32_t>m
                        m += 1
                    u += 1
    return neighbours_arr, edges_arr, gradients_arr[:m]


def assemble(const int32_t[:, ::1] neighbours, const int32_t[:, ::1] edges,
             const double[::1] weights, Py_ssize_t n_labels, Py_ssize_t stride):
    """The linear system of the unknown voxels, as the reference's Laplacian gives it.

    Parameters
    ----------
    neighbours, edges : ndarray of int32, shape (6, n)
        From :func:`neighbour_steps`.
    weights : ndarray of float64, shape (n_edges,)
        Edge weights ``exp(-gradient) + eps``.
    n_labels : int
        Number of seed labels L.
    stride : int
        Row length (>= n) of the right-hand-side array (rows padded for alignment).

    Returns
    -------
    system : tuple of ndarray
        The matrix: row ``u`` holds ``-w`` towards each unknown neighbour and the weighted
        degree (summed in the reference's order) on the diagonal; see the module docstring.
    rhs : ndarray of float64, shape (L, stride)
        ``b_l[u]``: the weights from ``u`` to seeds of label l summed in node order, -0.0
        where there is none (the reference negates a sparse product whose missing entries
        are +0.0).
    """
    cdef Py_ssize_t n = neighbours.shape[1], u, s, t, r, lab
    cdef double acc, w
    cdef int32_t c
    cols_arr = np.empty((7, n), dtype=np.int32)
    vals_arr = np.zeros((7, n), dtype=np.float64)
    rhs_arr = np.full((n_labels, stride), -0.0, dtype=np.float64)
    cdef int32_t[:, ::1] cols = cols_arr
    cdef double[:, ::1] vals = vals_arr
    cdef double[:, ::1] rhs = rhs_arr
    # Stencil direction s -> matrix slot t (the diagonal takes slot 3).
    cdef int slot[6]
    slot[:] = [0, 1, 2, 4, 5, 6]
    # The reference's degree sums the COO entries of a row in storage order: the edges to
    # z+, y+, x+ (where the voxel is the lower end), then to z-, y-, x-.
    cdef int degree_order[6]
    degree_order[:] = [3, 4, 5, 2, 1, 0]
    with nogil:
        for u in range(n):
            acc = 0.0
            for r in range(6):
                s = degree_order[r]
                if neighbours[s, u] != _ABSENT:
                    acc = acc + (-weights[edges[s, u]])
            vals[3, u] = -acc
            cols[3, u] = <int32_t>u
            for s in range(6):
                t = slot[s]
                c = neighbours[s, u]
                cols[t, u] = _ABSENT
                if c == _ABSENT:
                    continue
                w = weights[edges[s, u]]
                if c >= 0:
                    cols[t, u] = c
                    vals[t, u] = -w
                else:
                    # -(sum of -w) == sum of w, term by term, from -0.0.
                    lab = -c - 1
                    rhs[lab, u] = rhs[lab, u] + w
    return _pack(cols_arr, vals_arr), rhs_arr


cdef bint _run_base(int32_t[:, ::1] cols, Py_ssize_t t, Py_ssize_t i0, Py_ssize_t n,
                    Py_ssize_t *base) noexcept nogil:
    """Whether slot ``t`` of rows i0..i0+3 can be read as one run ``base + j``."""
    cdef Py_ssize_t j
    cdef bint found = False
    cdef int32_t c
    base[0] = i0
    for j in range(4):
        c = cols[t, i0 + j]
        if c == _ABSENT:
            continue
        if not found:
            base[0] = c - j
            found = True
        elif c != base[0] + j:
            return False
    return base[0] >= 0 and base[0] + 3 < n


def _pack(int32_t[:, ::1] cols, const double[:, ::1] vals):
    """Split the rows into SIMD groups and single rows, and lay out each set's matrix.

    Greedy, in row order: rows i..i+3 form a group when every slot's columns can be read as
    one run (an empty slot, whose value is 0, can take any column, so it continues the run);
    otherwise row i is a single and the next row is tried. Groups therefore align with runs
    of voxels along z. An empty slot of a single row gets the row's own column.
    """
    cdef Py_ssize_t n = cols.shape[1], i = 0, t, j
    cdef Py_ssize_t base, n_groups = 0, n_singles = 0
    cdef bint ok
    groups_arr = np.empty(n // 4 + 1, dtype=np.int32)
    gcols_arr = np.empty((n // 4 + 1, 7), dtype=np.int32)
    gvals_arr = np.empty((n // 4 + 1, 7, 4), dtype=np.float64)
    singles_arr = np.empty(n + 1, dtype=np.int32)
    scols_arr = np.empty((n + 1, 7), dtype=np.int32)
    svals_arr = np.empty((n + 1, 7), dtype=np.float64)
    cdef int32_t[::1] groups = groups_arr
    cdef int32_t[:, ::1] gcols = gcols_arr
    cdef double[:, :, ::1] gvals = gvals_arr
    cdef int32_t[::1] singles = singles_arr
    cdef int32_t[:, ::1] scols = scols_arr
    cdef double[:, ::1] svals = svals_arr
    with nogil:
        while i < n:
            ok = i + 4 <= n
            t = 0
            while ok and t < 7:
                ok = _run_base(cols, t, i, n, &base)
                t += 1
            if ok:
                groups[n_groups] = <int32_t>i
                for t in range(7):
                    _run_base(cols, t, i, n, &base)
                    gcols[n_groups, t] = <int32_t>base
                    for j in range(4):
                        gvals[n_groups, t, j] = vals[t, i + j]
                n_groups += 1
                i += 4
            else:
                singles[n_singles] = <int32_t>i
                for t in range(7):
                    scols[n_singles, t] = <int32_t>i if cols[t, i] == _ABSENT else cols[t, i]
                    svals[n_singles, t] = vals[t, i]
                n_singles += 1
                i += 1
    # Leading slices (contiguous views): copying them would cost more than the unused tail.
    return (
        groups_arr[:n_groups], gcols_arr[:n_groups], gvals_arr[:n_groups],
        singles_arr[:n_singles], scols_arr[:n_singles], svals_arr[:n_singles],
    )


cdef class _Matrix:
    """Pointers to a system's arrays (which the caller keeps alive)."""
    cdef const int32_t *groups
    cdef const int32_t *gcols
    cdef const double *gvals
    cdef int64_t n_groups
    cdef const int32_t *singles
    cdef const int32_t *scols
    cdef const double *svals
    cdef int64_t n_singles

    def __init__(self, system):
        cdef const int32_t[::1] groups = system[0]
        cdef const int32_t[:, ::1] gcols = system[1]
        cdef const double[:, :, ::1] gvals = system[2]
        cdef const int32_t[::1] singles = system[3]
        cdef const int32_t[:, ::1] scols = system[4]
        cdef const double[:, ::1] svals = system[5]
        self.n_groups = groups.shape[0]
        self.n_singles = singles.shape[0]
        if self.n_groups:
            self.groups, self.gcols, self.gvals = &groups[0], &gcols[0, 0], &gvals[0, 0, 0]
        if self.n_singles:
            self.singles, self.scols, self.svals = &singles[0], &scols[0, 0], &svals[0, 0]

    cdef void product(self, int64_t stride, const double *p, double *q, const int64_t *which,
                      int64_t k) noexcept nogil:
        brx_stencil_matvec(self.groups, self.gcols, self.gvals, self.n_groups, self.singles,
                           self.scols, self.svals, self.n_singles, stride, p, q, which, k)


def matvec(system, const double[::1] p):
    """``A @ p`` for one vector (the product :func:`solve` uses; exposed for tests).

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    cdef _Matrix matrix = _Matrix(system)
    cdef int64_t row = 0
    q_arr = np.zeros(p.shape[0])
    cdef double[::1] q = q_arr
    if p.shape[0]:
        with nogil:
            matrix.product(p.shape[0], &p[0], &q[0], &row, 1)
    return q_arr


def solve(system, rhs, double rtol):
    """Conjugate gradient for each right-hand side, iterate-identical to scipy's ``cg``.

    Replays ``scipy.sparse.linalg.cg(A, b, rtol=rtol, atol=0)`` from x0 = 0 for every row
    ``b`` of ``rhs`` -- the same recurrences, the same element-wise roundings, numpy's BLAS
    ``ddot`` on contiguous float64 vectors for every dot product and norm, the same stopping
    test and the same ``10 n`` iteration cap -- with all right-hand sides advanced together so
    that each group of matrix rows is read once per iteration for all of them.

    Parameters
    ----------
    system : tuple of ndarray
        The matrix, from :func:`assemble`.
    rhs : ndarray of float64, shape (L, stride), C-contiguous
        Right-hand sides in their first ``n`` columns, n the matrix size (not modified).
    rtol : float

    Returns
    -------
    ndarray of float64, shape (L, n)
    """
    cdef _Matrix matrix = _Matrix(system)
    cdef int64_t n = matrix.n_groups * 4 + matrix.n_singles
    cdef int64_t n_rhs = rhs.shape[0], stride = rhs.shape[1]
    cdef int64_t iteration, i, j, k
    cdef double rho
    if n == 0:
        return np.zeros((n_rhs, 0))
    x_arr = np.zeros((n_rhs, stride))
    r_arr = np.array(rhs, dtype=np.float64, order="C", copy=True)
    p_arr = np.zeros((n_rhs, stride))
    q_arr = np.zeros((n_rhs, stride))
    cdef double[:, ::1] x = x_arr
    cdef double[:, ::1] r = r_arr
    cdef double[:, ::1] p = p_arr
    cdef double[:, ::1] q = q_arr
    r_rows = [r_arr[j, :n] for j in range(n_rhs)]
    p_rows = [p_arr[j, :n] for j in range(n_rhs)]
    q_rows = [q_arr[j, :n] for j in range(n_rhs)]
    which_arr = np.empty(n_rhs, dtype=np.int64)
    cdef int64_t[::1] which = which_arr
    cdef double[::1] atol = np.empty(n_rhs)
    cdef double[::1] rho_now = np.empty(n_rhs)
    cdef double[::1] rho_prev = np.empty(n_rhs)
    cdef double[::1] alpha = np.zeros(n_rhs)
    cdef signed char[::1] running = np.zeros(n_rhs, dtype=np.int8)
    for j in range(n_rhs):
        b_norm = np.linalg.norm(r_rows[j])
        if b_norm == 0:
            # scipy returns b itself (its zeros keep their sign).
            x_arr[j, :n] = r_rows[j]
        else:
            atol[j] = max(0.0, rtol * float(b_norm))
            running[j] = 1
    for iteration in range(10 * n):
        k = 0
        for j in range(n_rhs):
            if not running[j]:
                continue
            # np.linalg.norm(r) is sqrt(r.dot(r)) and scipy's rho = dot(r, r): one ddot.
            rho = r_rows[j].dot(r_rows[j])
            if sqrt(rho) < atol[j]:
                running[j] = 0
                if iteration > 0:
                    with nogil:
                        brx_axpy(n, &x[j, 0], &p[j, 0], alpha[j])
                continue
            rho_now[j] = rho
            which[k] = j
            k += 1
        if k == 0:
            break
        with nogil:
            for i in range(k):
                j = which[i]
                brx_direction(n, &x[j, 0], &p[j, 0], &r[j, 0], alpha[j],
                              rho_now[j] / rho_prev[j] if iteration > 0 else 0.0,
                              iteration == 0)
            matrix.product(stride, &p[0, 0], &q[0, 0], &which[0], k)
        for i in range(k):
            j = which[i]
            alpha[j] = rho_now[j] / p_rows[j].dot(q_rows[j])
            with nogil:
                brx_residual(n, &r[j, 0], &q[j, 0], alpha[j])
            rho_prev[j] = rho_now[j]
    else:
        # The iteration cap: the last updates of x are still pending.
        for j in range(n_rhs):
            if running[j]:
                with nogil:
                    brx_axpy(n, &x[j, 0], &p[j, 0], alpha[j])
    return x_arr[:, :n]
