"""Lorentz toolkit: metric, Minkowski products, boosts, rotations, random transformations.

Conventions: four-vectors are ordered (E, px, py, pz), energies and momenta in GeV, metric
g = diag(+1, -1, -1, -1), ``<a, b> = a^T g b``. A Lorentz matrix ``L`` (shape ``(..., 4, 4)``)
acts on column vectors, ``p' = L p``; for a batch of row vectors ``p`` of shape ``(..., 4)`` that is
``p @ L.T`` (see :func:`apply`). Proper orthochronous transformations satisfy ``L^T g L = g`` and are
inverted without a matrix inverse as ``L^{-1} = g L^T g`` (:func:`inverse`).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "METRIC_DIAG",
    "apply",
    "apply_per_jet",
    "beam_rotation",
    "boost_along_z",
    "inverse",
    "lorentz_violation",
    "metric",
    "minkowski",
    "random_lorentz",
    "rest_boost",
    "rotation_from_axes",
]

#: Diagonal of the Minkowski metric g, mostly-minus signature.
METRIC_DIAG = (1.0, -1.0, -1.0, -1.0)


def metric(
    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The metric g = diag(1, -1, -1, -1) as a ``(4, 4)`` tensor."""
    return torch.diag(torch.tensor(METRIC_DIAG, dtype=dtype, device=device))


_GDIAG_CACHE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _gdiag(x: torch.Tensor) -> torch.Tensor:
    """The metric diagonal ``(4,)`` in the dtype and on the device of ``x``, cached.

    Never cached while tracing, nor under ``torch.inference_mode`` (an inference tensor in the
    cache would break a later training step: "Inference tensors cannot be saved for backward").
    """
    if torch.compiler.is_compiling() or torch.is_inference_mode_enabled():
        return torch.tensor(METRIC_DIAG, dtype=x.dtype, device=x.device)
    key = (x.dtype, x.device)
    g = _GDIAG_CACHE.get(key)
    if g is None:
        g = _GDIAG_CACHE[key] = torch.tensor(METRIC_DIAG, dtype=x.dtype, device=x.device)
    return g


def minkowski(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minkowski product ``<a, b> = a0 b0 - a.b`` over the last axis (length 4), broadcasting."""
    return ((a * _gdiag(a)) * b).sum(-1)


def apply(L: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply Lorentz matrices ``L (..., 4, 4)`` to four-vectors ``p (..., 4)``: ``(L p)`` per item."""
    return torch.einsum("...ij,...j->...i", L, p)


def apply_per_jet(L: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply one matrix per jet, ``L (B, 4, 4)``, to all its four-vectors ``p (B, N, 4)``.

    Same result as ``apply(L[:, None], p)`` as a single batched product ``p @ L^T`` (fewer ops).
    """
    return torch.matmul(p, L.transpose(-1, -2))


def inverse(L: torch.Tensor) -> torch.Tensor:
    """Inverse of Lorentz matrices ``(..., 4, 4)`` via ``g L^T g`` (no matrix inversion)."""
    gd = _gdiag(L)
    return L.transpose(-1, -2) * gd[:, None] * gd[None, :]


def lorentz_violation(L: torch.Tensor) -> torch.Tensor:
    """Largest absolute entry of ``L^T g L - g`` per matrix, shape ``L.shape[:-2]``."""
    g = metric(L.dtype, L.device)
    return (L.transpose(-1, -2) @ g @ L - g).abs().amax(dim=(-1, -2))


def rest_boost(v: torch.Tensor) -> torch.Tensor:
    """Pure boosts taking time-like, future-pointing four-vectors ``v (..., 4)`` to rest.

    Returns ``B (..., 4, 4)`` with ``B v = (m, 0, 0, 0)``, ``m = sqrt(<v, v>)``. Written with the
    four-velocity ``u = v / m`` as ``B = [[u0, -u^T], [-u, I + u u^T / (1 + u0)]]``, which has no
    division by the velocity and is exact for ``v`` at rest. ``v`` must be time-like with ``v0 > 0``;
    callers regularise degenerate vectors first (see :mod:`lloca_hep.core.frames`).
    """
    m = torch.sqrt(minkowski(v, v))
    u = v / m[..., None]
    u0 = u[..., :1]
    us = u[..., 1:]
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    spatial = eye + us[..., :, None] * us[..., None, :] / (1.0 + u0[..., None])
    top = torch.cat([u0, -us], dim=-1)
    bottom = torch.cat([-us[..., :, None], spatial], dim=-1)
    return torch.cat([top[..., None, :], bottom], dim=-2)


def boost_along_z(rapidity: torch.Tensor) -> torch.Tensor:
    """Pure boosts along +z with the given rapidities ``(...)``; returns ``(..., 4, 4)``."""
    ch, sh = torch.cosh(rapidity), torch.sinh(rapidity)
    z, o = torch.zeros_like(rapidity), torch.ones_like(rapidity)
    rows = [
        torch.stack([ch, z, z, -sh], -1),
        torch.stack([z, o, z, z], -1),
        torch.stack([z, z, o, z], -1),
        torch.stack([-sh, z, z, ch], -1),
    ]
    return torch.stack(rows, -2)


def rotation_from_axes(rot3: torch.Tensor) -> torch.Tensor:
    """Embed 3x3 rotation matrices ``(..., 3, 3)`` into Lorentz matrices ``(..., 4, 4)``."""
    shape = rot3.shape[:-2]
    out = torch.zeros(*shape, 4, 4, dtype=rot3.dtype, device=rot3.device)
    out[..., 0, 0] = 1.0
    out[..., 1:, 1:] = rot3
    return out


def beam_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotations by ``angle (...)`` (radians) about the beam (z) axis, shape ``(..., 4, 4)``."""
    c, s = torch.cos(angle), torch.sin(angle)
    z, o = torch.zeros_like(angle), torch.ones_like(angle)
    rot3 = torch.stack(
        [torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2
    )
    return rotation_from_axes(rot3)


def _random_rotation3(
    n: int, max_angle: float, gen: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Rotations about uniformly random axes by angles uniform in ``[0, max_angle]`` (Rodrigues)."""
    axis = torch.randn(n, 3, generator=gen, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, generator=gen, dtype=dtype) * max_angle
    kx = torch.zeros(n, 3, 3, dtype=dtype)
    kx[:, 0, 1], kx[:, 0, 2] = -axis[:, 2], axis[:, 1]
    kx[:, 1, 0], kx[:, 1, 2] = axis[:, 2], -axis[:, 0]
    kx[:, 2, 0], kx[:, 2, 1] = -axis[:, 1], axis[:, 0]
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, dtype=dtype) + s * kx + (1 - c) * kx @ kx


def random_lorentz(
    n: int,
    *,
    max_rapidity: float = 1.0,
    max_angle: float = math.pi,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    exact_rapidity: bool = False,
) -> torch.Tensor:
    """Random proper orthochronous Lorentz transformations, shape ``(n, 4, 4)``.

    Each is ``R2 B R1``: two rotations about random axes by angles uniform in ``[0, max_angle]``
    around a boost along a random direction with rapidity uniform in ``[0, max_rapidity]``
    (exactly ``max_rapidity`` if ``exact_rapidity``). Reproducible through ``seed`` or an explicit
    ``generator``; with neither, torch's global (CPU) generator is used, so ``torch.manual_seed``
    makes random-frame training reproducible.
    """
    if generator is None:
        if seed is None:
            generator = torch.default_generator  # follows torch.manual_seed
        else:
            generator = torch.Generator().manual_seed(int(seed))
    r1 = rotation_from_axes(_random_rotation3(n, max_angle, generator, dtype))
    r2 = rotation_from_axes(_random_rotation3(n, max_angle, generator, dtype))
    if exact_rapidity:
        y = torch.full((n,), float(max_rapidity), dtype=dtype)
    else:
        y = torch.rand(n, generator=generator, dtype=dtype) * max_rapidity
    # a boost along a random direction = rotation^-1 . boost_z . rotation
    d = rotation_from_axes(_random_rotation3(n, math.pi, generator, dtype))
    boost = inverse(d) @ boost_along_z(y) @ d
    return r2 @ boost @ r1
