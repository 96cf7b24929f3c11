"""Hand-written autograd for the frame transforms of the O(N) attention (training fast path).

The attention moves the tensor channels of queries, keys, values and outputs between frames,
token by token, with ``4 x 4`` matrices. Written as torch ops under autograd, that is a chain of
channel slices, tiny batched matmuls and copies into slices, whose backward materialises zeroed
full-size gradients for every slice (``SliceBackward``/``CopySlices``) and costs more than the
products themselves. The transform is linear in the features and in the matrix, so both
gradients have a closed form:

* features: ``y = M x`` per four-vector gives ``dx = M^T dy`` (the transposed transform);
* matrices: ``dM = sum dy x^T`` over the vectors that share the matrix (an outer product).

:class:`FrameTransform` does the forward as one pass (the numba kernel of
:mod:`lloca_hep.core.kernels` on the CPU, one batched matmul per rank elsewhere) and the backward
by these formulas (again one numba pass on the CPU for the vector channels). It is used only when
autograd records (see :func:`use_autograd_function`); inference, ``torch.no_grad``, tracing and
export keep the plain torch / numba paths, so the exported graphs contain no custom Function.
``tests/test_core_autograd.py`` checks it with ``gradcheck`` in float64 and against the plain path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from lloca_hep._jit import njit_cached

from .kernels import KERNEL_DTYPES, transform_vectors_

__all__ = [
    "FrameTransform",
    "SoftmaxWeightedSum",
    "frame_transform",
    "is_tracing",
    "softmax_weighted_sum",
    "use_autograd_function",
]


def is_tracing() -> bool:
    """True inside ``torch.jit.trace`` (the legacy ONNX exporter) or ``torch.compile``/``export``."""
    return bool(torch.compiler.is_compiling() or torch._C._get_tracing_state())


def use_autograd_function(*tensors: torch.Tensor) -> bool:
    """True when :class:`FrameTransform` should replace the plain torch ops: autograd records a
    graph through one of ``tensors``, nothing is being traced or exported, and no autocast
    (``--amp``) is active for them: under autocast the plain ops take autocast's dtypes, which
    the hand-written backward does not mix (``tensors`` of different dtypes also take the plain
    ops)."""
    if is_tracing():
        return False
    if not torch.is_grad_enabled():
        return False
    if len({t.dtype for t in tensors}) > 1:
        return False
    if any(torch.is_autocast_enabled(t.device.type) for t in tensors):
        return False
    return any(t.requires_grad for t in tensors)


def _on_kernel_path(*tensors: torch.Tensor) -> bool:
    dtype = tensors[0].dtype
    return dtype in KERNEL_DTYPES and all(
        t.device.type == "cpu" and t.dtype == dtype for t in tensors
    )


@njit_cached(nogil=True)
def _transform_vectors_backward_kernel(gy, x, frames, row_signs, start, num_vectors, gx, gf,
                                       want_gf, post, finv):  # pragma: no cover - numba
    """Backward of :func:`lloca_hep.core.kernels.transform_vectors_` with ``M_s = S_s F``.

    ``gy, x (B, N, S, H, D)`` output gradient and forward input; ``frames (B, N, 4, 4)``;
    ``row_signs (S, 4)``. Writes the vector channels of ``gx`` (a copy of ``gy``: scalars pass
    through) with ``F^T S_s gy`` and, with ``want_gf``, ``gf[b, n] = sum_{s,h,m} (S_s gy) x^T``.
    With ``post``, ``x`` holds the transformed features ``y = S_s F x`` instead and ``gf`` gets
    ``sum (S_s gy) (S_s y)^T``, which is the frame gradient times ``F^T`` (``gx`` may be ``gy``);
    it is multiplied by ``finv^T`` (``finv (B, N, 4, 4)`` = ``F^{-1}``) here.
    """
    B, N, S, H, _ = gy.shape
    for b in range(B):
        for n in range(N):
            f = frames[b, n]
            f00, f01, f02, f03 = f[0, 0], f[0, 1], f[0, 2], f[0, 3]
            f10, f11, f12, f13 = f[1, 0], f[1, 1], f[1, 2], f[1, 3]
            f20, f21, f22, f23 = f[2, 0], f[2, 1], f[2, 2], f[2, 3]
            f30, f31, f32, f33 = f[3, 0], f[3, 1], f[3, 2], f[3, 3]
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
            for s in range(S):
                g0, g1, g2, g3 = row_signs[s, 0], row_signs[s, 1], row_signs[s, 2], row_signs[s, 3]
                # signs of the saved features: S_s for the outputs (post), else none
                p0, p1, p2, p3 = (g0, g1, g2, g3) if post else (1.0, 1.0, 1.0, 1.0)
                for h in range(H):
                    grow = gy[b, n, s, h]
                    orow = gx[b, n, s, h]
                    xrow = x[b, n, s, h]
                    for m in range(num_vectors):
                        o = start + 4 * m
                        y0, y1, y2, y3 = g0 * grow[o], g1 * grow[o + 1], g2 * grow[o + 2], g3 * grow[o + 3]
                        if want_gf:
                            x0, x1 = p0 * xrow[o], p1 * xrow[o + 1]
                            x2, x3 = p2 * xrow[o + 2], p3 * xrow[o + 3]
                            a00 += y0 * x0
                            a01 += y0 * x1
                            a02 += y0 * x2
                            a03 += y0 * x3
                            a10 += y1 * x0
                            a11 += y1 * x1
                            a12 += y1 * x2
                            a13 += y1 * x3
                            a20 += y2 * x0
                            a21 += y2 * x1
                            a22 += y2 * x2
                            a23 += y2 * x3
                            a30 += y3 * x0
                            a31 += y3 * x1
                            a32 += y3 * x2
                            a33 += y3 * x3
                        orow[o] = f00 * y0 + f10 * y1 + f20 * y2 + f30 * y3
                        orow[o + 1] = f01 * y0 + f11 * y1 + f21 * y2 + f31 * y3
                        orow[o + 2] = f02 * y0 + f12 * y1 + f22 * y2 + f32 * y3
                        orow[o + 3] = f03 * y0 + f13 * y1 + f23 * y2 + f33 * y3
            if not want_gf:
                continue
            g = gf[b, n]
            g[0, 0], g[0, 1], g[0, 2], g[0, 3] = a00, a01, a02, a03
            g[1, 0], g[1, 1], g[1, 2], g[1, 3] = a10, a11, a12, a13
            g[2, 0], g[2, 1], g[2, 2], g[2, 3] = a20, a21, a22, a23
            g[3, 0], g[3, 1], g[3, 2], g[3, 3] = a30, a31, a32, a33
            if post:  # (sum (S gy)(S y)^T) F^{-T}
                fi = finv[b, n]
                for i in range(4):
                    r0, r1, r2, r3 = g[i, 0], g[i, 1], g[i, 2], g[i, 3]
                    for j in range(4):
                        g[i, j] = r0 * fi[j, 0] + r1 * fi[j, 1] + r2 * fi[j, 2] + r3 * fi[j, 3]


def _matrices(frames: torch.Tensor, row_signs: torch.Tensor) -> torch.Tensor:
    """``M (B, N, S, 4, 4)``: ``S_s F`` per slot."""
    return row_signs.to(frames.dtype)[:, :, None] * frames[:, :, None]


class FrameTransform(torch.autograd.Function):
    """``y = rho(S_s F) x`` on the tensor channels of ``x (B, N, S, H, D)`` (see :func:`frame_transform`)."""

    @staticmethod
    def forward(
        ctx: Any,
        t: torch.Tensor,
        frames: torch.Tensor,
        row_signs: torch.Tensor,
        start: int,
        num_vectors: int,
        num_rank2: int,
        inplace: bool,
        shape: tuple[int, ...],
        frames_inverse: torch.Tensor | None,
    ) -> torch.Tensor:
        want_gf = bool(ctx.needs_input_grad[1])
        ctx.start, ctx.nv, ctx.n2, ctx.want_gf = start, num_vectors, num_rank2, want_gf
        ctx.inplace, ctx.shape, ctx.shape5 = inplace, t.shape, tuple(shape)
        out = _forward(t.view(shape), frames, row_signs, start, num_vectors, num_rank2, inplace)
        if inplace:
            ctx.mark_dirty(t)
            if want_gf and frames_inverse is None:
                frames_inverse = torch.linalg.inv(frames.detach())
            ctx.save_for_backward(t if want_gf else None, frames, row_signs,
                                  None if frames_inverse is None else frames_inverse.detach())
            return t
        ctx.save_for_backward(t if want_gf else None, frames, row_signs, None)
        return out.view(t.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        (gy,) = grads
        t, frames, row_signs, finv = ctx.saved_tensors
        s5 = ctx.shape5
        gx, gf = _backward(
            gy.reshape(s5),
            None if t is None else t.view(s5),
            frames, row_signs, ctx.start, ctx.nv, ctx.n2, ctx.want_gf, ctx.inplace, finv,
        )
        return gx.view(ctx.shape), gf, None, None, None, None, None, None, None


def _forward(t: torch.Tensor, frames: torch.Tensor, row_signs: torch.Tensor, start: int,
             nv: int, n2: int, inplace: bool) -> torch.Tensor:
    """The transform as one pass; in place on ``t`` with ``inplace`` (``t`` contiguous)."""
    if inplace:
        out = t.detach() if t.is_contiguous() else t.detach().contiguous()
    else:
        out = t.detach().clone(memory_format=torch.contiguous_format)
    view = out.view(t.shape)
    B, N, S, H, _ = t.shape
    f = frames.detach()
    if nv:
        if _on_kernel_path(out, f):
            transform_vectors_(view, f, start, nv, row_signs.detach())
        else:
            m = _matrices(f, row_signs)
            v = view[..., start : start + 4 * nv].reshape(B, N, S, H * nv, 4)
            view[..., start : start + 4 * nv] = (v @ m.mT).view(B, N, S, H, 4 * nv)
    if n2:
        m = _matrices(f, row_signs)[:, :, :, None]  # (B, N, S, 1, 4, 4)
        o2 = start + 4 * nv
        r = view[..., o2 : o2 + 16 * n2].reshape(B, N, S, H * n2, 4, 4)
        view[..., o2 : o2 + 16 * n2] = (m @ r @ m.mT).reshape(B, N, S, H, 16 * n2)
    return t if inplace else out


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _backward(gy: torch.Tensor, t: torch.Tensor | None, frames: torch.Tensor,
              row_signs: torch.Tensor, start: int, nv: int, n2: int, want_gf: bool,
              post: bool, finv: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of :class:`FrameTransform`: ``gx`` (in place on ``gy`` when ``post``, i.e. for
    the in-place transform whose gradient nobody else holds) and the frame gradient. ``t`` is the
    forward input, or its output when ``post`` (the input is then recovered through ``F^{-1}``,
    ``finv``)."""
    B, N, S, H, _ = gy.shape
    if post and gy.is_contiguous():
        gx = gy
    else:
        gx = gy.clone(memory_format=torch.contiguous_format)
    gf: torch.Tensor | None = None
    post_done = False  # the F^{-T} of the post mode already applied (in the kernel)
    if nv:
        if _on_kernel_path(gx, frames) and (t is None or _on_kernel_path(gx, t)):
            shape = frames.shape if want_gf else (1, 1, 4, 4)
            gfa = np.empty(shape, dtype=_numpy(gx).dtype)  # every entry written when want_gf
            x = _numpy(t) if t is not None else _numpy(gx)
            signs = np.ascontiguousarray(_numpy(row_signs.to(gx.dtype)))
            in_kernel = post and want_gf
            if in_kernel:
                assert finv is not None
                fin = np.ascontiguousarray(_numpy(finv.to(gx.dtype)))
            else:
                fin = np.zeros((1, 1, 4, 4), dtype=gfa.dtype)
            _transform_vectors_backward_kernel(
                _numpy(gx), x, np.ascontiguousarray(_numpy(frames)), signs, start, nv,
                _numpy(gx), gfa, want_gf, post, fin)
            if want_gf:
                gf = torch.from_numpy(gfa)
                post_done = in_kernel
        else:
            m = _matrices(frames, row_signs)
            gv = gx[..., start : start + 4 * nv].reshape(B, N, S, H * nv, 4)
            if want_gf:
                assert t is not None
                xv = t[..., start : start + 4 * nv].reshape(B, N, S, H * nv, 4)
                sg = row_signs.to(gx.dtype)
                if post:  # (S gy)(S y)^T
                    gm = (sg[:, :, None] * gv.mT) @ (xv * sg[:, None, :])
                else:
                    gm = (sg[:, :, None] * gv.mT) @ xv
                gf = gm.sum(2)
            gx[..., start : start + 4 * nv] = (gv @ m).view(B, N, S, H, 4 * nv)
        if post and gf is not None and not post_done:  # sum (S gy)(S y)^T F^{-T} = sum (S gy) x^T
            assert finv is not None
            gf = gf @ finv.mT
    if n2:
        m = _matrices(frames, row_signs)[:, :, :, None]
        o2 = start + 4 * nv
        gr = gx[..., o2 : o2 + 16 * n2].reshape(B, N, S, H * n2, 4, 4)
        if want_gf:
            assert t is not None
            r = t[..., o2 : o2 + 16 * n2].reshape(B, N, S, H * n2, 4, 4)
            if post:  # the input tensors from the outputs: r = M^{-1} y M^{-T}
                assert finv is not None
                minv = finv[:, :, None, None] * row_signs.to(finv.dtype)[None, None, :, None, None, :]
                r = minv @ r @ minv.mT
            # y = M r M^T: dM = dy M r^T + dy^T M r, summed over the heads and tensors
            gm = (gr @ m @ r.mT + gr.mT @ m @ r).sum(3)
            gm2 = (row_signs.to(gm.dtype)[:, :, None] * gm).sum(2)
            gf = gm2 if gf is None else gf + gm2
        gx[..., o2 : o2 + 16 * n2] = (m.mT @ gr @ m).reshape(B, N, S, H, 16 * n2)
    return gx.view(gy.shape), gf


def frame_transform(
    t: torch.Tensor,
    frames: torch.Tensor,
    start: int,
    num_vectors: int,
    num_rank2: int = 0,
    row_signs: torch.Tensor | None = None,
    inplace: bool = False,
    shape: tuple[int, ...] | None = None,
    frames_inverse: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transform the tensor channels of ``t`` with per-token matrices, differentiably.

    Args:
        t: ``(B, N, S, H, D)`` features: ``S`` slots of ``H`` heads; channels
            ``start : start + 4 * num_vectors`` hold four-vectors, the next ``16 * num_rank2``
            rank-2 tensors (row-major); the channels before ``start`` are scalars.
        frames: ``(B, N, 4, 4)`` matrices ``F``, one per token, shared by the slots, same dtype.
        row_signs: ``(S, 4)`` signs of the rows of ``F`` per slot (``M_s = S_s F``, e.g. the
            metric lowering the key index), constant; default all +1.
        inplace: overwrite ``t`` (contiguous, not a view, needed by no other autograd node) and
            reuse its incoming gradient buffer in the backward (the gradient of ``t`` must reach
            it from one consumer only, e.g. an ``unbind``); the frame gradient is then formed
            from the output through ``F^{-1}``, so ``F`` must be invertible. Saves two copies.
        shape: with ``inplace``, pass ``t`` as the fresh tensor itself (not a view, e.g. a
            linear layer's ``(B, N, S*H*D)`` output) and its ``(B, N, S, H, D)`` shape here; the
            result has the shape of ``t``.
        frames_inverse: with ``inplace``, ``F^{-1}`` if known (e.g. ``T`` for ``F = T^{-1}``;
            it sets the accuracy of the frame gradient), else computed with ``torch.linalg.inv``.

    Returns a new ``(B, N, S, H, D)`` tensor: vectors ``M_s v``, rank-2 tensors ``M_s T M_s^T``,
    scalars copied. Same values as the plain path of :class:`lloca_hep.core.attention.LLoCaAttention`
    to float rounding.
    """
    s5 = tuple(t.shape) if shape is None else tuple(shape)
    if len(s5) != 5 or frames.shape != (*s5[:2], 4, 4):
        raise ValueError(
            f"expected t (B, N, S, H, D) and frames (B, N, 4, 4), got {s5} and "
            f"{tuple(frames.shape)}"
        )
    if inplace and not t.is_contiguous():
        raise ValueError("frame_transform(inplace=True) needs a contiguous tensor")
    if row_signs is None:
        row_signs = torch.ones(s5[2], 4, dtype=t.dtype, device=t.device)
    out: torch.Tensor = FrameTransform.apply(
        t, frames, row_signs.detach().to(t.dtype), start, num_vectors, num_rank2, inplace, s5,
        frames_inverse,
    )
    return out


class SoftmaxWeightedSum(torch.autograd.Function):
    """``V = softmax(logits + c_k log_pair, -1) @ units`` for the frames net, backward by hand.

    The pair term is added and the softmax taken in place on ``logits`` (a fresh tensor no
    other autograd node needs), with the same arithmetic as the inference path of
    :class:`lloca_hep.core.framesnet.FramesNet`, so training and inference agree bitwise.
    Backward (one numba pass on the CPU), with ``w`` the weights: ``dunits = w^T dV``,
    ``dlogits = w * (dV units^T - <dV, V>)`` (the row sums of ``w * (dV units^T)`` are
    ``<dV, V>``, so no second full-size product is needed), ``dc_k = sum dlogits_k log_pair``
    as one batched product (no full-size temporary or copy).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, units: torch.Tensor, coef: torch.Tensor,
                log_pair: torch.Tensor) -> torch.Tensor:
        w = logits.detach()
        w.addcmul_(coef.detach()[None, :, None, None], log_pair.detach()[:, None])
        w.sub_(w.amax(-1, keepdim=True)).exp_()
        w.div_(w.sum(-1, keepdim=True))
        b, K, N, P = w.shape  # (b, K*N, P) @ (b, P, 4): one product per jet
        out = torch.bmm(w.view(b, K * N, P), units.detach()).view(b, K, N, 4)
        # not marked dirty (it is no output): no autograd node holds the logits (the products
        # that made them save their factors), and a node that did would fail its version check
        ctx.save_for_backward(logits, units, out, coef, log_pair)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        (gv,) = grads
        w, units, out, coef, log_pair = ctx.saved_tensors
        need = ctx.needs_input_grad
        if _on_kernel_path(w, units, out, log_pair, gv) and w.dtype == torch.float64:
            b, K, N, P = w.shape  # one numba pass
            g_logits_a = np.empty((b, K, N, P))
            g_units_t = np.zeros((b, 4, P))
            g_coef_a = np.zeros(K)
            g_pair_a = np.zeros((b, N, P) if need[3] else (1, 1, 1))
            _softmax_weighted_sum_backward_kernel(
                _numpy(w), np.ascontiguousarray(_numpy(units.mT)), _numpy(out),
                np.ascontiguousarray(_numpy(gv)), _numpy(log_pair),
                np.ascontiguousarray(_numpy(coef)), g_logits_a, g_units_t, g_coef_a, g_pair_a,
                bool(need[3]))
            return (torch.from_numpy(g_logits_a) if need[0] else None,
                    torch.from_numpy(g_units_t).mT if need[1] else None,
                    torch.from_numpy(g_coef_a) if need[2] else None,
                    torch.from_numpy(g_pair_a) if need[3] else None)
        g_logits = g_units = g_coef = g_pair = None
        if need[0] or need[2] or need[3]:
            b, K, N, P = w.shape
            g = torch.bmm(gv.reshape(b, K * N, 4), units.mT).view(b, K, N, P)
            g.sub_((gv * out).sum(-1, keepdim=True)).mul_(w)
            g_logits = g if need[0] else None
            gflat = g.view(b, K, N * P)  # batched products: an einsum would copy g
            if need[2]:
                g_coef = torch.bmm(gflat, log_pair.reshape(b, N * P, 1)).sum(0).view(K)
            if need[3]:
                g_pair = torch.matmul(coef.view(1, 1, K), gflat).view(b, N, P)
        if need[1]:
            b, K, N, P = w.shape  # sum over k of w_k^T gv_k as one product per jet
            g_units = torch.bmm(w.view(b, K * N, P).mT, gv.reshape(b, K * N, 4))
        return g_logits, g_units, g_coef, g_pair


@njit_cached(nogil=True)
def _softmax_weighted_sum_backward_kernel(w, units_t, out, gv, log_pair, coef, g_logits,
                                          g_units_t, g_coef, g_pair,
                                          want_pair):  # pragma: no cover - numba
    """Backward of :class:`SoftmaxWeightedSum` in one pass over the weights ``w (b, K, N, P)``:
    writes the logits gradient ``g_logits = w (gv . u_p - <gv, V>)`` and accumulates
    ``g_units_t (b, 4, P) += gv w`` (units and their gradient with the partner index last, so
    the inner loops run over contiguous memory), ``g_coef (K,)`` and, with ``want_pair``,
    ``g_pair (b, N, P)``.
    """
    b, K, N, P = w.shape
    for i in range(b):
        u0, u1, u2, u3 = units_t[i, 0], units_t[i, 1], units_t[i, 2], units_t[i, 3]
        h0, h1, h2, h3 = g_units_t[i, 0], g_units_t[i, 1], g_units_t[i, 2], g_units_t[i, 3]
        for k in range(K):
            c = coef[k]
            acc = 0.0
            for n in range(N):
                g0, g1, g2, g3 = gv[i, k, n, 0], gv[i, k, n, 1], gv[i, k, n, 2], gv[i, k, n, 3]
                dot = g0 * out[i, k, n, 0] + g1 * out[i, k, n, 1] + g2 * out[i, k, n, 2] \
                    + g3 * out[i, k, n, 3]
                row = w[i, k, n]
                grow = g_logits[i, k, n]
                lp = log_pair[i, n]
                for p in range(P):
                    wp = row[p]
                    h0[p] += wp * g0
                    h1[p] += wp * g1
                    h2[p] += wp * g2
                    h3[p] += wp * g3
                    grow[p] = wp * (g0 * u0[p] + g1 * u1[p] + g2 * u2[p] + g3 * u3[p] - dot)
                for p in range(P):  # a reduction apart: the loop above vectorises
                    acc += grow[p] * lp[p]
                if want_pair:
                    gpr = g_pair[i, n]
                    for p in range(P):
                        gpr[p] += c * grow[p]
            g_coef[k] += acc


def softmax_weighted_sum(logits: torch.Tensor, units: torch.Tensor, coef: torch.Tensor,
                         log_pair: torch.Tensor) -> torch.Tensor:
    """``softmax(logits + coef_k log_pair, -1) @ units[:, None]`` for ``logits (b, K, N, P)``,
    ``units (b, P, 4)``, ``coef (K,)``, ``log_pair (b, N, P)`` -> ``(b, K, N, 4)``; ``logits``
    is overwritten (see :class:`SoftmaxWeightedSum`)."""
    out: torch.Tensor = SoftmaxWeightedSum.apply(logits, units, coef, log_pair)
    return out
