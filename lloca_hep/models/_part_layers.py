"""The layers of the Particle Transformer (ParT, Qu, Li, Qian, arXiv:2202.03772), shared by
:class:`~lloca_hep.models.ParticleTransformer` and :class:`~lloca_hep.models.LLoCaParT`.

* :func:`pair_features`: ParT's interaction features of a pair of momenta ``a, b``:
  ``ln ΔR``, ``ln kT``, ``ln z``, ``ln m²`` with ``ΔR² = (y_a - y_b)² + (φ_a - φ_b)²``,
  ``kT = min(pT_a, pT_b) ΔR`` (GeV), ``z = min(pT_a, pT_b) / (pT_a + pT_b)``,
  ``m² = (p_a + p_b)²`` (GeV²), computed in float64 (each argument of a logarithm floored at
  :data:`PAIR_LOG_FLOOR`, as in the paper's code).
* :class:`PairEmbed`: the pointwise network (a 1x1 convolution over pairs is a ``Linear`` on the
  last axis) mapping the four features of every pair to one attention bias per head,
  ``(B, heads, N, N)``; in evaluation and in training it is computed in chunks of at most
  :data:`PAIR_CHUNK_PAIRS` pairs (the batch statistics of training exactly, with checkpointed
  chunks), so the float64 features and the hidden pair activations never exist for all ``N²``
  pairs at once.
* :class:`ParTBlock`: the NormFormer-style block of the paper (LayerNorm before and after the
  attention, LayerNorm inside the MLP, learned per-head scales of the attention output and a
  learned residual scale), as particle attention (with the pair bias) or as class attention
  (the class token attends to itself and the particles).
* :class:`ParTBackbone`: embedding -> particle-attention blocks -> class-attention blocks ->
  LayerNorm -> Linear.

The attention is :class:`~lloca_hep.core.attention.LLoCaAttention` in both models: with scalar
heads (``"16x0n"``) and no frames it is ordinary multi-head attention, with tensorial heads and
local frames the LLoCa attention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..core.attention import AttentionFrames, LLoCaAttention
from ..core.lorentz import minkowski
from ._layers import MaskedBatchNorm, ParticleEmbed
from .plain import MIN_LIGHTCONE_GEV

__all__ = [
    "CLASS_TOKEN_INIT_STD",
    "NUM_PAIR_FEATURES",
    "PAIR_CHUNK_PAIRS",
    "PAIR_LOG_FLOOR",
    "PairEmbed",
    "PairFeatures",
    "ParTBackbone",
    "ParTBlock",
    "pair_features",
]

#: Floor of the arguments of the pair-feature logarithms (GeV, GeV² or 1), as in ParT.
PAIR_LOG_FLOOR = 1e-8
#: ``ln ΔR``, ``ln kT``, ``ln z``, ``ln m²``.
NUM_PAIR_FEATURES = 4
#: Largest number of pairs whose float64 features (batch x query rows x N) or hidden
#: activations (pairs x width) :class:`PairEmbed` holds at once, in evaluation and training.
PAIR_CHUNK_PAIRS = 1 << 14
#: Standard deviation of the (truncated normal) initialisation of the class token.
CLASS_TOKEN_INIT_STD = 0.02

#: ``pairs(lo, hi)`` -> float64 pair features ``(B, hi - lo, N, NUM_PAIR_FEATURES)`` of the
#: query rows ``lo:hi`` and the bool ``(B, hi - lo, N)`` of the pairs that count (real, and
#: for the batch statistics); features of the others are zero.
PairFeatures = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def _rapidity(p: torch.Tensor) -> torch.Tensor:
    plus = (p[..., 0] + p[..., 3]).clamp_min(MIN_LIGHTCONE_GEV)
    minus = (p[..., 0] - p[..., 3]).clamp_min(MIN_LIGHTCONE_GEV)
    return 0.5 * (torch.log(plus) - torch.log(minus))


def pair_features(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ParT's pair features of momenta ``a``, ``b`` (broadcastable ``(..., 4)``, (E, px, py, pz)
    GeV) -> float64 ``(..., NUM_PAIR_FEATURES)``: ``ln ΔR, ln kT, ln z, ln m²``; zero where
    ``valid`` (bool, the broadcast shape without the last axis) is False.

    Per-particle quantities are computed before broadcasting: ``a (B, R, 1, 4)`` and
    ``b (B, 1, N, 4)`` cost O(N) logarithms for the rapidities, not O(N²).
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    floor = PAIR_LOG_FLOOR

    def root(x: torch.Tensor) -> torch.Tensor:  # finite gradients at 0 (self and padded pairs)
        return torch.sqrt(x.clamp_min(floor * floor))

    pt_a = root(a[..., 1].square() + a[..., 2].square())
    pt_b = root(b[..., 1].square() + b[..., 2].square())
    d_y = _rapidity(a) - _rapidity(b)
    cross = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    dot = a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]
    dot = torch.where((cross != 0) | (dot != 0), dot, 1.0)  # atan2(0, 0) has no gradient
    d_r = root(d_y.square() + torch.atan2(cross, dot).square())
    pt_min = torch.minimum(pt_a, pt_b)
    s = a + b
    feats = torch.stack([
        torch.log(d_r.clamp_min(floor)),
        torch.log((pt_min * d_r).clamp_min(floor)),
        torch.log((pt_min / (pt_a + pt_b).clamp_min(floor)).clamp_min(floor)),
        torch.log(minkowski(s, s).clamp_min(floor)),
    ], dim=-1)
    return feats * valid[..., None].to(feats.dtype)


def _affine_chain(x: torch.Tensor, hidden: Sequence[tuple[torch.Tensor, torch.Tensor]],
                  weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x (M, C)`` through ``GELU(x A^T + c)`` for every ``(A, c)`` of ``hidden`` (a linear layer
    with its batch normalisation folded in), then ``x W^T + b`` -> ``(M, weight.shape[0])``."""
    for a, c in hidden:
        x = torch.nn.functional.gelu(torch.addmm(c, x, a.t()))
    return torch.addmm(bias, x, weight.t())


def _chain_moments(x: torch.Tensor, hidden: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over the rows of :func:`_affine_chain` of ``x (M, C)``."""
    z = _affine_chain(x, hidden, weight, bias)
    mean = z.sum(0) / z.shape[0]  # two passes, as MaskedBatchNorm (var_mean is slower here)
    return mean, (z - mean).square().sum(0) / z.shape[0]


def _checkpointed(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; while autograd records, its intermediates are dropped and recomputed in the
    backward pass (the O(N²) pair activations of a chunk are never kept)."""
    if torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False)
    return fn(*args)


def _flat(hidden: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(pair) for pair in hidden]


class PairEmbed(nn.Module):
    """Pair features ``(..., NUM_PAIR_FEATURES)`` -> one attention bias per head.

    :class:`~lloca_hep.models._layers.MaskedBatchNorm` of the features, then for every width
    of ``widths`` ``Linear -> MaskedBatchNorm -> GELU``, and a last ``Linear -> MaskedBatchNorm``
    to ``heads`` outputs (no activation: the bias may be negative). Statistics come from the
    pairs that count only (``valid`` of :data:`PairFeatures`).

    :meth:`embed` is that network on a tensor of features, all pairs at once (the reference).
    :meth:`forward` computes the same function for the real pairs of a batch in chunks of at
    most :data:`PAIR_CHUNK_PAIRS` pairs, so that neither the features nor a hidden activation
    ``(B, N, N, width)`` ever exists for all pairs at once: every hidden batch normalisation is
    folded into its linear layer (``u = x (g W)^T + g (b - mean) + beta`` with
    ``g = gamma / sqrt(var + eps)``), in evaluation from the running statistics, in training
    from the exact statistics of the batch, which one chunked pass per hidden layer gathers
    (chunk means and variances combined exactly). While autograd records, each chunk is
    checkpointed: its activations are recomputed in the backward pass instead of kept. What is
    held for all pairs is ``(n_pairs, NUM_PAIR_FEATURES)`` features and ``(n_pairs, heads)``
    outputs (in evaluation without autograd, the bias only); padded pairs are skipped and get a
    zero bias.
    """

    def __init__(self, widths: Sequence[int], heads: int):
        super().__init__()
        self.heads = heads
        self.input_norm = MaskedBatchNorm(NUM_PAIR_FEATURES)
        dims = [NUM_PAIR_FEATURES, *widths, heads]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(MaskedBatchNorm(b) for b in dims[1:])
        self.act = nn.GELU()

    def embed(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (..., NUM_PAIR_FEATURES)`` in the network dtype -> ``(..., heads)``, all pairs
        at once (layer by layer; the reference for :meth:`forward`)."""
        x = self.input_norm(x, valid)
        last = len(self.linears) - 1
        for k, (lin, norm) in enumerate(zip(self.linears, self.norms, strict=True)):
            x = norm(lin(x), valid)
            if k < last:
                x = self.act(x)
        return x

    def reference(self, pairs: PairFeatures, mask: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
        """The bias ``(B, heads, N, N)`` of :meth:`embed` on all pairs at once (no chunks: the
        O(N²) activations are held in full). Kept for the tests and for tracing."""
        feats, valid = pairs(0, mask.shape[1])
        return self.embed(feats.to(dtype), valid).permute(0, 3, 1, 2)

    def _lin(self, k: int) -> nn.Linear:
        return cast(nn.Linear, self.linears[k])

    def _norm(self, k: int) -> MaskedBatchNorm:
        return cast(MaskedBatchNorm, self.norms[k])

    def _fold(self, k: int, mean: torch.Tensor, var: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear ``k`` followed by its normalisation with statistics ``mean``, ``var``, as one
        affine map ``(A, c)``."""
        lin, norm = self._lin(k), self._norm(k)
        g = norm.weight * torch.rsqrt(var + norm.eps)
        return g[:, None] * lin.weight, g * (lin.bias - mean) + norm.bias

    def _batch_moments(self, x: torch.Tensor, hidden: list[tuple[torch.Tensor, torch.Tensor]],
                       k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact mean and biased variance of the output of linear ``k`` over the rows of ``x``
        (the pairs that count), computed chunk by chunk and combined."""
        lin = self._lin(k)
        n = x.shape[0]
        if n == 0:  # as MaskedBatchNorm: zero mean and variance, running statistics unchanged
            zero = lin.weight.new_zeros(lin.out_features)
            return zero, zero
        size = PAIR_CHUNK_PAIRS
        parts = [_checkpointed(_chain_moments, x[lo:lo + size], _flat(hidden), lin.weight,
                               lin.bias) for lo in range(0, n, size)]
        means = torch.stack([m for m, _ in parts])
        if len(parts) == 1:
            return parts[0]
        counts = torch.tensor([min(size, n - lo) for lo in range(0, n, size)],
                              dtype=means.dtype, device=means.device)[:, None]
        mean = (counts * means).sum(0) / n
        var = (counts * (torch.stack([v for _, v in parts]) + (means - mean).square())).sum(0) / n
        return mean, var

    def _update_running(self, k: int, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """The running statistics of normalisation ``k`` after a batch of ``n`` pairs, as
        :class:`~lloca_hep.models._layers.MaskedBatchNorm` updates them."""
        norm = self._norm(k)
        if n == 0:
            return
        with torch.no_grad():
            unbiased = var * n / max(n - 1.0, 1.0)
            norm.running_mean.lerp_(mean.detach().to(norm.running_mean.dtype), norm.momentum)
            norm.running_var.lerp_(unbiased.detach().to(norm.running_var.dtype), norm.momentum)

    def _real_pairs(self, pairs: PairFeatures, mask: torch.Tensor, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The features ``(n, NUM_PAIR_FEATURES)`` in ``dtype`` of the ``n`` pairs of real
        particles (row-chunked), the bool ``(n,)`` of those that count, their flat index
        ``(b N + i) N + j`` into ``(B, N, N)``."""
        B, N = mask.shape
        rows = max(1, min(N, PAIR_CHUNK_PAIRS // max(1, B * N)))

        def gather(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            feats, valid = pairs(lo, hi)
            real = mask[:, lo:hi, None] & mask[:, None]
            return feats[real].to(dtype), valid[real]

        xs, counts, index = [], [], []
        for lo in range(0, N, rows):
            hi = min(N, lo + rows)
            real = mask[:, lo:hi, None] & mask[:, None]
            x, c = _checkpointed(gather, lo, hi)
            b, i, j = real.nonzero(as_tuple=True)
            xs.append(x)
            counts.append(c)
            index.append((b * N + i + lo) * N + j)
        if len(xs) == 1:
            return xs[0], counts[0], index[0]
        return torch.cat(xs), torch.cat(counts), torch.cat(index)

    def forward(self, pairs: PairFeatures, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The bias ``(B, heads, N, N)`` in ``dtype`` of the pairs ``pairs(lo, hi)`` of jets with
        ``mask (B, N)``; padded pairs get zero (they are masked in the attention)."""
        B, N = mask.shape
        if torch.compiler.is_compiling():  # traced: all pairs in one go (no data-dependent shapes)
            if self.training:
                return self.reference(pairs, mask, dtype)
            feats, valid = pairs(0, N)
            x = self.input_norm(feats.to(dtype).reshape(-1, NUM_PAIR_FEATURES), valid.reshape(-1))
            z = _affine_chain(x, self._folded_running(dtype), self._lin(-1).weight,
                              self._lin(-1).bias)
            out = self.norms[-1](z, valid.reshape(-1))
            return out.view(B, N, N, self.heads).permute(0, 3, 1, 2)
        if not self.training and not torch.is_grad_enabled():
            return self._evaluate(pairs, mask, dtype)
        x, counts, index = self._real_pairs(pairs, mask, dtype)
        x = self.input_norm(x, counts)
        hidden: list[tuple[torch.Tensor, torch.Tensor]]
        if self.training:
            hidden = []
            src = x if bool(counts.all()) else x[counts]
            for k in range(len(self.linears) - 1):
                mean, var = self._batch_moments(src, hidden, k)
                self._update_running(k, mean, var, src.shape[0])
                hidden.append(self._fold(k, mean, var))
        else:
            hidden = self._folded_running(x.dtype)
        last = self._lin(-1)
        size = PAIR_CHUNK_PAIRS
        chunks = [_checkpointed(_affine_chain, x[lo:lo + size], _flat(hidden), last.weight,
                                last.bias) for lo in range(0, x.shape[0], size)]
        if not chunks:  # no real pair in the batch
            chunks = [x.new_zeros(0, self.heads)]
        z = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        out = self.norms[-1](z, counts)
        full = out.new_zeros(B, self.heads, N * N)
        full[index // (N * N), :, index % (N * N)] = out
        return full.view(B, self.heads, N, N)

    def _folded_running(self, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The hidden layers with their running statistics folded in."""
        return [self._fold(k, self._norm(k).running_mean.to(dtype),
                           self._norm(k).running_var.to(dtype))
                for k in range(len(self.linears) - 1)]

    def _evaluate(self, pairs: PairFeatures, mask: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
        """Evaluation without autograd: each chunk of query rows goes from its features to its
        entries of the bias; nothing but the bias is held for all pairs."""
        B, N = mask.shape
        hidden = self._folded_running(dtype)
        last = self._lin(-1)
        full = torch.zeros(B, self.heads, N, N, dtype=dtype, device=mask.device)
        rows = max(1, min(N, PAIR_CHUNK_PAIRS // max(1, B * N)))
        for lo in range(0, N, rows):
            hi = min(N, lo + rows)
            feats, valid = pairs(lo, hi)
            b, i, j = (mask[:, lo:hi, None] & mask[:, None]).nonzero(as_tuple=True)
            x = self.input_norm(feats[b, i, j].to(dtype), valid[b, i, j])
            for start in range(0, x.shape[0], PAIR_CHUNK_PAIRS):
                stop = start + PAIR_CHUNK_PAIRS
                z = _affine_chain(x[start:stop], hidden, last.weight, last.bias)
                full[b[start:stop], :, i[start:stop] + lo, j[start:stop]] = \
                    self.norms[-1](z, valid.new_ones(z.shape[0]))
        return full


class ParTBlock(nn.Module):
    """ParT's attention block on ``x (B, N, dim)``.

    ``a = head_scale * LN(Attn(LN x))``, ``x = x + dropout(a)``, then
    ``x = resid_scale * x + dropout(fc2(LN(dropout(GELU(fc1(LN x))))))``. ``head_scale``
    multiplies the ``heads`` groups of output channels (``dim`` must be divisible by
    ``heads``). Called with ``queries=q`` it is a class-attention block: ``x`` holds the class
    token(s) first, only they attend and are returned (``(B, q, dim)``).
    """

    def __init__(self, dim: int, heads: int, head_reps: str, mlp_ratio: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding width {dim} must be divisible by heads={heads}")
        self.heads = heads
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.attn = LLoCaAttention(dim, heads, head_reps)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.post_fc_norm = nn.LayerNorm(mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.head_scale = nn.Parameter(torch.ones(heads))
        self.resid_scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, frames: AttentionFrames | None, mask: torch.Tensor,
                bias: torch.Tensor | None = None, queries: int | None = None) -> torch.Tensor:
        residual = x if queries is None else x[:, :queries]
        a = self.attn(self.pre_attn_norm(x), frames, mask, bias=bias, queries=queries)
        a = (a.unflatten(-1, (self.heads, -1)) * self.head_scale[:, None]).flatten(-2)
        x = residual + self.dropout(self.post_attn_norm(a))
        y = self.dropout(self.act(self.fc1(self.pre_fc_norm(x))))
        y = self.dropout(self.fc2(self.post_fc_norm(y)))
        return self.resid_scale * x + y


class ParTBackbone(nn.Module):
    """Embedding, particle attention with the pair bias, class attention, ``LN -> Linear``.

    Args:
        num_inputs: per-particle input features ``F``.
        embed_dims: widths of the particle embedding (the last is the block width).
        pair_embed_dims: hidden widths of :class:`PairEmbed`.
        heads, head_reps: attention heads and the tensor representation of one head.
        blocks, class_blocks: number of particle- and class-attention blocks.
        mlp_ratio: MLP expansion of the blocks; dropout: dropout of the particle blocks
            (class blocks: none, as in the paper).
        num_classes: None for logits ``(B,)``, else ``(B, num_classes)``.
    """

    def __init__(self, num_inputs: int, embed_dims: Sequence[int], pair_embed_dims: Sequence[int],
                 heads: int, head_reps: str, blocks: int, class_blocks: int, mlp_ratio: int,
                 dropout: float, num_classes: int | None):
        super().__init__()
        dim = int(embed_dims[-1])
        self.num_classes = num_classes
        self.embed = ParticleEmbed(num_inputs, embed_dims)
        self.pair_embed = PairEmbed(pair_embed_dims, heads)
        self.blocks = nn.ModuleList(
            ParTBlock(dim, heads, head_reps, mlp_ratio, dropout) for _ in range(blocks))
        self.class_blocks = nn.ModuleList(
            ParTBlock(dim, heads, head_reps, mlp_ratio, 0.0) for _ in range(class_blocks))
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.class_token, std=CLASS_TOKEN_INIT_STD)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 1 if num_classes is None else int(num_classes))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network's parameters."""
        return self.fc.weight.dtype

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pairs: PairFeatures,
                frames: AttentionFrames | None,
                class_frames: AttentionFrames | None) -> torch.Tensor:
        """``x (B, N, F)`` in the network dtype, ``mask (B, N)``, the pair features
        ``pairs``; ``frames`` of the particles and ``class_frames`` of ``[class token,
        particles]`` for the attention (None: identity) -> logits."""
        B = x.shape[0]
        h = self.embed(x, mask)
        bias = self.pair_embed(pairs, mask, h.dtype)
        for block in self.blocks:
            h = block(h, frames, mask, bias=bias)
        cls = self.class_token.to(h.dtype).expand(B, 1, h.shape[-1])
        zmask = torch.cat([mask.new_ones(B, 1), mask], dim=1)
        for block in self.class_blocks:
            cls = block(torch.cat([cls, h], dim=1), class_frames, zmask, queries=1)
        out = self.fc(self.norm(cls[:, 0]))
        return out[:, 0] if self.num_classes is None else out
