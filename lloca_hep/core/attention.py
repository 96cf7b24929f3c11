"""LLoCa attention in the O(N) global-frame form, on ``scaled_dot_product_attention``.

Every head carries a tensor representation (default ``"8x0n+2x1n"``: 8 scalars and 2 vectors)
whose components are expressed in each particle's local frame. The attention logit of ``i`` to
``j`` is the Minkowski contraction ``<q_i, rho(L_i L_j^{-1}) k_j>``, which equals
``<rho(L_i^{-1}) q_i, rho(L_j^{-1}) k_j>``: queries, keys and values are moved once into a common
frame (O(N) small matrix products), the key indices are lowered with the metric g, any fused
attention kernel does the rest, and outputs are moved back with ``rho(L_i)``.

Here the common frame is a per-jet frame ``L_J`` and the matrices passed in are the relative
frames ``T_i = L_i L_J^{-1}`` (see :mod:`lloca_hep.core.framechoices`); they are invariant under
Lorentz transformations of the jet and, for learned frames, boosts of gamma <= 1.16 at most, so the
float32 components in the common frame stay bounded.

Within a head the components are laid out by rank: scalars, then vectors (4 each), then rank-2
tensors (16 each); the multiplicities come from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention

from .autograd import frame_transform, use_autograd_function
from .kernels import can_use_kernels, transform_vectors_
from .lorentz import METRIC_DIAG, inverse
from .reps import TensorReps

__all__ = ["AttentionFrames", "LLoCaAttention", "key_padding_mask", "prepare_attention_frames"]


@dataclass
class AttentionFrames:
    """Per-particle matrices for the O(N) attention, prepared once per forward pass.

    Attributes:
        inv: ``(B, N, 4, 4)``: ``T^{-1}``, moving queries and values (and, with the metric,
            keys) into the common frame.
        out: ``(B, N, 4, 4)``: ``T`` mapping attention outputs back to the local frames.
    """

    inv: torch.Tensor
    out: torch.Tensor
    _qkv: torch.Tensor | None = field(default=None, repr=False)

    @property
    def qkv(self) -> torch.Tensor:
        """``(B, N, 3, 4, 4)``: ``T^{-1}`` for queries, ``g T^{-1}`` for keys (indices lowered),
        ``T^{-1}`` for values; built on first use (the torch path)."""
        if self._qkv is None:
            g = torch.tensor(METRIC_DIAG, dtype=self.inv.dtype, device=self.inv.device)
            self._qkv = torch.stack([self.inv, g[:, None] * self.inv, self.inv], dim=2)
        return self._qkv


def prepare_attention_frames(
    relative: torch.Tensor | None, dtype: torch.dtype
) -> AttentionFrames | None:
    """Build :class:`AttentionFrames` from relative frames ``T (B, N, 4, 4)`` (float64 in), cast
    to the network ``dtype``; ``None`` stays ``None`` (identity frames). The inverse
    ``g T^T g`` is exact in any precision, so it is taken after the cast."""
    if relative is None:
        return None
    out = relative.to(dtype)
    return AttentionFrames(inv=inverse(out).contiguous(), out=out)


def key_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, 1, 1, N)`` attention mask; rows with no real constituent may attend to slot 0.

    The fallback keeps fully padded jets finite (their outputs are meaningless and masked later).
    """
    keep = mask.clone()
    empty = ~mask.any(dim=1)
    keep[:, 0] = keep[:, 0] | empty
    return keep[:, None, None, :]


class LLoCaAttention(nn.Module):
    """Multi-head attention whose heads mix scalars, vectors and rank-2 tensors equivariantly.

    Args:
        dim: width of the (local-frame) input and output features.
        heads: number of heads.
        head_reps: representation of one head, e.g. ``"8x0n+2x1n"``.

    ``forward(x, relative, mask, bias=None, queries=None)``: ``x (B, N, dim)`` local features,
    ``relative`` ``(B, N, 4, 4)`` relative frames ``T_i`` (or ``None`` for identity, then this is
    ordinary attention with Minkowski products in the vector channels), ``mask (B, N)`` bool.
    Returns ``(B, N, dim)``. ``bias``: an optional additive bias of the attention logits
    (after the ``1/sqrt(head_dim)`` scaling), broadcastable to ``(B, heads, N_q, N)``, e.g. the
    pair-interaction bias of ParT; it must be Lorentz invariant to keep the attention
    equivariant. ``queries``: only the first ``queries`` tokens attend (the class token of a
    class-attention block); the output is then ``(B, queries, dim)``. With both None the
    computation is unchanged.
    """

    key_signs: torch.Tensor
    qkv_row_signs: torch.Tensor

    def __init__(self, dim: int, heads: int = 4, head_reps: str = "8x0n+2x1n"):
        super().__init__()
        self.reps = TensorReps(head_reps)
        self.heads = heads
        self.ns = self.reps.num_scalars
        self.nv = self.reps.num_vectors
        self.n2 = self.reps.num_rank2
        self.head_dim = self.reps.dim
        self.qkv = nn.Linear(dim, 3 * heads * self.head_dim)
        self.out = nn.Linear(heads * self.head_dim, dim)
        g = torch.tensor(METRIC_DIAG)
        signs = torch.cat(
            [
                torch.ones(self.ns),
                g.repeat(self.nv),
                (g[:, None] * g[None, :]).reshape(16).repeat(self.n2),
            ]
        )
        self.register_buffer("key_signs", signs, persistent=False)
        # row signs of T^{-1} for the numba path: queries, keys (lowered with g), values
        self.register_buffer(
            "qkv_row_signs", torch.stack([torch.ones(4), g, torch.ones(4)]), persistent=False
        )

    def _split(self, t: torch.Tensor):
        s = t[..., : self.ns]
        v = t[..., self.ns : self.ns + 4 * self.nv].unflatten(-1, (self.nv, 4))
        r = t[..., self.ns + 4 * self.nv :].unflatten(-1, (self.n2, 4, 4))
        return s, v, r

    def _transform(
        self,
        t: torch.Tensor,
        L: torch.Tensor,
        *,
        inplace: bool = False,
        fast: bool = False,
        row_signs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Transform ``t (..., M, head_dim)`` with matrices ``L (..., 4, 4)``.

        With ``inplace`` the tensor channels of ``t`` are overwritten (no copy of the scalars);
        only for tensors that autograd does not need, such as a fresh linear-layer output.
        With ``fast`` (implies ``inplace``; ``t (B, N, S, H, D)``, ``L (B, N, 4, 4)`` shared by
        the ``S`` slots with ``row_signs (S, 4)``, see :mod:`lloca_hep.core.kernels`) the vectors
        go through the numba kernel.
        """
        if fast:
            transform_vectors_(t, L, self.ns, self.nv, row_signs)
            if self.n2:
                r = self._split(t)[2]
                Ls = L[:, :, None] if row_signs is None else row_signs[:, :, None] * L[:, :, None]
                r.copy_(torch.einsum("...ia,...mkac,...jc->...mkij", Ls, r, Ls))
            return t
        s, v, r = self._split(t)
        if inplace:
            # under autograd the products save their input for the gradient of L: give them a
            # copy, not a view of ``t`` that the copy_ below overwrites (a reshape is a view
            # for one vector per head)
            keep = torch.is_grad_enabled() and L.requires_grad
            if self.nv:
                lead = v.shape[:-3]
                vin = v.reshape(*lead, -1, 4)
                vv = torch.matmul(vin.clone() if keep else vin, L.transpose(-1, -2))
                v.copy_(vv.view_as(v))
            if self.n2:
                rin = r.clone() if keep else r
                r.copy_(torch.einsum("...ia,...mkac,...jc->...mkij", L, rin, L))
            return t
        parts = [s]
        if self.nv:
            lead = v.shape[:-3]
            vv = torch.matmul(v.reshape(*lead, -1, 4), L.transpose(-1, -2))
            parts.append(vv.reshape(*lead, t.shape[-2], self.nv * 4))
        if self.n2:
            rr = torch.einsum("...ia,...mkac,...jc->...mkij", L, r, L)
            parts.append(rr.flatten(-3))
        return torch.cat(parts, -1)

    def forward(
        self,
        x: torch.Tensor,
        frames: AttentionFrames | torch.Tensor | None,
        mask: torch.Tensor,
        bias: torch.Tensor | None = None,
        queries: int | None = None,
    ) -> torch.Tensor:
        """``x (B, N, dim)``; ``frames``: prepared :class:`AttentionFrames`, relative frames
        ``T (B, N, 4, 4)``, or None (identity); ``mask (B, N)``; optional additive logit
        ``bias`` broadcastable to ``(B, heads, N_q, N)``; ``queries``: attend from the first
        ``queries`` tokens only (``N_q``, default all N) -> ``(B, N_q, dim)``."""
        B, N, _ = x.shape
        H, D = self.heads, self.head_dim
        if isinstance(frames, torch.Tensor):
            frames = prepare_attention_frames(frames, x.dtype)
        if x.is_contiguous():
            # a 2D product (the same one nn.Linear does): a fresh tensor, not the view that
            # nn.Linear returns for 3D input; the in-place frame transform of a view would cost
            # autograd a zero-filled copy of its base in the backward pass
            flat = nn.functional.linear(x.view(B * N, -1), self.qkv.weight, self.qkv.bias)
        else:
            flat = self.qkv(x)
        qkv = flat.view(B, N, 3, H, D)
        tensorial = frames is not None and not self.reps.is_scalar_only
        fast = frames is not None and tensorial and can_use_kernels(qkv, frames.inv)
        # training: hand-written backward of the transforms (no slice/copy autograd nodes)
        trained = (
            frames is not None and tensorial and not fast
            and use_autograd_function(qkv, frames.inv)
        )
        if frames is not None and trained:  # keys lowered by g through the row signs
            # in place on the fresh linear output; its gradient comes from the unbind below only
            qkv = frame_transform(
                flat, frames.inv, self.ns, self.nv, self.n2, self.qkv_row_signs.to(qkv.dtype),
                inplace=True, shape=(B, N, 3, H, D), frames_inverse=frames.out,
            ).view(B, N, 3, H, D)
        elif frames is not None and fast:  # keys lowered by g through the row signs
            self._transform(qkv, frames.inv, fast=True, row_signs=self.qkv_row_signs)
        elif frames is not None and tensorial:  # keys lowered by g in frames.qkv
            qkv = self._transform(qkv, frames.qkv, inplace=True)
        # one unbind, not three selects: its backward stacks the gradients (no zero-filled copies)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        if not tensorial:
            k = k * self.key_signs.to(x.dtype)[None, None, None]
        attn_mask = key_padding_mask(mask)
        out_frames = None if frames is None else frames.out
        n_q = N
        if queries is not None:
            n_q = int(queries)
            q = q[:, :, :n_q]
            out_frames = None if out_frames is None else out_frames[:, :n_q]
        if bias is not None:  # additive float mask: the bias, -inf on padded keys
            attn_mask = bias.to(q.dtype).masked_fill(~attn_mask, float("-inf"))
        o = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        o = o.transpose(1, 2)  # (B, N_q, H, D)
        if out_frames is not None and trained:
            o = frame_transform(
                o.unsqueeze(2), out_frames, self.ns, self.nv, self.n2
            ).squeeze(2)
        elif out_frames is not None and fast:  # in place: o is a fresh output autograd does not need
            self._transform(o[:, :, None], out_frames, fast=True)
        elif out_frames is not None and tensorial:
            o = self._transform(o, out_frames)
        return self.out(o.reshape(B, n_q, H * D))
