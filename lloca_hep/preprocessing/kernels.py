"""Numba kernels over ragged jets stored as offsets + flat columns.

Every kernel here is a small pure function: inputs are ``offsets`` (int64, ``(n_jets + 1,)``,
non-decreasing, may start at a non-zero value) and flat float columns ``px, py, pz, energy``
(GeV, one value per constituent of all jets together). Outputs are allocated by the caller
(allocating inside a jitted function measured about 4x slower) and filled in place.
Four-vectors are always ordered (E, px, py, pz); momenta stay float64 unless the caller
passes a float32 output buffer.

The public, checked wrappers live in :mod:`lloca_hep.preprocessing.padding` and
:mod:`lloca_hep.preprocessing.validation`; call those unless you need the raw kernels.
"""

from __future__ import annotations

import numpy as np

from lloca_hep._jit import njit_cached

#: Sorting modes of :func:`pad_kernel`.
SORT_NEVER = 0
SORT_ALWAYS = 1
SORT_WHEN_TRUNCATING = 2

#: Flags written by :func:`check_momenta_kernel`, one per constituent.
FLAG_OK = 0
FLAG_NONFINITE = 1
FLAG_NEGATIVE_ENERGY = 2
FLAG_SPACELIKE = 3


#: Jets up to this many constituents are sorted by insertion (keys moved along with the
#: indices); longer ones by insertion-sorted runs of this length plus bottom-up merges.
_INSERTION_RUN = 48


@njit_cached(nogil=True)
def _stable_argsort(keys, n, idx, tmp, key_tmp):
    """Stable ascending argsort of ``keys[:n]`` into ``idx[:n]`` without allocating.

    ``tmp`` (int64) and ``key_tmp`` (float64) are work space of at least ``n``. Already sorted
    input (pT-ordered files such as JetClass) costs one pass; ties keep their original order.
    """
    for k in range(n):
        idx[k] = k
    ordered = True
    for k in range(n - 1):
        if keys[k + 1] < keys[k]:
            ordered = False
            break
    if ordered:
        return
    run = _INSERTION_RUN
    for lo in range(0, n, run):
        hi = min(lo + run, n)
        key_tmp[lo] = keys[lo]
        for a in range(lo + 1, hi):
            key = keys[a]
            b = a - 1
            while b >= lo and key_tmp[b] > key:
                key_tmp[b + 1] = key_tmp[b]
                idx[b + 1] = idx[b]
                b -= 1
            key_tmp[b + 1] = key
            idx[b + 1] = a
    if n <= run:
        return
    width = run
    src = idx
    dst = tmp
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a = lo
            b = mid
            o = lo
            while a < mid and b < hi:
                if keys[src[b]] < keys[src[a]]:
                    dst[o] = src[b]
                    b += 1
                else:
                    dst[o] = src[a]
                    a += 1
                o += 1
            while a < mid:
                dst[o] = src[a]
                a += 1
                o += 1
            while b < hi:
                dst[o] = src[b]
                b += 1
                o += 1
        src, dst = dst, src
        width *= 2
    if src is not idx:
        for k in range(n):
            idx[k] = src[k]


@njit_cached(nogil=True)
def pad_kernel(
    offsets, px, py, pz, energy, sort_by_pt, scratch, order, order_tmp, key_tmp, out, mask,
    n_constituents,
):
    """Sort (optionally) by pT, truncate to the N leading and pad to ``out``.

    Parameters
    ----------
    offsets : int64 ``(n_jets + 1,)``
    px, py, pz, energy : float ``(n_total,)``, GeV
    sort_by_pt : int, :data:`SORT_NEVER` (file order), :data:`SORT_ALWAYS` (descending pT
        inside each jet, stable for ties) or :data:`SORT_WHEN_TRUNCATING` (only jets with more
        than N constituents are sorted, so that the N leading ones are kept)
    scratch : float64 ``(max_count,)`` work space for the sort keys (``max_count`` = the
        largest jet), unused when ``sort_by_pt`` is False
    order, order_tmp : int64 ``(max_count,)`` work space for the permutation
    key_tmp : float64 ``(max_count,)`` work space for the sorted keys
    out : float ``(n_jets, N, 4)``, filled with (E, px, py, pz), zeros in padded slots
    mask : bool ``(n_jets, N)``, True for real constituents
    n_constituents : int64 ``(n_jets,)``, number of constituents before truncation
    """
    n_jets = offsets.shape[0] - 1
    n_max = out.shape[1]
    for i in range(n_jets):
        start = offsets[i]
        n = offsets[i + 1] - start
        n_constituents[i] = n
        m = min(n, n_max)
        if n > 1 and (sort_by_pt == SORT_ALWAYS or (sort_by_pt == SORT_WHEN_TRUNCATING and n > n_max)):
            for k in range(n):
                j = start + k
                scratch[k] = -(px[j] * px[j] + py[j] * py[j])
            _stable_argsort(scratch, n, order, order_tmp, key_tmp)
            for k in range(m):
                j = start + order[k]
                out[i, k, 0] = energy[j]
                out[i, k, 1] = px[j]
                out[i, k, 2] = py[j]
                out[i, k, 3] = pz[j]
                mask[i, k] = True
        else:
            for k in range(m):
                j = start + k
                out[i, k, 0] = energy[j]
                out[i, k, 1] = px[j]
                out[i, k, 2] = py[j]
                out[i, k, 3] = pz[j]
                mask[i, k] = True
        for k in range(m, n_max):
            out[i, k, 0] = 0.0
            out[i, k, 1] = 0.0
            out[i, k, 2] = 0.0
            out[i, k, 3] = 0.0
            mask[i, k] = False


@njit_cached(nogil=True)
def pad_with_scalars_kernel(
    offsets, px, py, pz, energy, scalars, sort_by_pt, scratch, order, order_tmp, key_tmp, out,
    out_scalars, mask, n_constituents,
):
    """:func:`pad_kernel` that also pads per-particle scalars in the same pass.

    ``scalars``: float32 ``(n_total, S)``, one row per constituent (the same order as the
    momenta); ``out_scalars``: float32 ``(n_jets, N, S)``, filled with the rows of the kept
    constituents in the order of ``out`` (zeros in padded slots). Other arguments as for
    :func:`pad_kernel`.
    """
    n_jets = offsets.shape[0] - 1
    n_max = out.shape[1]
    n_s = scalars.shape[1]
    for i in range(n_jets):
        start = offsets[i]
        n = offsets[i + 1] - start
        n_constituents[i] = n
        m = min(n, n_max)
        sort = n > 1 and (sort_by_pt == SORT_ALWAYS or (sort_by_pt == SORT_WHEN_TRUNCATING and n > n_max))
        if sort:
            for k in range(n):
                j = start + k
                scratch[k] = -(px[j] * px[j] + py[j] * py[j])
            _stable_argsort(scratch, n, order, order_tmp, key_tmp)
        for k in range(m):
            j = start + (order[k] if sort else k)
            out[i, k, 0] = energy[j]
            out[i, k, 1] = px[j]
            out[i, k, 2] = py[j]
            out[i, k, 3] = pz[j]
            for s in range(n_s):
                out_scalars[i, k, s] = scalars[j, s]
            mask[i, k] = True
        for k in range(m, n_max):
            out[i, k, 0] = 0.0
            out[i, k, 1] = 0.0
            out[i, k, 2] = 0.0
            out[i, k, 3] = 0.0
            for s in range(n_s):
                out_scalars[i, k, s] = 0.0
            mask[i, k] = False


@njit_cached(nogil=True)
def argsort_pt_kernel(offsets, px, py, scratch, order, order_tmp, key_tmp, out):
    """Global permutation that sorts constituents by descending pT inside each jet.

    ``out`` (int64, ``(offsets[-1] - offsets[0],)``) receives indices into the flat columns
    (relative to ``offsets[0]``); jets keep their order, ties keep their original order.
    """
    n_jets = offsets.shape[0] - 1
    base = offsets[0]
    for i in range(n_jets):
        start = offsets[i]
        n = offsets[i + 1] - start
        if n == 0:
            continue
        for k in range(n):
            j = start + k
            scratch[k] = -(px[j] * px[j] + py[j] * py[j])
        _stable_argsort(scratch, n, order, order_tmp, key_tmp)
        for k in range(n):
            out[start - base + k] = start - base + order[k]






@njit_cached(nogil=True)
def check_momenta_kernel(px, py, pz, energy, rel_tol, abs_tol, flags):
    """Flag unphysical constituents; returns the number flagged.

    ``flags`` (uint8, one per constituent) receives :data:`FLAG_NONFINITE` (NaN or inf in
    any component), :data:`FLAG_NEGATIVE_ENERGY` (E < -abs_tol), :data:`FLAG_SPACELIKE`
    (|p| > E beyond rounding: |p| - E > rel_tol * |p| + abs_tol) or :data:`FLAG_OK`.
    """
    n_bad = 0
    for j in range(px.shape[0]):
        x = px[j]
        y = py[j]
        z = pz[j]
        e = energy[j]
        flag = FLAG_OK
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z) and np.isfinite(e)):
            flag = FLAG_NONFINITE
        elif e < -abs_tol:
            flag = FLAG_NEGATIVE_ENERGY
        else:
            p = np.sqrt(x * x + y * y + z * z)
            if p - e > rel_tol * p + abs_tol:
                flag = FLAG_SPACELIKE
        flags[j] = flag
        if flag != FLAG_OK:
            n_bad += 1
    return n_bad
