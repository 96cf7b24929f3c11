"""ParticleNet (Qu, Gouskos, arXiv:1902.08570) and its Lorentz-equivariant twin.

:class:`ParticleNet` is the paper's network, written here from the paper: EdgeConv blocks over
the ``k`` nearest neighbours of every constituent, first in ``(Δη, Δφ)`` and then in the
feature space of the previous block's output; each block maps the edge features
``(x_i, x_j - x_i)`` through an MLP (``Linear -> BatchNorm -> ReLU`` per layer), averages
over the neighbours and adds a (projected) shortcut; global average pooling, a fully
connected layer with dropout and the output layer. Inputs: the jet-relative features of
:func:`~lloca_hep.models.plain.jet_relative_features` plus the per-particle scalars.

:class:`LLoCaParticleNet` is the same network made exactly Lorentz-equivariant by local frames
(arXiv:2505.20280): node inputs are the local-frame features of
:func:`~lloca_hep.core.features.local_features`; the first neighbours come from the
Lorentz-invariant distance of :func:`~lloca_hep.core.messages.knn_neighbours` (float64); every
edge also carries the momentum of ``j`` in the frame of ``i`` (``asinh`` of the components
of ``L_i p_j`` in jet-mass units and ``log(m_ij² + EPS_PAIR)``) and ``num_vectors``
four-vectors predicted by ``j`` in its own frame and re-expressed in frame ``i`` with
``L_i L_j^{-1}`` (the tensorial message). All node features are local-frame components,
hence invariant, so the neighbours in feature space are invariant too.

Neighbour selection pads the distances with ``k`` never-chosen columns, so ``k`` does not
depend on the number of constituents (jets with fewer than ``k + 1`` get masked edges).

Default sizes (the paper's): ``k = 16``, EdgeConv widths (64, 64, 64), (128, 128, 128),
(256, 256, 256), a fully connected layer of 256 with dropout 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..core.features import NUM_LOCAL_FEATURES, local_features
from ..core.framechoices import FrameChoice, LocalFrames
from ..core.framesnet import EPS_ENERGY, EPS_PAIR
from ..core.lorentz import METRIC_DIAG, minkowski
from ..core.messages import edge_frames
from ._common import check_inputs, check_scalars, empty_logits, masked_mean, pad_empty
from ._layers import MaskedBatchNorm, check_widths
from .plain import FEATURE_NAMES, jet_relative_features

__all__ = ["EdgeConvBlock", "LLoCaParticleNet", "ParticleNet", "batch_norm", "select_neighbours"]

#: The paper's configuration.
NEIGHBOURS = 16
EDGE_DIMS = ((64, 64, 64), (128, 128, 128), (256, 256, 256))
FC_DIM = 256
DROPOUT = 0.1
#: Edges per chunk of the edge MLP in evaluation without autograd (cache-sized activations).
EDGE_CHUNK = 1 << 14
#: Distance of padded partners and of the constituent itself (never chosen).
FAR = 1e30
#: Columns of :func:`~lloca_hep.models.plain.jet_relative_features` used as the first
#: coordinates: Δη and Δφ.
COORDINATE_COLUMNS = (FEATURE_NAMES.index("delta_eta"), FEATURE_NAMES.index("delta_phi"))
#: Edge scalars of LLoCa-ParticleNet from the momenta: 4 components of ``L_i p_j`` and
#: ``log(m_ij² + EPS_PAIR)``.
NUM_EDGE_MOMENTUM_FEATURES = 5


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x (B, N, ...)`` at ``idx (B, N, k)`` -> ``(B, N, k, ...)``."""
    B, N, k = idx.shape
    flat = idx.reshape(B, N * k).view(B, N * k, *([1] * (x.dim() - 2)))
    return torch.gather(x, 1, flat.expand(B, N * k, *x.shape[2:])).view(B, N, k, *x.shape[2:])


def select_neighbours(d: torch.Tensor, mask: torch.Tensor, k: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest neighbours under the distances ``d (B, N, N)`` of jets with ``mask``.

    Returns ``idx (B, N, k)`` (0 for missing neighbours) and ``valid (B, N, k)``: the partner is
    a real constituent other than ``i`` and ``i`` is real. Padded partners and ``i`` itself are
    never chosen; ``d`` is padded with ``k`` far columns, so jets with ``k`` or fewer
    constituents get invalid slots and ``k`` need not be at most ``N - 1``.
    """
    B, N, _ = d.shape
    eye = torch.eye(N, dtype=torch.bool, device=d.device)
    bad = ~(mask[:, :, None] & mask[:, None, :]) | eye
    d = torch.cat([d.masked_fill(bad, FAR), d.new_full((B, N, k), FAR)], dim=-1)
    dist, idx = torch.topk(d, k, dim=-1, largest=False, sorted=True)
    valid = (dist < FAR) & mask[..., None]
    return torch.where(valid, idx, 0), valid


@torch.no_grad()  # only the neighbour indices are used: no graph over N² pairs
def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    """``|x_i - x_j|²`` ``(B, N, N)`` of points ``x (B, N, C)`` (no gradient)."""
    sq = x.square().sum(-1)
    return (sq[:, :, None] + sq[:, None, :] - 2.0 * x @ x.transpose(1, 2)).clamp_min(0.0)


def batch_norm(norm: MaskedBatchNorm, x: torch.Tensor, valid: torch.Tensor,
               all_valid: bool | None = None) -> torch.Tensor:
    """``norm(x, valid)`` (:class:`~lloca_hep.models._layers.MaskedBatchNorm` of the last axis of
    ``x (..., C)`` over the entries where ``valid`` is True) on torch's fused ``batch_norm``
    kernels: the same statistics, output on the valid entries and running estimates. Entries
    that are not valid are zero in training (the masked form transforms them; both are for the
    caller to ignore). ``all_valid``: ``bool(valid.all())`` if the caller knows it."""
    C = x.shape[-1]
    flat = x.reshape(-1, C)

    def shaped(y: torch.Tensor) -> torch.Tensor:  # no view for 2-d input: ReLU in place after
        return y if x.dim() == 2 else y.view_as(x)

    if not norm.training:
        return shaped(F.batch_norm(flat, norm.running_mean, norm.running_var, norm.weight,
                                   norm.bias, False, 0.0, norm.eps))
    if torch.compiler.is_compiling():  # traced: no data-dependent branches
        return norm(x, valid)
    v = valid.reshape(-1)
    if all_valid is None:
        all_valid = bool(v.all())
    if (not all_valid and int(v.sum()) < 2) or flat.shape[0] < 2:
        return norm(x, valid)  # its rules for batches of zero or one counted entry
    args = (norm.running_mean, norm.running_var, norm.weight, norm.bias, True, norm.momentum,
            norm.eps)
    if all_valid:
        return shaped(F.batch_norm(flat, *args))
    return shaped(flat.new_zeros(flat.shape).index_put((v,), F.batch_norm(flat[v], *args)))


def _all_valid(valid: torch.Tensor) -> bool:
    """``bool(valid.all())``; False while tracing (the general masked form is traced)."""
    return False if torch.compiler.is_compiling() else bool(valid.all())


def _folded(norm: MaskedBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation-mode normalisation as ``x * scale + shift``."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


class EdgeConvBlock(nn.Module):
    """EdgeConv: ``x (B, N, C)`` -> ``(B, N, widths[-1])``.

    Edge ``(i, j)`` features ``[x_i, x_j - x_i, extra_ij]`` -> per width ``Linear (no bias) ->
    MaskedBatchNorm -> ReLU`` -> mean over the valid neighbours; plus the shortcut ``x`` (or
    ``BatchNorm(Linear x)`` when the width changes); ReLU; padded rows zero.

    Computed without forming the edge features: the first linear layer ``W = [W_a, W_b, W_c]``
    of an edge is ``(W_a - W_b) x_i + W_b x_j + W_c extra_ij``, whose first two terms are
    products per particle (``k`` times fewer than per edge), gathered at the neighbours; the
    normalisations run on torch's fused kernels (:func:`batch_norm`) and, in evaluation, are
    folded into the linear layers.
    """

    def __init__(self, in_dim: int, widths: Sequence[int], extra_edge_dim: int = 0):
        super().__init__()
        dims = [2 * in_dim + extra_edge_dim, *widths]
        self.in_dim = in_dim
        self.linears = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(MaskedBatchNorm(b) for b in dims[1:])
        self.shortcut: nn.Linear | None = None
        self.shortcut_norm: MaskedBatchNorm | None = None
        if in_dim != widths[-1]:
            self.shortcut = nn.Linear(in_dim, widths[-1], bias=False)
            self.shortcut_norm = MaskedBatchNorm(widths[-1])
        self.act = nn.ReLU()

    def _layers(self) -> list[tuple[nn.Linear, MaskedBatchNorm]]:
        return [(cast(nn.Linear, lin), cast(MaskedBatchNorm, norm))
                for lin, norm in zip(self.linears, self.norms, strict=True)]

    def forward(self, x: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor,
                mask: torch.Tensor, extra: torch.Tensor | None = None,
                all_valid: bool | None = None) -> torch.Tensor:
        """``x (B, N, C)``, neighbours ``idx``/``valid (B, N, k)``, ``mask (B, N)``, optional
        edge features ``extra (B, N, k, E)``; ``all_valid``: ``bool(valid.all())`` if known."""
        C = self.in_dim
        if all_valid is None:
            all_valid = _all_valid(valid)
        layers = self._layers()
        weight = layers[0][0].weight
        w_nb = weight[:, C:2 * C]
        w_self, w_extra = weight[:, :C] - w_nb, weight[:, 2 * C:]
        if not self.training:
            scale, shift = _folded(layers[0][1])
            w_self, w_nb, w_extra = scale[:, None] * w_self, scale[:, None] * w_nb, \
                scale[:, None] * w_extra
            node = torch.addmm(shift, x.reshape(-1, C), w_self.t()).view(*x.shape[:2], -1)
            if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
                agg = self._aggregate_chunked(node, x @ w_nb.t(), w_extra, idx, valid, extra,
                                              all_valid)
                return self._finish(agg, x, mask)
        else:
            node = x @ w_self.t()
        B, N, k = idx.shape
        # the edges as (B N k, width) rows; in-place ReLUs on results that are not views
        e = (node[:, :, None] + _gather(x @ w_nb.t(), idx)).view(B * N * k, -1)
        if extra is not None:
            e = torch.addmm(e, extra.reshape(B * N * k, -1), w_extra.t())
        flat_valid = valid.reshape(-1)
        if self.training:
            e = batch_norm(layers[0][1], e, flat_valid, all_valid)
        e = torch.relu_(e)
        for lin, norm in layers[1:]:
            if self.training:
                e = batch_norm(norm, e @ lin.weight.t(), flat_valid, all_valid)
            else:
                scale, shift = _folded(norm)
                e = torch.addmm(shift, e, (scale[:, None] * lin.weight).t())
            e = torch.relu_(e)
        e = e.view(B, N, k, -1)
        if all_valid:
            agg = e.mean(2)
        else:
            w = valid[..., None].to(e.dtype)
            agg = (e * w).sum(2) / w.sum(2).clamp_min(1.0)
        return self._finish(agg, x, mask)

    def _finish(self, agg: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        sc = x
        if self.shortcut is not None and self.shortcut_norm is not None:
            sc = batch_norm(self.shortcut_norm, self.shortcut(x), mask)
        return self.act(agg + sc) * mask[..., None].to(x.dtype)

    def _aggregate_chunked(self, node: torch.Tensor, nb: torch.Tensor, w_extra: torch.Tensor,
                           idx: torch.Tensor, valid: torch.Tensor, extra: torch.Tensor | None,
                           all_valid: bool) -> torch.Tensor:
        """Evaluation without autograd: the edge MLP (normalisations folded) and the mean over
        the neighbours for chunks of about :data:`EDGE_CHUNK` edges, so that the edge
        activations stay small and in cache. ``node``/``nb (B, N, width)``: the first layer's
        per-particle terms of ``i`` and of the neighbour."""
        B, N, k = idx.shape
        width = node.shape[-1]
        node, nb = node.reshape(B * N, width), nb.reshape(B * N, width)
        rows = (idx + torch.arange(B, device=idx.device)[:, None, None] * N).reshape(B * N, k)
        later = []
        for lin, norm in self._layers()[1:]:
            scale, shift = _folded(norm)
            later.append(((scale[:, None] * lin.weight).t(), shift))
        ext = None if extra is None else extra.reshape(B * N, k, extra.shape[-1])
        weights = valid.reshape(B * N, k, 1).to(node.dtype)
        counts = weights.sum(1).clamp_min(1.0)
        out = node.new_empty(B * N, later[-1][1].shape[0] if later else width)
        step = max(1, EDGE_CHUNK // max(1, k))
        for lo in range(0, B * N, step):
            hi = min(B * N, lo + step)
            e = nb.index_select(0, rows[lo:hi].reshape(-1)).view(hi - lo, k, width)
            e += node[lo:hi, None]
            if ext is not None:
                e.view(-1, width).addmm_(ext[lo:hi].reshape(-1, ext.shape[-1]), w_extra.t())
            f = torch.relu_(e.view(-1, width))
            for w_t, shift in later:
                f = torch.relu_(torch.addmm(shift, f, w_t))
            f3 = f.view(hi - lo, k, -1)
            if all_valid:
                torch.mean(f3, 1, out=out[lo:hi])
            else:
                torch.div((f3 * weights[lo:hi]).sum(1), counts[lo:hi], out=out[lo:hi])
        return out.view(B, N, -1)


class _Head(nn.Module):
    """Global average pooling -> ``Linear -> ReLU -> Dropout`` -> ``Linear`` to the logits."""

    def __init__(self, dim: int, fc_dim: int, dropout: float, num_classes: int | None):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Sequential(nn.Linear(dim, fc_dim), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(fc_dim, 1 if num_classes is None else num_classes))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.fc(masked_mean(h, mask))
        return out[:, 0] if self.num_classes is None else out


def _check_config(neighbours: int, edge_dims: Sequence[Sequence[int]], fc_dim: int,
                  dropout: float) -> list[list[int]]:
    if isinstance(edge_dims, (str, bytes)) or not isinstance(edge_dims, Sequence) or not edge_dims:
        raise ValueError(f"edge_dims must be a non-empty list of width lists, got {edge_dims!r}")
    for name, value in (("neighbours", neighbours), ("fc_dim", fc_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return [check_widths(f"edge_dims[{i}]", w) for i, w in enumerate(edge_dims)]


class ParticleNet(nn.Module):
    """ParticleNet: ``model(p4, mask, scalars=None)`` -> logits ``(B,)`` (or
    ``(B, num_classes)``).

    ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV, ``mask`` bool ``(B, N)``, optional
    per-particle ``scalars (B, N, S)`` appended to the features (both kinds alike). The
    features and the first coordinates ``(Δη, Δφ)`` are computed in float64, the network runs
    in the dtype of its parameters.

    Args:
        num_classes: None for binary logits ``(B,)``, else the number of classes.
        neighbours: ``k`` of the kNN graphs; edge_dims: the widths of each EdgeConv block's
            MLP; fc_dim: width of the fully connected layer; dropout: its dropout.
        num_scalars, num_frames_scalars: per-particle scalars (``S`` is their sum).
    """

    def __init__(self, num_classes: int | None = None, neighbours: int = NEIGHBOURS,
                 edge_dims: Sequence[Sequence[int]] = EDGE_DIMS, fc_dim: int = FC_DIM,
                 dropout: float = DROPOUT, num_scalars: int = 0, num_frames_scalars: int = 0):
        super().__init__()
        dims = _check_config(neighbours, edge_dims, fc_dim, dropout)
        self._config: dict[str, Any] = dict(
            num_classes=num_classes, neighbours=neighbours, edge_dims=dims, fc_dim=fc_dim,
            dropout=float(dropout), num_scalars=num_scalars,
            num_frames_scalars=num_frames_scalars)
        self.neighbours = int(neighbours)
        self.n_scalars = int(num_scalars) + int(num_frames_scalars)
        n_in = len(FEATURE_NAMES) + self.n_scalars
        self.input_norm = MaskedBatchNorm(n_in)
        ins = [n_in] + [w[-1] for w in dims[:-1]]
        self.blocks = nn.ModuleList(EdgeConvBlock(a, w) for a, w in zip(ins, dims, strict=True))
        self.head = _Head(dims[-1][-1], fc_dim, float(dropout), num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        scalars = check_scalars(scalars, mask, self.n_scalars)
        dtype = self.input_norm.weight.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.head.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        x = jet_relative_features(p4, mask)
        points = x[..., list(COORDINATE_COLUMNS)]
        if scalars is not None:
            x = torch.cat([x, scalars.to(x.dtype) * mask[..., None].to(x.dtype)], dim=-1)
        h = batch_norm(self.input_norm, x.to(dtype), mask) * mask[..., None].to(dtype)
        for block in self.blocks:
            idx, valid = select_neighbours(_squared_distances(points), mask, self.neighbours)
            h = block(h, idx, valid, mask, all_valid=_all_valid(valid))
            points = h
        return self.head(h, mask)


@torch.no_grad()  # only the neighbour indices are used
def _invariant_distances(lf: LocalFrames) -> torch.Tensor:
    """``<u_i, u_j>`` ``(B, N, N)`` float64, ``u = p / E`` with ``E = <p, J>`` the energy in
    the jet rest frame: Lorentz invariant (``1 - cos`` of the rest-frame opening angle for
    massless constituents), the distance of :func:`~lloca_hep.core.messages.knn_neighbours`."""
    energy = minkowski(lf.p4, lf.jet[:, None]).clamp_min(0)
    u = lf.p4 / (energy + EPS_ENERGY)[..., None]
    g = u.new_tensor(METRIC_DIAG)
    return torch.einsum("bia,bja->bij", u * g, u)


class LLoCaParticleNet(nn.Module):
    """Lorentz-equivariant ParticleNet: ``model(p4, mask, scalars=None)`` -> logits ``(B,)``
    (or ``(B, num_classes)``).

    ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV, ``mask`` bool ``(B, N)`` and, when
    ``num_scalars + num_frames_scalars = S > 0``, ``scalars (B, N, S)``: the first
    ``num_scalars`` are Lorentz scalars (frames net and node inputs), the rest non-invariant
    (frames net only). Frames, the first distances and the edge momenta in float64; the
    network in the dtype of its parameters.

    Args:
        frames, symmetry_breaking, frames_hidden, frames_key_dim, random_max_rapidity: the
            frames, as for :class:`~lloca_hep.models.LLoCaTransformer`.
        num_classes, neighbours, edge_dims, fc_dim, dropout: as for :class:`ParticleNet`.
        num_vectors: four-vectors per edge message, re-expressed from frame ``j`` to ``i``.
        num_scalars, num_frames_scalars: invariant / non-invariant per-particle scalars.
    """

    def __init__(self, frames: str = "learned", symmetry_breaking: bool | str = True,
                 num_classes: int | None = None, neighbours: int = NEIGHBOURS,
                 edge_dims: Sequence[Sequence[int]] = EDGE_DIMS, fc_dim: int = FC_DIM,
                 dropout: float = DROPOUT, num_vectors: int = 4, frames_hidden: int = 32,
                 frames_key_dim: int = 8, random_max_rapidity: float = 1.0,
                 num_scalars: int = 0, num_frames_scalars: int = 0):
        super().__init__()
        dims = _check_config(neighbours, edge_dims, fc_dim, dropout)
        self._config: dict[str, Any] = dict(
            frames=frames, symmetry_breaking=symmetry_breaking, num_classes=num_classes,
            neighbours=neighbours, edge_dims=dims, fc_dim=fc_dim, dropout=float(dropout),
            num_vectors=num_vectors, frames_hidden=frames_hidden, frames_key_dim=frames_key_dim,
            random_max_rapidity=random_max_rapidity, num_scalars=num_scalars,
            num_frames_scalars=num_frames_scalars)
        self.neighbours = int(neighbours)
        self.num_vectors = int(num_vectors)
        self.num_scalars = int(num_scalars)
        self.num_frames_scalars = int(num_frames_scalars)
        self.frame_choice = FrameChoice(
            frames, symmetry_breaking, frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim, random_max_rapidity=random_max_rapidity,
            num_scalars=self.num_scalars + self.num_frames_scalars)
        n_in = NUM_LOCAL_FEATURES + self.num_scalars
        self.input_norm = MaskedBatchNorm(n_in)
        ins = [n_in] + [w[-1] for w in dims[:-1]]
        extra = NUM_EDGE_MOMENTUM_FEATURES + 4 * self.num_vectors
        self.to_vectors = nn.ModuleList(nn.Linear(a, 4 * self.num_vectors) for a in ins)
        self.edge_norms = nn.ModuleList(MaskedBatchNorm(NUM_EDGE_MOMENTUM_FEATURES) for _ in ins)
        self.blocks = nn.ModuleList(
            EdgeConvBlock(a, w, extra) for a, w in zip(ins, dims, strict=True))
        self.head = _Head(dims[-1][-1], fc_dim, float(dropout), num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def _edge_momenta(self, lf: LocalFrames, idx: torch.Tensor) -> torch.Tensor:
        """``(B, N, k, 5)`` float64: ``asinh(L_i p_j)`` and ``log(m_ij² + EPS_PAIR)`` (jet-mass
        units) of every edge."""
        pj = _gather(lf.p4, idx)
        lpj = pj if lf.frames is None else torch.einsum("bnij,bnkj->bnki", lf.frames, pj)
        s = lf.p4[:, :, None] + pj
        m2 = torch.log(minkowski(s, s).clamp_min(0) + EPS_PAIR)
        return torch.cat([torch.asinh(lpj), m2[..., None]], dim=-1)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        n_inv = self.num_scalars
        scalars = check_scalars(scalars, mask, n_inv + self.num_frames_scalars)
        dtype = self.input_norm.weight.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.head.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        lf = self.frame_choice(p4, mask, scalars)
        x = local_features(lf, mask)
        if n_inv:
            assert scalars is not None
            x = torch.cat([x, scalars[..., :n_inv].to(x.dtype) * mask[..., None].to(x.dtype)],
                          dim=-1)
        m = mask[..., None].to(dtype)
        h = batch_norm(self.input_norm, x.to(dtype), mask) * m
        d = _invariant_distances(lf)
        for block, to_vec, edge_norm in zip(self.blocks, self.to_vectors, self.edge_norms,
                                            strict=True):
            idx, valid = select_neighbours(d, mask, self.neighbours)
            vj = _gather(to_vec(h).unflatten(-1, (self.num_vectors, 4)), idx)  # frame j
            edges = edge_frames(lf.relative, idx)
            if edges is not None:  # into frame i: L_i L_j^{-1}
                vj = torch.matmul(vj, edges.to(dtype).transpose(-1, -2))
            all_valid = _all_valid(valid)
            em = batch_norm(cast(MaskedBatchNorm, edge_norm), self._edge_momenta(lf, idx).to(dtype),
                            valid, all_valid)
            h = block(h, idx, valid, mask, torch.cat([em, vj.flatten(-2)], dim=-1), all_valid)
            d = _squared_distances(h)
        return self.head(h, mask)
