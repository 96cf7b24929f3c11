"""Equivariant vector predictor ("frames net"), float64, padding-mask aware, O(N^2 * small).

For each constituent ``i`` it outputs three four-vectors ``v_i0, v_i1, v_i2`` that transform like
momenta: two invariant-weighted sums over partners ``j`` (the jet's constituents and, with symmetry
breaking, the reference vectors) and the constituent's own direction:

    a_ijk = <q_ik, k_jk> / sqrt(d) + c_k * log(m2_ij + EPS_PAIR)      (k = 0, 1)
    w_ijk = softmax_j a_ijk
    v_i0  = J + sigmoid(s_i) * sum_j w_ij0 u_j,   v_i1 = u_i,   v_i2 = sum_j w_ij1 u_j

with ``u_j = p_j / (E_j + EPS_ENERGY)`` the partner's direction at unit energy in the jet frame
(``E_j = <p_j, J>``), so soft and hard constituents count alike and uniform weights do not collapse
the spatial parts onto the jet axis. The first frame axis is thus the constituent's own direction
seen from ``v_i0``, the second a learned, softmax-weighted direction of its partners; taking the
own direction for ``v_i1`` saves a third of the O(N^2) work of three learned weightings.

``q_ik, k_jk`` come from a small per-particle MLP of invariants (log energy in the jet frame,
jet-level invariants, and optional symmetry-breaking scalars), so the pair cost is a
``d``-dimensional dot product per pair and vector instead of the reference's MLP on all N^2 pairs.
``m2_ij = <p_i + p_j, p_i + p_j>`` is the pair mass in jet-mass units, regularised by the jet-scale
term ``EPS_PAIR`` so that float64 rounding noise on tiny (soft, collinear) pair masses cannot reach
the weights. Constituent masses are deliberately not used: after a rapidity-6 transformation the
float64 rounding of the input alone changes a pion's mass^2 by ~1e-4 relative. ``J`` is the jet momentum over its mass (``(1, 0, 0, 0)`` in the canonical rest frame):
with softmax weights and partner energies at most 1, ``v_i0`` has velocity at most 1/2 in the jet
frame, so every local frame is within a boost of gamma <= 1.16 of the jet rest frame.

All inputs and the arithmetic are float64 whatever the module's parameter dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .autograd import is_tracing, softmax_weighted_sum, use_autograd_function
from .lorentz import minkowski

__all__ = ["EPS_ENERGY", "EPS_PAIR", "NEG_LARGE", "FramesNet"]

#: Regulariser (jet-mass units) inside log of constituent energies in the jet frame.
EPS_ENERGY = 1e-3
#: Jet-scale regulariser (jet-mass^2 units) inside log of pair masses squared.
EPS_PAIR = 1e-2
#: Logit given to masked partners (finite, so fully padded rows stay finite).
NEG_LARGE = -1e30
#: Negative slope of the frames-net activation (cheap and continuous, in float64).
LEAKY_SLOPE = 0.1
#: Number of vectors predicted per constituent.
NUM_VECTORS = 3
#: Number of learned softmax weightings over partners (for v0 and v2).
NUM_WEIGHTINGS = 2
#: Initial pair-mass coefficients c_k: v0 prefers nearby partners, v2 distant ones.
INIT_PAIR_COEF = (-0.5, 0.5)
#: The frames net runs over chunks of jets of about this many pair-weight elements (8 MiB of
#: float64 per temporary), bounding memory for large batches. Smaller chunks mean more small ops:
#: 1 MiB chunks measured slower at batch 64 on 2 threads (benchmarks/bench_models.py), and 4 MiB
#: split a training batch of 128 jets at N = 48 in two (a 2-3 % slower LLoCa step,
#: benchmarks/bench_train.py).
CHUNK_ELEMENTS = 1 << 20
#: Trim the padding only when that leaves at most this fraction of the full-width pair work.
MIN_TRIM_GAIN = 0.8


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.to(torch.float64)


class FramesNet(nn.Module):
    """Predict ``(B, N, 3, 4)`` equivariant vectors from constituents in float64.

    Args:
        hidden: width of the per-particle MLP.
        key_dim: dimension ``d`` of the per-vector query/key used for pair weights.
        num_scalars: number of extra (possibly non-invariant) per-particle scalars fed in.
        num_references: number of reference vectors (symmetry breaking) used as extra partners.
        num_global: number of jet-level invariant scalars (e.g. log jet mass).
    """

    def __init__(
        self,
        hidden: int = 32,
        key_dim: int = 8,
        num_scalars: int = 0,
        num_references: int = 0,
        num_global: int = 1,
    ):
        super().__init__()
        self.key_dim = key_dim
        self.num_scalars = num_scalars
        self.num_references = num_references
        self.num_global = num_global
        n_in = 1 + num_references + num_scalars + num_global
        f64 = torch.float64  # parameters live in float64 (cast again in forward if converted)
        self.fc1 = nn.Linear(n_in, hidden, dtype=f64)
        self.fc2 = nn.Linear(hidden, 2 * NUM_WEIGHTINGS * key_dim + 1, dtype=f64)
        self.pair_coef = nn.Parameter(torch.tensor(INIT_PAIR_COEF, dtype=f64))
        if num_references:
            self.ref_keys = nn.Parameter(
                torch.randn(num_references, NUM_WEIGHTINGS, key_dim, dtype=f64) * 0.5
            )
            self.ref_bias = nn.Parameter(torch.zeros(num_references, NUM_WEIGHTINGS, dtype=f64))

    def particle_features(
        self,
        p: torch.Tensor,
        jet: torch.Tensor,
        refs: torch.Tensor | None,
        scalars: torch.Tensor | None,
        global_scalars: torch.Tensor,
    ) -> torch.Tensor:
        energy = minkowski(p, jet[:, None])
        cols = [torch.log(energy.clamp_min(0) + EPS_ENERGY)[..., None]]
        if self.num_references:
            assert refs is not None
            pr = minkowski(p[:, :, None], refs[:, None])  # (B, N, R)
            cols.append(torch.log(pr.clamp_min(0) + EPS_ENERGY))
        if self.num_scalars:
            assert scalars is not None
            cols.append(_f64(scalars))
        if self.num_global:
            assert global_scalars is not None
            cols.append(_f64(global_scalars)[:, None].expand(-1, p.shape[1], -1))
        return torch.cat(cols, -1)

    def forward(
        self,
        p: torch.Tensor,
        mask: torch.Tensor,
        jet: torch.Tensor,
        refs: torch.Tensor | None = None,
        scalars: torch.Tensor | None = None,
        global_scalars: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Vectors ``(B, N, 3, 4)`` float64.

        Args:
            p: ``(B, N, 4)`` momenta in jet-mass units (any frame; padded entries zero).
            mask: ``(B, N)`` bool.
            jet: ``(B, 4)`` jet momentum over jet mass in the same frame.
            refs: ``(B, R, 4)`` reference vectors in the same frame (if ``num_references``).
            scalars: ``(B, N, S)`` extra per-particle scalars (if ``num_scalars``).
            global_scalars: ``(B, G)`` jet-level invariants (if ``num_global``).
        """
        p, jet = _f64(p), _f64(jet)
        B, N, _ = p.shape
        if global_scalars is None:
            global_scalars = p.new_zeros(B, self.num_global)
        if is_tracing():
            # traced (torch.export/compile/ONNX): no shape-dependent Python loop, one chunk
            return self._vectors(p, mask, jet, refs, scalars, global_scalars)
        return self._trimmed(p, mask, jet, refs, scalars, global_scalars)

    def _trimmed(
        self,
        p: torch.Tensor,
        mask: torch.Tensor,
        jet: torch.Tensor,
        refs: torch.Tensor | None,
        scalars: torch.Tensor | None,
        global_scalars: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`_vectors` on chunks of jets of similar width, padding trimmed off.

        A jet's *width* is one past its last real constituent. Columns beyond it are padding:
        as partners they get zero weight, and as rows they all see the same inputs when their
        momenta and scalars are zero (checked; else nothing is trimmed), so all have the output
        of the first of them. Jets are sorted by
        width, each chunk is computed up to its widest jet plus one padded column, that column's
        output is repeated over the rest, and the jets are put back in order. Every real row
        gets the same arithmetic as on the full width except for the length of its partner
        sums (zeros left out), so results agree to float64 rounding. The O(N^2) work then
        follows the real multiplicities instead of the padded size. Where trimming would keep more
        than :data:`MIN_TRIM_GAIN` of the full-width work (jets filling the padded size), the
        jets run at the full width in their order, in consecutive chunks.
        """
        B, N, _ = p.shape
        R = self.num_references
        cols = torch.arange(1, N + 1, device=mask.device)
        width = (mask * cols).amax(1).clamp_min(1)  # (B,) one past the last real constituent
        # trim only where it pays: the trimmed chunks' pair work against the full width (jets
        # that fill the padded size are not worth sorting and gathering)
        wp = (width + 1).clamp_max(N).to(torch.float64)
        worth = float((wp * (wp + R)).sum()) <= MIN_TRIM_GAIN * B * N * (N + R)
        # rows beyond a jet's width stand for each other only if their inputs agree (zero
        # momenta and scalars, as the frame choices give); otherwise keep the full width
        tail = cols[None, :] > width[:, None]
        trim = worth and not bool((p[tail] != 0).any()) and (
            scalars is None or not bool((scalars[tail] != 0).any())
        )
        # without trimming the jets keep their order: consecutive slices, nothing gathered
        order = torch.argsort(width, descending=True, stable=True) if trim else None
        widths = width[order].tolist() if order is not None else []
        parts = []
        i = 0
        while i < B:
            # one padded column (if any) stands for the rest
            w = min(int(widths[i]) + 1, N) if trim else N
            size = max(1, CHUNK_ELEMENTS // (NUM_WEIGHTINGS * w * (w + R)))
            rows: torch.Tensor | slice = (
                order[i : i + size] if order is not None else slice(i, i + size)
            )
            v = self._vectors(
                p[rows, :w],
                mask[rows, :w],
                jet[rows],
                None if refs is None else refs[rows],
                None if scalars is None else scalars[rows, :w],
                global_scalars[rows],
            )
            if w < N:
                v = torch.cat([v, v[:, -1:].expand(-1, N - w, -1, -1)], dim=1)
            parts.append(v)
            i += size
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        if order is not None and B > 1:
            out = out.index_select(0, torch.argsort(order))
        return out

    def _vectors(
        self,
        p: torch.Tensor,
        mask: torch.Tensor,
        jet: torch.Tensor,
        refs: torch.Tensor | None,
        scalars: torch.Tensor | None,
        global_scalars: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`forward` for one chunk of jets (float64 ``p``, ``jet``)."""
        B, N, _ = p.shape
        x = self.particle_features(p, jet, refs, scalars, global_scalars)
        w1, b1 = _f64(self.fc1.weight), _f64(self.fc1.bias)
        w2, b2 = _f64(self.fc2.weight), _f64(self.fc2.bias)
        # in place: the fresh linear output is not needed by autograd (saves a large temporary)
        h = nn.functional.leaky_relu_(nn.functional.linear(x, w1, b1), LEAKY_SLOPE)
        out = nn.functional.linear(h, w2, b2)
        K, d = NUM_WEIGHTINGS, self.key_dim
        q = out[..., : K * d].unflatten(-1, (K, d)) / math.sqrt(d)
        k = out[..., K * d : 2 * K * d].unflatten(-1, (K, d))
        gate = torch.sigmoid(out[..., -1])
        coef = _f64(self.pair_coef)

        # partners: the constituents, then (symmetry breaking) the reference vectors
        m2 = minkowski(p, p).clamp_min(0)
        partners, pm2, pmask, keys = p, m2, mask, k
        # extra key component: learned bias of reference partners, NEG_LARGE for padded partners
        kbias = m2.new_zeros(B, N, K)
        if self.num_references:
            assert refs is not None
            R = refs.shape[1]
            partners = torch.cat([p, _f64(refs)], 1)
            pm2 = torch.cat([m2, m2.new_zeros(B, R)], 1)
            pmask = torch.cat([mask, mask.new_ones(B, R)], 1)
            keys = torch.cat([k, _f64(self.ref_keys).expand(B, R, K, d)], 1)
            kbias = torch.cat([kbias, _f64(self.ref_bias).expand(B, R, K)], 1)
        kbias = kbias.masked_fill(~pmask[..., None], NEG_LARGE)
        # logits_kij = q_ik . k_jk + bias_jk as one batched product: (B, K, N, d+1) @ (B, K, d+1, P)
        qa = torch.cat([q, q.new_ones(B, N, K, 1)], -1).permute(0, 2, 1, 3)
        ka = torch.cat([keys, kbias[..., None]], -1).permute(0, 2, 3, 1)
        # pair masses m2_ij + EPS_PAIR = (2 g p_i, m2_i + EPS, 1) . (p_j, 1, m2_j), one product too
        gp = p * p.new_tensor([2.0, -2.0, -2.0, -2.0])
        a = torch.cat([gp, (m2 + EPS_PAIR)[..., None], torch.ones_like(m2)[..., None]], -1)
        b = torch.cat([partners, torch.ones_like(pm2)[..., None], pm2[..., None]], -1).mT
        # unit jet-frame energy directions: every partner counts by its direction, not its energy
        energy = minkowski(partners, jet[:, None]).clamp_min(0)
        units = partners / (energy + EPS_ENERGY)[..., None]
        v = self._weighted(qa, ka, a, b, coef, units)  # (B, K, N, 4)
        v0 = jet[:, None] + gate[..., None] * v[:, 0]
        own = units[:, :N]  # the constituent's own unit-energy direction
        return torch.stack([v0, own, v[:, 1]], dim=2)

    @staticmethod
    def _weighted(qa, ka, a, b, coef, units) -> torch.Tensor:
        """Softmax-weighted partner directions for a chunk of jets: ``(b, K, N, 4)``."""
        log_pair = torch.matmul(a, b).clamp_min_(EPS_PAIR).log_()  # (b, N, P)
        logits = torch.matmul(qa, ka)  # (b, K, N, P)
        if use_autograd_function(logits, units, coef):  # training: hand-written backward
            return softmax_weighted_sum(logits, units, coef, log_pair)
        logits.addcmul_(coef[None, :, None, None], log_pair[:, None])
        # softmax over partners; same arithmetic with and without autograd (bitwise equal), in
        # place (one pass less over the largest tensor)
        if logits.requires_grad:
            w = (logits - logits.amax(-1, keepdim=True)).exp()
            w = w / w.sum(-1, keepdim=True)
        else:
            w = logits.sub_(logits.amax(-1, keepdim=True)).exp_()
            w.div_(w.sum(-1, keepdim=True))
        if is_tracing():  # exported graphs: no shape-dependent reshape
            return torch.matmul(w, units[:, None])
        b, K, N, P = w.shape  # (b, K*N, P) @ (b, P, 4): one product per jet (same values)
        return torch.bmm(w.reshape(b, K * N, P), units).view(b, K, N, 4)
