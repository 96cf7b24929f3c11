"""Tensor representations of the Lorentz group as objects.

A representation is a direct sum of ``multiplicity x rank`` blocks, written as a spec string such
as ``"8x0n+2x1n"`` (8 scalars and 2 vectors) or ``"4x0n+1x1n+1x2n"``. The trailing letter is the
parity, ``n`` (normal) or ``p`` (pseudo); for the proper orthochronous transformations used here
(``det L = +1``) both transform alike, the letter is kept for bookkeeping. A feature vector
``x (..., dim)`` stores the blocks in spec order; a rank-r block uses ``4**r`` consecutive
components, index order (E, x, y, z) per tensor index (row-major for rank 2).

Under a Lorentz matrix ``L`` a scalar is unchanged, a vector becomes ``L x``, a rank-2 tensor
``L T L^T``. :meth:`TensorReps.metric_signs` gives the signs that lower every index, so that the
Euclidean dot product of ``x`` with ``signs * y`` is the full Minkowski contraction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .lorentz import METRIC_DIAG

__all__ = ["MAX_RANK", "TensorReps"]

#: Highest tensor rank supported.
MAX_RANK = 2

_TERM = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*([np]?)\s*$")


@dataclass(frozen=True)
class _Block:
    mul: int
    rank: int
    parity: str

    @property
    def dim(self) -> int:
        return self.mul * 4**self.rank


class TensorReps:
    """A direct sum of scalar, vector and rank-2 tensor blocks.

    >>> reps = TensorReps("8x0n+2x1n")
    >>> reps.dim, reps.num_scalars, reps.num_vectors
    (16, 8, 2)
    """

    def __init__(self, spec: str | TensorReps):
        if isinstance(spec, TensorReps):
            spec = spec.spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"tensor representation spec must be a non-empty string, got {spec!r}")
        blocks: list[_Block] = []
        for term in spec.split("+"):
            m = _TERM.match(term)
            if m is None:
                raise ValueError(
                    f"bad term {term!r} in tensor representation {spec!r}: expected e.g. '8x0n'"
                )
            mul, rank, parity = int(m.group(1)), int(m.group(2)), m.group(3) or "n"
            if rank > MAX_RANK:
                raise ValueError(f"rank {rank} in {spec!r} not supported (max {MAX_RANK})")
            if mul > 0:
                blocks.append(_Block(mul, rank, parity))
        if not blocks:
            raise ValueError(f"tensor representation {spec!r} is empty")
        self.blocks = tuple(blocks)
        self.spec: str = "+".join(f"{b.mul}x{b.rank}{b.parity}" for b in self.blocks)
        self.dim = sum(b.dim for b in self.blocks)
        self.num_scalars = sum(b.mul for b in self.blocks if b.rank == 0)
        self.num_vectors = sum(b.mul for b in self.blocks if b.rank == 1)
        self.num_rank2 = sum(b.mul for b in self.blocks if b.rank == 2)
        # component index lists per rank, used to gather/scatter in one go
        idx: dict[int, list[int]] = {0: [], 1: [], 2: []}
        start = 0
        for b in self.blocks:
            idx[b.rank].extend(range(start, start + b.dim))
            start += b.dim
        self._index = {r: torch.tensor(v, dtype=torch.long) for r, v in idx.items()}
        self.is_scalar_only = self.num_vectors == 0 and self.num_rank2 == 0

    def __repr__(self) -> str:
        return f"TensorReps({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorReps) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def metric_signs(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """Signs ``(dim,)`` lowering every Lorentz index (g on vectors, g x g on rank 2)."""
        g = torch.tensor(METRIC_DIAG, dtype=dtype, device=device)
        parts = []
        for b in self.blocks:
            if b.rank == 0:
                parts.append(torch.ones(b.mul, dtype=dtype, device=device))
            elif b.rank == 1:
                parts.append(g.repeat(b.mul))
            else:
                parts.append((g[:, None] * g[None, :]).reshape(16).repeat(b.mul))
        return torch.cat(parts)

    def transform(self, x: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        """Transform features ``x (..., dim)`` with Lorentz matrices ``L`` broadcastable to ``(..., 4, 4)``.

        ``L`` is cast to ``x.dtype``. Scalars pass through unchanged.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"{self!r} expects last axis {self.dim}, got shape {tuple(x.shape)}")
        if self.is_scalar_only:
            return x
        L = L.to(x.dtype)
        out = x.clone()
        i1 = self._index[1].to(x.device)
        if i1.numel():
            v = x.index_select(-1, i1).unflatten(-1, (-1, 4))
            v = torch.einsum("...ij,...mj->...mi", L, v)
            out = out.index_copy(-1, i1, v.flatten(-2))
        i2 = self._index[2].to(x.device)
        if i2.numel():
            t = x.index_select(-1, i2).unflatten(-1, (-1, 4, 4))
            t = torch.einsum("...ia,...mab,...jb->...mij", L, t, L)
            out = out.index_copy(-1, i2, t.flatten(-3))
        return out
