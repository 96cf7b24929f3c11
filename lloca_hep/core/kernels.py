"""Numba fast paths for the frame transforms of the O(N) attention, CPU inference only.

Moving the vector channels of queries, keys, values and outputs between frames is, per token, a
handful of ``4 x 4`` matrix-vector products. As torch ops that is a batched matmul of tiny
matrices plus the copies in and out of the strided channel slices; the kernel here does it in
place in one pass over the memory (about 2-3x faster on CPU, see ``docs/benchmarks.md``).

The fast path is taken only when autograd is not involved, the tensors live on the CPU in float32
or float64, and nothing is being traced (``torch.export`` / ``torch.compile``); otherwise the
torch expression in :mod:`lloca_hep.core.attention` runs. Both compute the same products and
agree to float rounding (the order of the four additions may differ); each path on its own is
deterministic.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["can_use_kernels", "transform_vectors_"]

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
def _transform_vectors_kernel(t, frames, start, num_vectors):  # pragma: no cover - numba
    """In place: ``t[b, n, s, h, start + 4m : start + 4m + 4] <- frames[b, n, s] @ (that)``.

    ``t (B, N, S, H, D)``, ``frames (B, N, S, 4, 4)``, ``m < num_vectors``.
    """
    B, N, S, H, _ = t.shape
    for b in range(B):
        for n in range(N):
            for s in range(S):
                f = frames[b, n, s]
                f00, f01, f02, f03 = f[0, 0], f[0, 1], f[0, 2], f[0, 3]
                f10, f11, f12, f13 = f[1, 0], f[1, 1], f[1, 2], f[1, 3]
                f20, f21, f22, f23 = f[2, 0], f[2, 1], f[2, 2], f[2, 3]
                f30, f31, f32, f33 = f[3, 0], f[3, 1], f[3, 2], f[3, 3]
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
    t: torch.Tensor, frames: torch.Tensor, start: int, num_vectors: int
) -> torch.Tensor:
    """Transform the vector channels of ``t`` in place and return ``t``.

    Args:
        t: ``(B, N, S, H, D)`` features (any strides): ``S`` slots (e.g. query, key, value) of
            ``H`` heads; channels ``start : start + 4 * num_vectors`` hold four-vectors
            (E, px, py, pz) one after the other.
        frames: ``(B, N, S, 4, 4)`` matrices, one per token and slot (broadcast views allowed).
        start, num_vectors: where the vectors sit in the last axis and how many there are.

    Call only when :func:`can_use_kernels` ``(t, frames)`` is true.
    """
    if t.dim() != 5 or frames.shape != (*t.shape[:3], 4, 4):
        raise ValueError(
            f"expected t (B, N, S, H, D) and frames (B, N, S, 4, 4), got {tuple(t.shape)} and "
            f"{tuple(frames.shape)}"
        )
    if start < 0 or start + 4 * num_vectors > t.shape[-1]:
        raise ValueError(f"vector channels {start}:{start + 4 * num_vectors} outside {t.shape[-1]}")
    if t.numel() and num_vectors:
        arr = t.detach().numpy()
        mats = np.ascontiguousarray(frames.detach().numpy())
        _transform_vectors_kernel(arr, mats, start, num_vectors)
    return t
