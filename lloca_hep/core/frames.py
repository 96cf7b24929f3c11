"""From equivariant vectors to local frames: polar decomposition ``L = R B`` in float64.

Given three four-vectors ``v0, v1, v2`` per particle that transform like momenta, the frame is

1. ``B``: the pure boost taking ``v0`` to rest (:func:`lloca_hep.core.lorentz.rest_boost`);
2. ``w1, w2``: spatial parts of ``B v1`` and ``B v2``;
3. Gram-Schmidt in 3D: ``e1 = w1/|w1|``, ``e2 = normalise(w2 - (w2.e1) e1)``, ``e3 = e1 x e2``;
4. ``R = diag(1, [e1; e2; e3])`` (rows) and ``L = R B``.

Then ``L(Λ v) = L(v) Λ^{-1}`` for every proper orthochronous ``Λ``, and ``L`` is a Lorentz matrix.

Degenerate input is handled by fixed, deterministic rules (no random numbers, so two identical
calls agree bitwise). Equivariance is only given up where the input itself has no well-defined
frame:

* ``v0`` not time-like (light-like, zero, e.g. a fully padded row or collinear massless particles):
  a small time-like vector ``(DEGENERATE_TIME_SHIFT * |v0_E| + ABSOLUTE_FLOOR, 0, 0, 0)`` is added;
* ``|w1|`` vanishing: ``w2`` is used for the first axis, then the x axis;
* ``w2`` parallel to ``e1``: ``w1`` is tried, then the Cartesian axis least aligned with ``e1``.

All outputs are finite for finite input.
"""

from __future__ import annotations

import torch

from .kernels import can_use_kernels, polar_frames_numba
from .lorentz import minkowski, rest_boost, rotation_from_axes

__all__ = [
    "ABSOLUTE_FLOOR",
    "DEGENERATE_SPATIAL_TOL",
    "DEGENERATE_TIME_SHIFT",
    "TIMELIKE_TOL",
    "beam_rotation_frames",
    "gram_schmidt_3d",
    "polar_frames",
    "regularise_timelike",
    "rotation_frames",
]

#: ``v0`` counts as time-like when ``<v0, v0> > TIMELIKE_TOL * v0_E^2`` (a boost below gamma ~ 1e5).
TIMELIKE_TOL = 1e-10
#: Relative time shift added to non-time-like ``v0`` (deterministic regulariser).
DEGENERATE_TIME_SHIFT = 1e-3
#: Absolute floor (in the units of the input, GeV or jet-mass units) keeping zero vectors finite.
ABSOLUTE_FLOOR = 1e-12
#: A spatial direction counts as undefined when its length is below this fraction of its scale.
DEGENERATE_SPATIAL_TOL = 1e-9


def regularise_timelike(v: torch.Tensor) -> torch.Tensor:
    """Make four-vectors ``(..., 4)`` strictly time-like and future-pointing, deterministically.

    Vectors already satisfying ``<v, v> > TIMELIKE_TOL v0^2`` and ``v0 > 0`` pass through
    unchanged (bitwise); the others get a positive time component added.
    """
    e = v[..., 0]
    m2 = minkowski(v, v)
    ok = (m2 > TIMELIKE_TOL * e * e) & (e > 0)
    if not torch.compiler.is_compiling() and bool(ok.all()):
        return v
    p = v[..., 1:].norm(dim=-1)
    # smallest energy that makes v time-like, plus a relative margin
    new_e = torch.maximum(e, p) * (1.0 + DEGENERATE_TIME_SHIFT) + ABSOLUTE_FLOOR
    fixed = torch.cat([new_e[..., None], v[..., 1:]], dim=-1)
    return torch.where(ok[..., None], v, fixed)


def _dot3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot product over a last axis of length 3, keepdim (explicit: faster than ``sum`` here)."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2])[..., None]


def _normalise(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = w.norm(dim=-1, keepdim=True)
    return w / n.clamp_min(ABSOLUTE_FLOOR), n


def _least_aligned_axis(e1: torch.Tensor) -> torch.Tensor:
    """The Cartesian unit vector with the smallest ``|e1 . axis|`` (ties: lowest index)."""
    idx = e1.abs().argmin(dim=-1)
    return torch.nn.functional.one_hot(idx, 3).to(e1.dtype)


def gram_schmidt_3d(
    w1: torch.Tensor, w2: torch.Tensor, scale1: torch.Tensor, scale2: torch.Tensor
) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` with rows ``e1, e2, e3`` from spatial vectors ``(..., 3)``.

    ``scale1, scale2 (...)`` give the natural size of ``w1, w2`` (e.g. the energies of the boosted
    vectors); a vector shorter than ``DEGENERATE_SPATIAL_TOL`` times its scale counts as undefined and
    the deterministic fallbacks of the module docstring apply.
    """
    tiny = ABSOLUTE_FLOOR
    u1, n1 = _normalise(w1)
    u2, n2 = _normalise(w2)
    ok1 = n1[..., 0] > DEGENERATE_SPATIAL_TOL * scale1 + tiny
    ok2 = n2[..., 0] > DEGENERATE_SPATIAL_TOL * scale2 + tiny
    # fast path (the common case): both directions defined and not parallel
    if not torch.compiler.is_compiling() and bool(ok1.all()):
        r = u2 - _dot3(u2, u1) * u1
        rn = r.norm(dim=-1, keepdim=True)
        if bool((ok2 & (rn[..., 0] > DEGENERATE_SPATIAL_TOL)).all()):
            e2 = r / rn
            return torch.stack([u1, e2, torch.linalg.cross(u1, e2, dim=-1)], dim=-2)
    x_axis = torch.zeros_like(u1)
    x_axis[..., 0] = 1.0
    e1 = torch.where(ok1[..., None], u1, torch.where(ok2[..., None], u2, x_axis))

    def _orth(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = u - _dot3(u, e1) * e1
        rn, n = _normalise(r)
        return rn, n[..., 0]

    c2, m2 = _orth(u2)
    c1, m1 = _orth(u1)
    ca, _ = _orth(_least_aligned_axis(e1))
    use2 = ok2 & (m2 > DEGENERATE_SPATIAL_TOL)
    use1 = ok1 & (m1 > DEGENERATE_SPATIAL_TOL)
    e2 = torch.where(use2[..., None], c2, torch.where(use1[..., None], c1, ca))
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-2)


def polar_frames(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Local frames ``L = R B`` ``(..., 4, 4)`` from vectors ``v0, v1, v2 (..., 4)``, float64.

    Inputs are cast to float64. ``v0`` is regularised with :func:`regularise_timelike`; ``v1`` and
    ``v2`` may be any four-vectors (their boosted spatial directions fix the rotation).
    Without autograd on the CPU the same arithmetic runs as one numba pass
    (:func:`lloca_hep.core.kernels.polar_frames_numba`).
    """
    v0, v1, v2 = (v.to(torch.float64) for v in (v0, v1, v2))
    if can_use_kernels(v0, v1, v2):
        return polar_frames_numba(
            v0,
            v1,
            v2,
            timelike_tol=TIMELIKE_TOL,
            time_shift=DEGENERATE_TIME_SHIFT,
            floor=ABSOLUTE_FLOOR,
            spatial_tol=DEGENERATE_SPATIAL_TOL,
        )
    boost = rest_boost(regularise_timelike(v0))
    b12 = boost @ torch.stack([v1, v2], dim=-1)  # (..., 4, 2): B v1, B v2 as columns
    scale = b12.abs().amax(-2)
    w12 = b12[..., 1:, :].transpose(-1, -2).contiguous()  # (..., 2, 3)
    rot = gram_schmidt_3d(w12[..., 0, :], w12[..., 1, :], scale[..., 0], scale[..., 1])
    # L = diag(1, rot) @ B without forming diag(1, rot)
    return torch.cat([boost[..., :1, :], rot @ boost[..., 1:, :]], dim=-2)


def rotation_frames(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Rotation-only frames ``(..., 4, 4)`` (equivariant under 3D rotations) from ``v1, v2``."""
    v1, v2 = v1.to(torch.float64), v2.to(torch.float64)
    s1 = v1.abs().amax(-1)
    s2 = v2.abs().amax(-1)
    return rotation_from_axes(gram_schmidt_3d(v1[..., 1:], v2[..., 1:], s1, s2))


def beam_rotation_frames(v1: torch.Tensor) -> torch.Tensor:
    """Frames ``(..., 4, 4)`` rotating about the beam (z) axis only, equivariant under those rotations.

    The transverse part of ``v1`` is rotated onto +x; a vanishing transverse part gives identity.
    """
    v1 = v1.to(torch.float64)
    t = v1[..., 1:3]
    n = t.norm(dim=-1)
    ok = n > DEGENERATE_SPATIAL_TOL * v1.abs().amax(-1) + ABSOLUTE_FLOOR
    c = torch.where(ok, t[..., 0] / n.clamp_min(ABSOLUTE_FLOOR), torch.ones_like(n))
    s = torch.where(ok, t[..., 1] / n.clamp_min(ABSOLUTE_FLOOR), torch.zeros_like(n))
    z, o = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack(
        [torch.stack([c, s, z], -1), torch.stack([-s, c, z], -1), torch.stack([z, z, o], -1)], -2
    )
    return rotation_from_axes(rot)
