"""Numba fast paths for the per-particle frame arithmetic, CPU inference only.

* :func:`transform_vectors_`: the frame transforms of the O(N) attention.
* :func:`polar_frames_numba`: the polar decomposition of :func:`lloca_hep.core.frames.polar_frames`
  with the same degenerate-input rules.
* :func:`relative_frames_numba`: ``T_i = L_i L_J^{-1}`` without a matrix inverse.

Moving the vector channels of queries, keys, values and outputs between frames is, per token, a
handful of ``4 x 4`` matrix-vector products. As torch ops that is a batched matmul of tiny
matrices plus the copies in and out of the strided channel slices; the kernel here does it in
place in one pass over the memory (about 2-3x faster on CPU, see ``docs/benchmarks.md``).

The frame constructions are dozens of tiny torch ops (4x4 batched matmuls, concatenations) per
call; as scalar loops they cost a few microseconds per batch of jets.

The fast paths are taken only when autograd is not involved, the tensors live on the CPU in float32
or float64, and nothing is being traced (``torch.export`` / ``torch.compile``); otherwise the
torch expression in :mod:`lloca_hep.core.attention` runs. Both compute the same products and
agree to float rounding (the order of the four additions may differ); each path on its own is
deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

__all__ = ["can_use_kernels", "polar_frames_numba", "relative_frames_numba", "transform_vectors_"]

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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _polar_frames_kernel(v, out, timelike_tol, time_shift, floor, spatial_tol):  # pragma: no cover
    """``v (M, 3, 4)`` float64 vectors v0, v1, v2 -> ``out (M, 4, 4)`` frames ``L = R B``.

    Same rules as :func:`lloca_hep.core.frames.polar_frames` (regularised ``v0``, pure rest boost
    from the four-velocity, 3D Gram-Schmidt with the fallbacks of ``gram_schmidt_3d``).
    """
    boost = np.empty((4, 4))
    b12 = np.empty((2, 4))
    e = np.empty((3, 3))
    for m in range(v.shape[0]):
        # regularise_timelike(v0)
        t, x, y, z = v[m, 0, 0], v[m, 0, 1], v[m, 0, 2], v[m, 0, 3]
        m2 = t * t - (x * x + y * y + z * z)
        if not (m2 > timelike_tol * t * t and t > 0):
            t = max(t, math.sqrt(x * x + y * y + z * z)) * (1.0 + time_shift) + floor
            m2 = t * t - (x * x + y * y + z * z)
        # rest_boost: [[u0, -u^T], [-u, I + u u^T / (1 + u0)]]
        mass = math.sqrt(m2)
        u0, u1, u2, u3 = t / mass, x / mass, y / mass, z / mass
        us = (u1, u2, u3)
        boost[0, 0] = u0
        for i in range(3):
            boost[0, i + 1] = -us[i]
            boost[i + 1, 0] = -us[i]
            for j in range(3):
                boost[i + 1, j + 1] = (1.0 if i == j else 0.0) + us[i] * us[j] / (1.0 + u0)
        # B v1, B v2 and their scales (largest absolute component)
        for k in range(2):
            sc = 0.0
            for i in range(4):
                acc = 0.0
                for j in range(4):
                    acc += boost[i, j] * v[m, k + 1, j]
                b12[k, i] = acc
                sc = max(sc, abs(acc))
            b12[k, 0] = sc  # the time component is not needed below: keep the scale there
        # gram_schmidt_3d
        n1 = math.sqrt(b12[0, 1] ** 2 + b12[0, 2] ** 2 + b12[0, 3] ** 2)
        n2 = math.sqrt(b12[1, 1] ** 2 + b12[1, 2] ** 2 + b12[1, 3] ** 2)
        d1 = max(n1, floor)
        d2 = max(n2, floor)
        a1 = (b12[0, 1] / d1, b12[0, 2] / d1, b12[0, 3] / d1)
        a2 = (b12[1, 1] / d2, b12[1, 2] / d2, b12[1, 3] / d2)
        ok1 = n1 > spatial_tol * b12[0, 0] + floor
        ok2 = n2 > spatial_tol * b12[1, 0] + floor
        if ok1:
            e1 = a1
        elif ok2:
            e1 = a2
        else:
            e1 = (1.0, 0.0, 0.0)
        # e2: the first usable of u2, u1 and the Cartesian axis least aligned with e1
        found = False
        for c in range(3):
            if c == 0:
                if not ok2:
                    continue
                w = a2
            elif c == 1:
                if not ok1:
                    continue
                w = a1
            else:
                ax = 0
                if abs(e1[1]) < abs(e1[ax]):
                    ax = 1
                if abs(e1[2]) < abs(e1[ax]):
                    ax = 2
                w = (1.0 if ax == 0 else 0.0, 1.0 if ax == 1 else 0.0, 1.0 if ax == 2 else 0.0)
            dot = w[0] * e1[0] + w[1] * e1[1] + w[2] * e1[2]
            r0, r1, r2 = w[0] - dot * e1[0], w[1] - dot * e1[1], w[2] - dot * e1[2]
            rn = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
            if c < 2 and not rn > spatial_tol:
                continue
            rd = max(rn, floor)
            e2 = (r0 / rd, r1 / rd, r2 / rd)
            found = True
            break
        if not found:  # unreachable: the least aligned axis is never parallel to e1
            e2 = (0.0, 1.0, 0.0)
        e3 = (
            e1[1] * e2[2] - e1[2] * e2[1],
            e1[2] * e2[0] - e1[0] * e2[2],
            e1[0] * e2[1] - e1[1] * e2[0],
        )
        for j in range(3):
            e[0, j] = e1[j]
            e[1, j] = e2[j]
            e[2, j] = e3[j]
        # L = diag(1, e) @ B
        for j in range(4):
            out[m, 0, j] = boost[0, j]
        for i in range(3):
            for j in range(4):
                out[m, i + 1, j] = (
                    e[i, 0] * boost[1, j] + e[i, 1] * boost[2, j] + e[i, 2] * boost[3, j]
                )


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


@njit(cache=True, nogil=True)
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
