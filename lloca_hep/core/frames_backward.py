"""Hand-written backward of the learned frames: polar decomposition and relative frames (training).

Under autograd, :func:`lloca_hep.core.frames.polar_frames` and the relative frames
``T_i = L_i L_J^{-1}`` are dozens of small float64 torch ops on ``(B, N, 4, 4)`` tensors, each
with its own backward node: about 9 ms per training step of the shipped tagger (batch 128,
N = 48, one thread), for arithmetic that costs tens of microseconds as scalar loops.
:class:`LearnedFrames` does the forward with the numba kernels of inference
(:mod:`lloca_hep.core.kernels`, so training and inference frames agree bitwise) and the backward
as one numba pass, reverse-mode by hand per frame:

* the rotation ``R`` (rows ``e1, e2, e3``) and the boost ``B`` get ``gR = gL[1:] B[1:]^T``,
  ``gB = [gL[0]; R^T gL[1:]]``;
* ``e3 = e1 x e2`` passes ``e2 x g3`` to ``e1`` and ``g3 x e1`` to ``e2``; the normalisations
  ``e = r / |r|`` pass ``(g - e (e . g)) / |r|``; the Gram-Schmidt step ``r = a - (a . e1) e1``
  passes ``g - (g . e1) e1`` to ``a`` and ``-(a . e1) g - (g . e1) a`` to ``e1``;
* the boosted vectors ``c = B v`` give ``gv = B^T gc`` and ``gB += gc v^T``;
* ``B = [[u0, -u^T], [-u, I + u u^T / (1 + u0)]]`` with ``u = v0 / m``, ``m = sqrt(<v0, v0>)``,
  gives ``gv0 = (gu0 - K u0, gu + K u) / m`` with ``K = u0 gu0 + u . gu`` (Euclidean).

The degenerate-input rules of :mod:`lloca_hep.core.frames` (regularised ``v0``, fallback axes)
are replayed in the backward with the same choices as the forward; gradients flow through the
chosen branch as through the ``torch.where`` of the torch path, constant fallback axes get none.
``tests/test_frames_backward.py`` checks the result with ``gradcheck`` and against the torch path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from lloca_hep._jit import njit_cached

from .frames import ABSOLUTE_FLOOR, DEGENERATE_SPATIAL_TOL, DEGENERATE_TIME_SHIFT, TIMELIKE_TOL
from .kernels import _gram_schmidt_sources, _polar_frames_kernel, _relative_frames_kernel

__all__ = ["LearnedFrames", "learned_frames", "supports"]


def supports(v: torch.Tensor) -> bool:
    """True when :func:`learned_frames` can take ``v``: a CPU float64 tensor."""
    return v.device.type == "cpu" and v.dtype == torch.float64


@njit_cached(nogil=True)
def _cross(a, b):  # pragma: no cover - numba
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


@njit_cached(nogil=True)
def _dot(a, b):  # pragma: no cover - numba
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit_cached(nogil=True)
def _normalise_backward(g, e, n, floor):  # pragma: no cover - numba
    """Gradient of ``w`` for ``e = w / max(|w|, floor)`` (``n = |w|``) given ``g`` of ``e``."""
    if n > floor:
        d = _dot(e, g)
        return ((g[0] - e[0] * d) / n, (g[1] - e[1] * d) / n, (g[2] - e[2] * d) / n)
    return (g[0] / floor, g[1] / floor, g[2] / floor)


@njit_cached(nogil=True)
def _polar_backward_one(v, gL, gv, work, tl_tol, shift, floor, sp_tol):  # pragma: no cover
    """``gv (3, 4) +=`` gradient of ``v (3, 4)`` (v0, v1, v2) for the frame ``L`` given ``gL``;
    ``work (>= 3, 4, 4)`` scratch.

    Replays the forward of ``_polar_frames_kernel`` (same rules and branch choices)."""
    # ---- forward replay: regularised v0, its rest boost B
    t, x, y, z = v[0, 0], v[0, 1], v[0, 2], v[0, 3]
    p2 = x * x + y * y + z * z
    reg = not (t * t - p2 > tl_tol * t * t and t > 0)
    tn = t
    if reg:
        tn = max(t, math.sqrt(p2)) * (1.0 + shift) + floor
    m = math.sqrt(tn * tn - p2)
    u0 = tn / m
    us = (x / m, y / m, z / m)
    opu = 1.0 + u0
    B = work[0]
    B[0, 0] = u0
    for i in range(3):
        B[0, i + 1] = -us[i]
        B[i + 1, 0] = -us[i]
        for j in range(3):
            B[i + 1, j + 1] = (1.0 if i == j else 0.0) + us[i] * us[j] / opu  # as the forward
    # boosted spatial directions of v1, v2
    c = work[1]
    for k in range(2):
        for i in range(4):
            c[k, i] = B[i, 0] * v[k + 1, 0] + B[i, 1] * v[k + 1, 1] + B[i, 2] * v[k + 1, 2] \
                + B[i, 3] * v[k + 1, 3]
    w1 = (c[0, 1], c[0, 2], c[0, 3])
    w2 = (c[1, 1], c[1, 2], c[1, 3])
    s1 = max(max(abs(c[0, 0]), abs(c[0, 1])), max(abs(c[0, 2]), abs(c[0, 3])))
    s2 = max(max(abs(c[1, 0]), abs(c[1, 1])), max(abs(c[1, 2]), abs(c[1, 3])))
    n1 = math.sqrt(_dot(w1, w1))
    n2 = math.sqrt(_dot(w2, w2))
    d1 = max(n1, floor)
    d2 = max(n2, floor)
    u1 = (w1[0] / d1, w1[1] / d1, w1[2] / d1)
    u2 = (w2[0] / d2, w2[1] / d2, w2[2] / d2)
    ok1 = n1 > sp_tol * s1 + floor
    ok2 = n2 > sp_tol * s2 + floor
    src1, e1, src2, a, r, rn = _gram_schmidt_sources(u1, ok1, u2, ok2, sp_tol)
    s = _dot(a, e1)
    d = max(rn, floor)
    e2 = (r[0] / d, r[1] / d, r[2] / d)
    e3 = _cross(e1, e2)

    # ---- backward: L = [B0; R B[1:]]
    gB = work[2]
    for j in range(4):
        gB[0, j] = gL[0, j]
        gB[1, j] = 0.0
        gB[2, j] = 0.0
        gB[3, j] = 0.0
    ge = work[3]  # rows 0-2, columns 0-2: gradients of e1, e2, e3
    for i in range(3):
        for k in range(3):
            acc = 0.0
            for j in range(4):
                acc += gL[i + 1, j] * B[k + 1, j]
            ge[i, k] = acc
    for k in range(3):
        r0, r1, r2 = e1[k], e2[k], e3[k]  # column k of R
        for j in range(4):
            gB[k + 1, j] += r0 * gL[1, j] + r1 * gL[2, j] + r2 * gL[3, j]
    g3 = (ge[2, 0], ge[2, 1], ge[2, 2])
    t1 = _cross(e2, g3)
    t2 = _cross(g3, e1)
    g1 = (ge[0, 0] + t1[0], ge[0, 1] + t1[1], ge[0, 2] + t1[2])
    g2 = (ge[1, 0] + t2[0], ge[1, 1] + t2[1], ge[1, 2] + t2[2])
    gr = _normalise_backward(g2, e2, rn, floor)
    gre = _dot(gr, e1)
    ga = (gr[0] - gre * e1[0], gr[1] - gre * e1[1], gr[2] - gre * e1[2])
    g1 = (g1[0] - s * gr[0] - gre * a[0], g1[1] - s * gr[1] - gre * a[1],
          g1[2] - s * gr[2] - gre * a[2])
    # route the gradients of e1 and a to their sources (a constant axis takes none)
    f11 = 1.0 if src1 == 1 else 0.0
    f12 = 1.0 if src1 == 2 else 0.0
    f21 = 1.0 if src2 == 1 else 0.0
    f22 = 1.0 if src2 == 2 else 0.0
    gu1 = (f11 * g1[0] + f21 * ga[0], f11 * g1[1] + f21 * ga[1], f11 * g1[2] + f21 * ga[2])
    gu2 = (f12 * g1[0] + f22 * ga[0], f12 * g1[1] + f22 * ga[1], f12 * g1[2] + f22 * ga[2])
    gw1 = _normalise_backward(gu1, u1, n1, floor)
    gw2 = _normalise_backward(gu2, u2, n2, floor)
    # c_k = B v_k with gc_k = (0, gw_k)
    for i in range(3):
        for j in range(4):
            gB[i + 1, j] += gw1[i] * v[1, j] + gw2[i] * v[2, j]
    for j in range(4):
        gv[1, j] += B[1, j] * gw1[0] + B[2, j] * gw1[1] + B[3, j] * gw1[2]
        gv[2, j] += B[1, j] * gw2[0] + B[2, j] * gw2[1] + B[3, j] * gw2[2]
    # B from the four-velocity (u0, us)
    iopu = 1.0 / opu
    gu0 = gB[0, 0]
    for i in range(3):
        for j in range(3):
            gu0 -= gB[i + 1, j + 1] * us[i] * us[j] * (iopu * iopu)
    gus = work[3, 3]  # scratch row (ge uses columns 0-2 of rows 0-2 only)
    for i in range(3):
        acc = -gB[0, i + 1] - gB[i + 1, 0]
        for j in range(3):
            acc += (gB[i + 1, j + 1] + gB[j + 1, i + 1]) * us[j] * iopu
        gus[i] = acc
    K = u0 * gu0 + gus[0] * us[0] + gus[1] * us[1] + gus[2] * us[2]
    gtn = (gu0 - K * u0) / m
    gx = ((gus[0] + K * us[0]) / m, (gus[1] + K * us[1]) / m, (gus[2] + K * us[2]) / m)
    gt = gtn
    if reg:  # tn = max(t, |x|) (1 + shift) + floor
        pn = math.sqrt(p2)
        gt = 0.0
        if t >= pn:
            gt = gtn * (1.0 + shift)
        elif pn > 0:
            f = gtn * (1.0 + shift) / pn
            gx = (gx[0] + f * x, gx[1] + f * y, gx[2] + f * z)
    gv[0, 0] += gt
    gv[0, 1] += gx[0]
    gv[0, 2] += gx[1]
    gv[0, 3] += gx[2]


@njit_cached(nogil=True)
def _learned_frames_backward_kernel(v, frames, g_frames, g_rel, gv, work, tl_tol, shift, floor,
                                    sp_tol):  # pragma: no cover - numba
    """``gv (B, N + 1, 3, 4)`` from the gradients of the frames ``g_frames (B, N + 1, 4, 4)``
    (row ``N``: the jet frame) and of the relative frames ``g_rel (B, N, 4, 4)``.

    ``T_n = F_n Q`` with ``Q = g L_J^T g`` gives ``gF_n += gT_n Q^T`` and
    ``gQ = sum_n F_n^T gT_n``, ``g L_J[j, k] += g_j g_k gQ[k, j]``. ``work (8, 4, 4)``
    scratch."""
    Bn, M = v.shape[0], v.shape[1]
    N = M - 1
    # g_j g_k ref[k, j] as a matrix (the metric signs g = diag(1, -1, -1, -1))
    Q = work[7]
    for b in range(Bn):
        ref = frames[b, N]
        gref, gQ, gF = work[4], work[5], work[6]
        for i in range(4):
            for j in range(4):
                gref[i, j] = g_frames[b, N, i, j]
                gQ[i, j] = 0.0
                Q[j, i] = ref[i, j] if (i == 0) == (j == 0) else -ref[i, j]
        for n in range(N):
            f = frames[b, n]
            gt = g_rel[b, n]
            for i in range(4):
                for j in range(4):
                    # (gT Q^T)[i, j] = sum_k gT[i, k] Q[j, k], Q[j, k] = g_j g_k ref[k, j]
                    acc = 0.0
                    for k in range(4):
                        acc += gt[i, k] * Q[j, k]
                    gF[i, j] = g_frames[b, n, i, j] + acc
                    # gQ[i, j] += sum_k f[k, i] gT[k, j]
                    acc2 = 0.0
                    for k in range(4):
                        acc2 += f[k, i] * gt[k, j]
                    gQ[i, j] += acc2
            _polar_backward_one(v[b, n], gF, gv[b, n], work, tl_tol, shift, floor, sp_tol)
        for j in range(4):
            for k in range(4):
                gref[j, k] += gQ[k, j] if (j == 0) == (k == 0) else -gQ[k, j]
        _polar_backward_one(v[b, N], gref, gv[b, N], work, tl_tol, shift, floor, sp_tol)


class LearnedFrames(torch.autograd.Function):
    """``v (B, N + 1, 3, 4)`` -> frames ``L (B, N, 4, 4)``, jet frame ``L_J (B, 4, 4)`` and
    relative frames ``T = L L_J^{-1} (B, N, 4, 4)`` (see :func:`learned_frames`)."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vv = v.detach().contiguous()
        B, M = vv.shape[:2]
        arr = vv.numpy()
        both = np.empty((B, M, 4, 4))
        _polar_frames_kernel(arr.reshape(-1, 3, 4), both.reshape(-1, 4, 4), TIMELIKE_TOL,
                             DEGENERATE_TIME_SHIFT, ABSOLUTE_FLOOR, DEGENERATE_SPATIAL_TOL)
        frames = np.ascontiguousarray(both[:, :-1])
        ref = np.ascontiguousarray(both[:, -1])
        rel = np.empty(frames.shape)
        _relative_frames_kernel(frames, ref, rel)
        both_t = torch.from_numpy(both)
        ctx.save_for_backward(vv, both_t)
        return torch.from_numpy(frames), torch.from_numpy(ref), torch.from_numpy(rel)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        g_frames, g_ref, g_rel = grads
        vv, both = ctx.saved_tensors
        B, M = vv.shape[:2]
        gf = np.zeros((B, M, 4, 4))
        if g_frames is not None:
            gf[:, :-1] = g_frames.detach().numpy()
        if g_ref is not None:
            gf[:, -1] = g_ref.detach().numpy()
        if g_rel is None:
            gr = np.zeros((B, M - 1, 4, 4))
        else:
            gr = np.ascontiguousarray(g_rel.detach().numpy())
        gv = np.zeros((B, M, 3, 4))
        work = np.empty((8, 4, 4))
        _learned_frames_backward_kernel(vv.numpy(), both.numpy(), gf, gr, gv, work, TIMELIKE_TOL,
                                        DEGENERATE_TIME_SHIFT, ABSOLUTE_FLOOR,
                                        DEGENERATE_SPATIAL_TOL)
        return torch.from_numpy(gv)


def learned_frames(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames, jet frame and relative frames from the frames net's vectors, differentiably.

    Args:
        v: ``(B, N + 1, 3, 4)`` float64 on the CPU: per constituent the vectors ``v0, v1, v2``
            of :func:`lloca_hep.core.frames.polar_frames`; row ``N`` holds those of the jet
            frame.

    Returns ``(L (B, N, 4, 4), L_J (B, 4, 4), T (B, N, 4, 4))`` float64 with
    ``L = polar_frames(v[:, :N])``, ``L_J = polar_frames(v[:, N])``, ``T = L L_J^{-1}``: the
    values of the numba inference path, with the hand-written backward of this module.
    """
    if v.dim() != 4 or v.shape[1] < 2 or v.shape[2:] != (3, 4):
        raise ValueError(f"expected v (B, N + 1, 3, 4) with N >= 1, got {tuple(v.shape)}")
    if not supports(v):
        raise ValueError(f"learned_frames needs a CPU float64 tensor, got {v.dtype} on {v.device}")
    frames, ref, rel = LearnedFrames.apply(v)
    return frames, ref, rel
