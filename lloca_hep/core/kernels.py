"""Numba fast paths for the per-particle frame arithmetic, CPU inference only.

* :func:`transform_vectors_`: the frame transforms of the O(N) attention.
* :func:`polar_frames_numba`: the polar decomposition of :func:`lloca_hep.core.frames.polar_frames`
  with the same degenerate-input rules.
* :func:`relative_frames_numba`: ``T_i = L_i L_J^{-1}`` without a matrix inverse.
* :func:`rest_boosts_numba`: the jets' rest boosts of :mod:`lloca_hep.core.restframe`.

Moving the vector channels of queries, keys, values and outputs between frames is, per token, a
handful of ``4 x 4`` matrix-vector products. As torch ops that is a batched matmul of tiny
matrices plus the copies in and out of the strided channel slices; the kernel here does it in
place in one pass over the memory (about 2-3x faster on CPU, see ``docs/benchmarks.md``).

The frame constructions are dozens of tiny torch ops (4x4 batched matmuls, concatenations) per
call, each with its dispatch cost; as scalar loops they cost about 50 ns per frame.

The fast paths are taken only when autograd is not involved, the tensors live on the CPU in float32
or float64, and nothing is being traced (``torch.export`` / ``torch.compile``); otherwise the
torch expressions (in :mod:`lloca_hep.core.attention`, :mod:`lloca_hep.core.frames`,
:mod:`lloca_hep.core.framechoices` and :mod:`lloca_hep.core.restframe`) run. Both compute the
same products and agree to float rounding (the order of additions may differ); each path on its
own is deterministic. ``tests/test_core_kernels.py`` compares them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lloca_hep._jit import njit_cached

__all__ = [
    "can_use_kernels",
    "polar_frames_numba",
    "relative_frames_numba",
    "rest_boosts_numba",
    "transform_vectors_",
]

#: dtypes the kernels are compiled for.
KERNEL_DTYPES = (torch.float32, torch.float64)


def can_use_kernels(*tensors: torch.Tensor) -> bool:
    """True when the numba kernels may replace torch ops for these tensors: CPU, float32/64,
    same dtype, no autograd graph to record, and not inside a trace."""
    if torch.compiler.is_compiling():
        return False
    dtype = tensors[0].dtype
    if dtype not in KERNEL_DTYPES:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype or (grad and t.requires_grad):
            return False
    return True


@njit_cached(nogil=True)
def _transform_vectors_kernel(t, frames, row_signs, start, num_vectors):  # pragma: no cover
    """In place: ``t[b, n, s, h, start + 4m : start + 4m + 4] <- S_s frames[b, n] @ (that)``.

    ``t (B, N, S, H, D)``, ``frames (B, N, 4, 4)``, ``row_signs (S, 4)`` (``S_s`` = diag of row
    ``s``), ``m < num_vectors``.
    """
    B, N, S, H, _ = t.shape
    for b in range(B):
        for n in range(N):
            f = frames[b, n]
            for s in range(S):
                g0, g1, g2, g3 = row_signs[s, 0], row_signs[s, 1], row_signs[s, 2], row_signs[s, 3]
                f00, f01, f02, f03 = g0 * f[0, 0], g0 * f[0, 1], g0 * f[0, 2], g0 * f[0, 3]
                f10, f11, f12, f13 = g1 * f[1, 0], g1 * f[1, 1], g1 * f[1, 2], g1 * f[1, 3]
                f20, f21, f22, f23 = g2 * f[2, 0], g2 * f[2, 1], g2 * f[2, 2], g2 * f[2, 3]
                f30, f31, f32, f33 = g3 * f[3, 0], g3 * f[3, 1], g3 * f[3, 2], g3 * f[3, 3]
                for h in range(H):
                    row = t[b, n, s, h]
                    for m in range(num_vectors):
                        o = start + 4 * m
                        x0, x1, x2, x3 = row[o], row[o + 1], row[o + 2], row[o + 3]
                        row[o] = f00 * x0 + f01 * x1 + f02 * x2 + f03 * x3
                        row[o + 1] = f10 * x0 + f11 * x1 + f12 * x2 + f13 * x3
                        row[o + 2] = f20 * x0 + f21 * x1 + f22 * x2 + f23 * x3
                        row[o + 3] = f30 * x0 + f31 * x1 + f32 * x2 + f33 * x3


def transform_vectors_(
    t: torch.Tensor,
    frames: torch.Tensor,
    start: int,
    num_vectors: int,
    row_signs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transform the vector channels of ``t`` in place and return ``t``.

    Args:
        t: ``(B, N, S, H, D)`` features (any strides): ``S`` slots (e.g. query, key, value) of
            ``H`` heads; channels ``start : start + 4 * num_vectors`` hold four-vectors
            (E, px, py, pz) one after the other.
        frames: ``(B, N, 4, 4)`` matrices, one per token, shared by the slots.
        start, num_vectors: where the vectors sit in the last axis and how many there are.
        row_signs: ``(S, 4)`` signs multiplying the rows of the matrix per slot (e.g. the metric
            to lower the index of keys); default all +1.

    Call only when :func:`can_use_kernels` ``(t, frames)`` is true.
    """
    if t.dim() != 5 or frames.shape != (*t.shape[:2], 4, 4):
        raise ValueError(
            f"expected t (B, N, S, H, D) and frames (B, N, 4, 4), got {tuple(t.shape)} and "
            f"{tuple(frames.shape)}"
        )
    if start < 0 or start + 4 * num_vectors > t.shape[-1]:
        raise ValueError(f"vector channels {start}:{start + 4 * num_vectors} outside {t.shape[-1]}")
    if row_signs is None:
        signs = np.ones((t.shape[2], 4), dtype=t.detach().numpy().dtype)
    else:
        signs = np.ascontiguousarray(row_signs.detach().to(t.dtype).numpy())
        if signs.shape != (t.shape[2], 4):
            raise ValueError(f"row_signs must be ({t.shape[2]}, 4), got {signs.shape}")
    if t.numel() and num_vectors:
        arr = t.detach().numpy()
        mats = np.ascontiguousarray(frames.detach().numpy())
        _transform_vectors_kernel(arr, mats, signs, start, num_vectors)
    return t


@njit_cached(nogil=True)
def _rest_boost_into(v, timelike_tol, time_shift, floor, out):  # pragma: no cover - numba
    """``out (4, 4)`` <- pure boost taking the regularised ``v (4,)`` to rest (the rules of
    ``regularise_timelike`` and ``rest_boost``: ``[[u0, -u^T], [-u, I + u u^T / (1 + u0)]]``);
    returns the mass of the regularised ``v``."""
    t, x, y, z = v[0], v[1], v[2], v[3]
    m2 = t * t - (x * x + y * y + z * z)
    if not (m2 > timelike_tol * t * t and t > 0):
        t = max(t, math.sqrt(x * x + y * y + z * z)) * (1.0 + time_shift) + floor
        m2 = t * t - (x * x + y * y + z * z)
    mass = math.sqrt(m2)
    u0 = t / mass
    us = (x / mass, y / mass, z / mass)
    out[0, 0] = u0
    for i in range(3):
        out[0, i + 1] = -us[i]
        out[i + 1, 0] = -us[i]
        for j in range(3):
            out[i + 1, j + 1] = (1.0 if i == j else 0.0) + us[i] * us[j] / (1.0 + u0)
    return mass


@njit_cached(nogil=True)
def _boosted_direction(boost, w, floor):  # pragma: no cover - numba
    """Spatial part of ``boost @ w`` normalised (floor on the norm), its norm, and the scale
    (largest absolute component of ``boost @ w``)."""
    c0 = boost[0, 0] * w[0] + boost[0, 1] * w[1] + boost[0, 2] * w[2] + boost[0, 3] * w[3]
    c1 = boost[1, 0] * w[0] + boost[1, 1] * w[1] + boost[1, 2] * w[2] + boost[1, 3] * w[3]
    c2 = boost[2, 0] * w[0] + boost[2, 1] * w[1] + boost[2, 2] * w[2] + boost[2, 3] * w[3]
    c3 = boost[3, 0] * w[0] + boost[3, 1] * w[1] + boost[3, 2] * w[2] + boost[3, 3] * w[3]
    scale = max(max(abs(c0), abs(c1)), max(abs(c2), abs(c3)))
    norm = math.sqrt(c1 * c1 + c2 * c2 + c3 * c3)
    d = max(norm, floor)
    return (c1 / d, c2 / d, c3 / d), norm, scale


@njit_cached(nogil=True)
def _orthogonalised(w, e1):  # pragma: no cover - numba
    """``w - (w . e1) e1`` and its norm."""
    dot = w[0] * e1[0] + w[1] * e1[1] + w[2] * e1[2]
    r = (w[0] - dot * e1[0], w[1] - dot * e1[1], w[2] - dot * e1[2])
    return r, math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])


@njit_cached(nogil=True)
def _least_aligned_axis(e1):  # pragma: no cover - numba
    """The Cartesian unit vector with the smallest ``|e1 . axis|`` (ties: lowest index)."""
    ax = 0
    if abs(e1[1]) < abs(e1[ax]):
        ax = 1
    if abs(e1[2]) < abs(e1[ax]):
        ax = 2
    return (1.0 if ax == 0 else 0.0, 1.0 if ax == 1 else 0.0, 1.0 if ax == 2 else 0.0)


@njit_cached(nogil=True)
def _gram_schmidt_sources(u1, ok1, u2, ok2, spatial_tol):  # pragma: no cover - numba
    """The fallback rules of ``gram_schmidt_3d``: ``e1`` from u1, else u2, else x; the second
    axis from ``a`` = u2, else u1, else the Cartesian axis least aligned with ``e1``.

    Returns ``(src1, e1, src2, a, r, |r|)`` with ``r = a - (a . e1) e1`` and the sources coded
    1 = u1, 2 = u2, 0 = a constant axis (the backward pass of the frames replays these choices).
    """
    if ok1:
        src1, e1 = 1, u1
    elif ok2:
        src1, e1 = 2, u2
    else:
        src1, e1 = 0, (1.0, 0.0, 0.0)
    src2, a = 2, u2
    r, rn = _orthogonalised(a, e1)
    if not (ok2 and rn > spatial_tol):
        src2, a = 1, u1
        r, rn = _orthogonalised(a, e1)
        if not (ok1 and rn > spatial_tol):
            src2, a = 0, _least_aligned_axis(e1)
            r, rn = _orthogonalised(a, e1)
    return src1, e1, src2, a, r, rn


@njit_cached(nogil=True)
def _gram_schmidt_axes(u1, ok1, u2, ok2, floor, spatial_tol):  # pragma: no cover - numba
    """Rows ``e1, e2, e3`` with the fallbacks of ``gram_schmidt_3d``
    (:func:`_gram_schmidt_sources`)."""
    _, e1, _, _, r, rn = _gram_schmidt_sources(u1, ok1, u2, ok2, spatial_tol)
    d = max(rn, floor)
    e2 = (r[0] / d, r[1] / d, r[2] / d)
    e3 = (
        e1[1] * e2[2] - e1[2] * e2[1],
        e1[2] * e2[0] - e1[0] * e2[2],
        e1[0] * e2[1] - e1[1] * e2[0],
    )
    return e1, e2, e3


@njit_cached(nogil=True)
def _polar_frames_kernel(v, out, timelike_tol, time_shift, floor, spatial_tol):  # pragma: no cover
    """``v (M, 3, 4)`` float64 vectors v0, v1, v2 -> ``out (M, 4, 4)`` frames ``L = R B``.

    Same rules as :func:`lloca_hep.core.frames.polar_frames`: rest boost ``B`` of the regularised
    ``v0``, then 3D Gram-Schmidt of the boosted ``v1, v2`` with the fallbacks of
    ``gram_schmidt_3d``, then ``L = diag(1, R) B`` (rows 1-3 of ``B`` rotated in place).
    """
    for m in range(v.shape[0]):
        L = out[m]
        _rest_boost_into(v[m, 0], timelike_tol, time_shift, floor, L)
        u1, n1, s1 = _boosted_direction(L, v[m, 1], floor)
        u2, n2, s2 = _boosted_direction(L, v[m, 2], floor)
        ok1 = n1 > spatial_tol * s1 + floor
        ok2 = n2 > spatial_tol * s2 + floor
        e1, e2, e3 = _gram_schmidt_axes(u1, ok1, u2, ok2, floor, spatial_tol)
        for j in range(4):
            b1, b2, b3 = L[1, j], L[2, j], L[3, j]
            L[1, j] = e1[0] * b1 + e1[1] * b2 + e1[2] * b3
            L[2, j] = e2[0] * b1 + e2[1] * b2 + e2[2] * b3
            L[3, j] = e3[0] * b1 + e3[1] * b2 + e3[2] * b3


def polar_frames_numba(
    v0: torch.Tensor,
    v1: torch.Tensor,
    v2: torch.Tensor,
    *,
    timelike_tol: float,
    time_shift: float,
    floor: float,
    spatial_tol: float,
) -> torch.Tensor:
    """:func:`lloca_hep.core.frames.polar_frames` as one numba pass: ``v0, v1, v2 (..., 4)``
    (float64) -> ``(..., 4, 4)`` float64, with the tolerances of :mod:`lloca_hep.core.frames`
    passed in. Call only when :func:`can_use_kernels` holds."""
    v = torch.stack([v0, v1, v2], dim=-2).to(torch.float64)
    shape = v.shape[:-2]
    flat = v.reshape(-1, 3, 4).detach().numpy()
    out = np.empty((flat.shape[0], 4, 4))
    _polar_frames_kernel(flat, out, timelike_tol, time_shift, floor, spatial_tol)
    return torch.from_numpy(out).view(*shape, 4, 4)


@njit_cached(nogil=True)
def _rest_boosts_kernel(v, out, mass, timelike_tol, time_shift, floor):  # pragma: no cover
    """``v (M, 4)`` -> ``out (M, 4, 4)`` rest boosts and ``mass (M,)`` of the regularised ``v``."""
    for m in range(v.shape[0]):
        mass[m] = _rest_boost_into(v[m], timelike_tol, time_shift, floor, out[m])


def rest_boosts_numba(
    v: torch.Tensor, *, timelike_tol: float, time_shift: float, floor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rest_boost(regularise_timelike(v))`` and the regularised mass for ``v (..., 4)`` float64,
    as one numba pass. Call only when :func:`can_use_kernels` holds."""
    flat = np.ascontiguousarray(v.detach().to(torch.float64).reshape(-1, 4).numpy())
    out = np.empty((flat.shape[0], 4, 4))
    mass = np.empty(flat.shape[0])
    _rest_boosts_kernel(flat, out, mass, timelike_tol, time_shift, floor)
    shape = v.shape[:-1]
    return torch.from_numpy(out).view(*shape, 4, 4), torch.from_numpy(mass).view(shape)


@njit_cached(nogil=True)
def _relative_frames_kernel(frames, ref, out):  # pragma: no cover - numba
    """``out[b, n] = frames[b, n] @ g ref[b]^T g`` for ``frames (B, N, 4, 4)``, ``ref (B, 4, 4)``."""
    for b in range(frames.shape[0]):
        r = ref[b]
        for n in range(frames.shape[1]):
            f = frames[b, n]
            for i in range(4):
                for j in range(4):
                    # (g r^T g)[k, j] = g_k g_j r[j, k]; g_0 = +1, g_1..3 = -1
                    acc = f[i, 0] * r[j, 0] - f[i, 1] * r[j, 1] - f[i, 2] * r[j, 2]
                    acc -= f[i, 3] * r[j, 3]
                    out[b, n, i, j] = acc if j == 0 else -acc


def relative_frames_numba(frames: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``T = frames @ inverse(ref)[:, None]``: ``frames (B, N, 4, 4)``, ``ref (B, 4, 4)``, float64.
    Call only when :func:`can_use_kernels` holds."""
    f = np.ascontiguousarray(frames.detach().numpy())
    r = np.ascontiguousarray(ref.detach().numpy())
    out = np.empty(f.shape)
    _relative_frames_kernel(f, r, out)
    return torch.from_numpy(out)
