"""Test helpers for users and for lloca-hep's own tests: toy jets and an equivariance check.

Nothing in lloca-hep's runtime imports this module.

* :func:`toy_jets`, :func:`degenerate_jets`: synthetic, realistic-looking jets (no physics
  generator needed). Jets of transverse momentum 550-650 GeV, |eta| < 2, with 1-3 prongs inside
  R = 0.8, a given range of constituent multiplicities, a mix of massless (photons) and massive
  (pion/kaon/proton mass) constituents, and a few soft constituents of 0.5 GeV transverse
  momentum. Momenta are float64 ``(E, px, py, pz)`` in GeV, padded with zeros, with a bool mask.
* :func:`assert_lorentz_equivariant`: apply random Lorentz transformations (boosts up to a
  rapidity, rotations; :func:`lloca_hep.core.lorentz.random_lorentz`) in float64 to the
  four-vector inputs of a function and assert that its output is invariant (or transforms as a
  four-vector) within a tolerance, in the spirit of e3nn's ``assert_equivariant``::

      >>> from lloca_hep.core.testing import assert_lorentz_equivariant, toy_jets
      >>> p4, mask = toy_jets(16)
      >>> assert_lorentz_equivariant(lambda p, m: model(p, m), p4, mask, rtol=1e-4, atol=1e-5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .lorentz import apply, random_lorentz

__all__ = ["SOFT_PT_GEV", "assert_lorentz_equivariant", "degenerate_jets", "toy_jets"]

#: Transverse momentum of the soft constituents (GeV).
SOFT_PT_GEV = 0.5
_MASSES_GEV = (0.0, 0.13957, 0.49368, 0.93827)


def toy_jets(
    num_jets: int,
    max_constituents: int = 64,
    min_constituents: int = 20,
    num_soft: int = 3,
    seed: int = 0,
    pt_range: tuple[float, float] = (550.0, 650.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``p4 (num_jets, max_constituents, 4)`` float64 GeV and ``mask (num_jets, max_constituents)``.

    Multiplicities are uniform in ``[min_constituents, max_constituents]``; the last ``num_soft``
    constituents of each jet have pT = :data:`SOFT_PT_GEV`. Constituents are sorted by pT.
    """
    if not 1 <= min_constituents <= max_constituents:
        raise ValueError("need 1 <= min_constituents <= max_constituents")
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    B, N = num_jets, max_constituents
    n = torch.randint(min_constituents, N + 1, (B,), generator=gen)
    mask = torch.arange(N)[None] < n[:, None]
    jet_pt = pt_range[0] + (pt_range[1] - pt_range[0]) * torch.rand(B, generator=gen, dtype=dt)
    jet_eta = (torch.rand(B, generator=gen, dtype=dt) * 2 - 1) * 2.0
    jet_phi = (torch.rand(B, generator=gen, dtype=dt) * 2 - 1) * torch.pi
    # prongs: 1 to 3 axes around the jet axis
    nprong = torch.randint(1, 4, (B,), generator=gen)
    prong_off = torch.randn(B, 3, 2, generator=gen, dtype=dt) * 0.25
    prong_off[:, 0] = 0.0
    prong_id = torch.randint(0, 3, (B, N), generator=gen) % nprong[:, None]
    off = torch.gather(prong_off, 1, prong_id[..., None].expand(B, N, 2))
    d = off + torch.randn(B, N, 2, generator=gen, dtype=dt) * 0.06
    eta = jet_eta[:, None] + d[..., 0]
    phi = jet_phi[:, None] + d[..., 1]
    # log-normal momentum fractions (drawn from ``gen`` only: reproducible)
    frac = torch.exp(1.2 * torch.randn(B, N, generator=gen, dtype=dt))
    frac = frac * mask
    pt = frac / frac.sum(1, keepdim=True) * jet_pt[:, None]
    # soft constituents at the end of each jet
    idx = torch.arange(N)[None]
    soft = mask & (idx >= (n[:, None] - num_soft))
    pt = torch.where(soft, torch.full_like(pt, SOFT_PT_GEV), pt)
    mass = torch.tensor(_MASSES_GEV, dtype=dt)[
        torch.randint(0, len(_MASSES_GEV), (B, N), generator=gen)
    ]
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    # rescale the hard constituents so that the jet's transverse momentum is jet_pt
    hard = (mask & ~soft).to(dt)
    for _ in range(2):
        jpt = torch.hypot((px * mask).sum(1), (py * mask).sum(1))
        f = 1.0 + (jet_pt / jpt - 1.0)[:, None] * hard
        px, py, pz, pt = px * f, py * f, pz * f, pt * f
    e = torch.sqrt(px**2 + py**2 + pz**2 + mass**2)
    p4 = torch.stack([e, px, py, pz], -1) * mask[..., None]
    order = torch.argsort(torch.where(mask, pt, -1.0), dim=1, descending=True, stable=True)
    p4 = torch.gather(p4, 1, order[..., None].expand(B, N, 4))
    return p4, mask


def degenerate_jets() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight degenerate jets ``(8, 6, 4)`` float64 GeV + mask: 1, 2 or 3 constituents (massless or
    massive), exactly collinear massless ones, duplicates, a fully padded row (index 6)."""
    N = 6
    p = torch.zeros(8, N, 4, dtype=torch.float64)
    mask = torch.zeros(8, N, dtype=torch.bool)
    d = torch.tensor([0.3, 0.4, 0.866], dtype=torch.float64)
    d = d / d.norm()

    def massless(e: float) -> torch.Tensor:
        return torch.cat([torch.tensor([e], dtype=torch.float64), e * d])

    p[0, 0], mask[0, :1] = massless(100.0), True  # one massless constituent
    p[1, 0], mask[1, :1] = (
        torch.tensor([10.0, 1.0, 2.0, 3.0], dtype=torch.float64),
        True,
    )  # one massive
    p[2, :2], mask[2, :2] = (
        torch.stack([massless(50.0), massless(20.0)]),
        True,
    )  # collinear massless
    p[3, :2] = torch.tensor([[50.0, 40.0, 0, 0], [30.0, 0, 30.0, 0]], dtype=torch.float64)
    mask[3, :2] = True  # two constituents
    p[4, :3] = torch.tensor(
        [[50.0, 40.0, 0, 0], [30.0, 0, 30.0, 0], [20.0, 0, 0, -20.0]], dtype=torch.float64
    )
    mask[4, :3] = True  # three constituents
    p[5, :4] = torch.tensor([[50.0, 40.0, 0, 10], [50.0, 40.0, 0, 10]] * 2, dtype=torch.float64)
    mask[5, :4] = True  # duplicates
    # row 6: fully padded; row 7: all collinear massless, six of them
    p[7] = torch.stack([massless(5.0 * (i + 1)) for i in range(N)])
    mask[7] = True
    return p, mask


#: What :func:`assert_lorentz_equivariant` expects of the output.
OUTPUT_KINDS = ("invariant", "vector")


def _is_four_vector(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim >= 1 \
        and x.shape[-1] == 4


def _as_tensors(out: Any) -> list[torch.Tensor]:
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    if not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError("fn must return a tensor or a tuple/list of tensors")
    return [t.detach().to(torch.float64) for t in items]


def assert_lorentz_equivariant(
    fn: Callable[..., Any],
    *inputs: Any,
    rapidity: float = 6.0,
    n_transforms: int = 4,
    output: str = "invariant",
    four_vectors: Sequence[int] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    seed: int = 0,
) -> None:
    """Assert that ``fn(*inputs)`` is Lorentz invariant (or equivariant) within tolerance.

    ``inputs``: the four-vector inputs (float tensors ``(..., 4)`` ordered (E, px, py, pz)) are
    cast to float64 and transformed; every other input (masks, options) is passed unchanged.
    ``four_vectors`` names the positions of the four-vector inputs (default: every floating
    tensor whose last axis has length 4).

    ``n_transforms`` random proper orthochronous transformations ``L`` are drawn with
    :func:`lloca_hep.core.lorentz.random_lorentz` (``seed``): rotations about random axes and a
    boost along a random direction with rapidity uniform in ``[0, rapidity]``; the last one
    boosts by exactly ``rapidity``. Each ``L`` is applied to all four-vectors at once
    (``p -> L p``). ``output="invariant"``: ``fn(L p) == fn(p)``; ``output="vector"``: the output
    four-vectors ``(..., 4)`` transform too, ``fn(L p) == L fn(p)``. ``fn`` may return a tensor or
    a tuple/list of tensors; outputs are compared in float64 with ``|a - b| <= atol + rtol |b|``
    (NaN must match NaN).

    Raises :class:`AssertionError` naming the transformation (its rapidity) and the largest
    deviation.
    """
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
    if n_transforms < 1:
        raise ValueError(f"n_transforms must be >= 1, got {n_transforms}")
    if rapidity < 0:
        raise ValueError(f"rapidity must be >= 0, got {rapidity}")
    positions = (list(four_vectors) if four_vectors is not None
                 else [i for i, x in enumerate(inputs) if _is_four_vector(x)])
    if not positions:
        raise ValueError("no four-vector input (a float tensor whose last axis has length 4)")
    for i in positions:
        if not _is_four_vector(inputs[i]):
            raise ValueError(f"input {i} is not a float tensor of shape (..., 4)")
    args = [x.detach().to(torch.float64) if i in positions else x for i, x in enumerate(inputs)]
    with torch.no_grad():
        reference = _as_tensors(fn(*args))
    if output == "vector" and not all(t.ndim >= 1 and t.shape[-1] == 4 for t in reference):
        raise ValueError('output="vector" needs outputs of shape (..., 4)')
    gen = torch.Generator().manual_seed(int(seed))
    transforms = [random_lorentz(n_transforms - 1, max_rapidity=rapidity, generator=gen),
                  random_lorentz(1, max_rapidity=rapidity, exact_rapidity=True, generator=gen)]
    for k, L in enumerate(torch.cat(transforms)):
        device_args = [apply(L.to(a.device), a) if i in positions else a
                       for i, a in enumerate(args)]
        with torch.no_grad():
            got = _as_tensors(fn(*device_args))
        if len(got) != len(reference):
            raise AssertionError(f"fn returned {len(got)} outputs after a transformation, "
                                 f"{len(reference)} before")
        boost = float(torch.acosh(L[0, 0].clamp(min=1.0)))
        for j, (g, r) in enumerate(zip(got, reference, strict=True)):
            want = apply(L.to(r.device), r) if output == "vector" else r
            if g.shape != want.shape:
                raise AssertionError(f"output {j} changed shape: {tuple(g.shape)} vs "
                                     f"{tuple(want.shape)}")
            close = torch.isclose(g, want, rtol=rtol, atol=atol, equal_nan=True)
            if not bool(close.all()):
                diff = (g - want).abs().nan_to_num(nan=float("inf"))
                raise AssertionError(
                    f"output {j} of fn is not Lorentz {output} under transformation {k} "
                    f"(rapidity {boost:.3g}): {int((~close).sum())} of {close.numel()} values "
                    f"differ, max |diff| {float(diff.max()):.3g} (rtol={rtol}, atol={atol})"
                )
