"""The invalid-momentum policy: one implementation for the readers and the coffea tagger.

A constituent is invalid when a component is NaN or infinite, its energy is negative, or it is
space-like beyond rounding (``|p| - E > SPACELIKE_REL_TOL * |p| + MOMENTUM_ABS_TOL``).
``on_invalid="raise"`` raises :class:`~lloca_hep.errors.InvalidMomentumError` naming where the
first one is; ``"drop"`` removes them with one counted
:class:`~lloca_hep.errors.InvalidConstituentsWarning`.

>>> cols, counts = apply_momentum_policy(cols, counts, "drop", where="file.root:jets")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from lloca_hep.errors import InvalidConstituentsWarning, InvalidFeatureError, InvalidMomentumError

from . import kernels

__all__ = ["MOMENTUM_ABS_TOL", "MOMENTUM_PROBLEMS", "ON_INVALID", "SPACELIKE_REL_TOL",
           "apply_feature_policy", "apply_momentum_policy", "momentum_flags"]

#: A constituent is space-like "beyond rounding" when |p| - E > this * |p| + ABS tolerance.
#: float32 storage rounds each component by ~6e-8 relative; pt/eta/phi/mass conversions and
#: reduced-precision NanoAOD floats lose more, so the tolerance is generous.
SPACELIKE_REL_TOL = 1e-4
#: Absolute tolerance (GeV) of the energy checks.
MOMENTUM_ABS_TOL = 1e-6
#: The accepted values of ``on_invalid``.
ON_INVALID = ("raise", "drop")
#: What each flag of :func:`momentum_flags` means, for error messages.
MOMENTUM_PROBLEMS = {
    kernels.FLAG_NONFINITE: "NaN or infinite momentum",
    kernels.FLAG_NEGATIVE_ENERGY: "negative energy",
    kernels.FLAG_SPACELIKE: "energy below |p| beyond rounding (E < |p|)",
}


def momentum_flags(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray
) -> tuple[np.ndarray, int]:
    """Flags of float64 ``(n,)`` components (GeV): ``(flags uint8 (n,), n_bad)``, each flag
    ``kernels.FLAG_OK`` or a key of :data:`MOMENTUM_PROBLEMS`."""
    flags = np.empty(px.shape[0], dtype=np.uint8)
    n_bad = int(kernels.check_momenta_kernel(px, py, pz, energy, SPACELIKE_REL_TOL,
                                             MOMENTUM_ABS_TOL, flags))
    return flags, n_bad


def _jet_of_chunk(j: int) -> str:
    return f"jet {j} of the chunk"


def apply_momentum_policy(
    cols: list[np.ndarray],
    counts: np.ndarray,
    on_invalid: str,
    *,
    where: str,
    describe_jet: Callable[[int], str] = _jet_of_chunk,
    remedy: str = "Pass on_invalid='drop' to drop them with a counted warning.",
    stacklevel: int = 4,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Check ``cols`` = float64 ``[px, py, pz, E, *extra]`` (flat, jets given by ``counts``
    (n_jets,)); only the first four (the momenta) are checked, columns after them (per-particle
    features) are carried along, so that dropping keeps them aligned.

    Returns ``(cols, counts)`` unchanged when every constituent is valid, else raises
    (``"raise"``; the message starts with ``where``, names the jet through ``describe_jet(j)``,
    the constituent, the problem and the totals, and ends with ``remedy``) or drops the invalid
    constituents (``"drop"``) with one :class:`InvalidConstituentsWarning`.
    """
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    px, py, pz, energy = cols[:4]
    flags, n_bad = momentum_flags(px, py, pz, energy)
    if n_bad == 0:
        return cols, counts
    jet_of = np.repeat(np.arange(counts.shape[0]), counts)
    bad = flags != kernels.FLAG_OK
    n_bad_jets = int(np.unique(jet_of[bad]).size)
    summary = ", ".join(f"{int(np.count_nonzero(flags == k))} with {problem}"
                        for k, problem in MOMENTUM_PROBLEMS.items() if np.any(flags == k))
    if on_invalid == "raise":
        first = int(np.flatnonzero(bad)[0])
        j = int(jet_of[first])
        k = first - int(counts[:j].sum())
        raise InvalidMomentumError(
            f"{where}: {describe_jet(j)}, constituent {k}: "
            f"{MOMENTUM_PROBLEMS[int(flags[first])]} (E={energy[first]!r}, px={px[first]!r}, "
            f"py={py[first]!r}, pz={pz[first]!r}). In total {n_bad} constituents in "
            f"{n_bad_jets} jets are affected ({summary}). {remedy}"
        )
    keep = ~bad
    new_counts = np.bincount(jet_of[keep], minlength=counts.shape[0]).astype(np.int64)
    warnings.warn(
        f"{where}: dropped {n_bad} constituents ({summary}) from {n_bad_jets} jets; "
        f"{int(np.count_nonzero((new_counts == 0) & (counts > 0)))} jets became empty",
        InvalidConstituentsWarning,
        stacklevel=stacklevel,
    )
    return [c[keep] for c in cols], new_counts


def apply_feature_policy(
    momenta: list[np.ndarray],
    features: dict[str, np.ndarray],
    counts: np.ndarray,
    on_invalid: str,
    *,
    where: str,
    sources: dict[str, str],
    describe_jet: Callable[[int], str] = _jet_of_chunk,
    remedy: str = "Pass on_invalid='drop' to drop them with a counted warning.",
    stacklevel: int = 4,
) -> tuple[list[np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The invalid-input policy for per-particle features: NaN/inf raise
    :class:`~lloca_hep.errors.InvalidFeatureError` (naming ``where``, the branch from
    ``sources[name]``, the jet and the constituent) or, with ``"drop"``, remove those
    constituents from ``momenta`` and ``features`` with one counted warning."""
    from lloca_hep.features import feature_problems

    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    bad, per_feature = feature_problems(features)
    if not per_feature:
        return momenta, features, counts
    jet_of = np.repeat(np.arange(counts.shape[0]), counts)
    n_bad = int(bad.sum())
    n_bad_jets = int(np.unique(jet_of[bad]).size)
    summary = ", ".join(f"{n} in {name} (branch {sources.get(name, name)})"
                        for name, n in per_feature.items())
    if on_invalid == "raise":
        first = int(np.flatnonzero(bad)[0])
        j = int(jet_of[first])
        k = first - int(counts[:j].sum())
        name = next(n for n, c in features.items() if not np.isfinite(c[first]))
        raise InvalidFeatureError(
            f"{where}: branch {sources.get(name, name)!r} (feature {name}): {describe_jet(j)}, "
            f"constituent {k}: value {features[name][first]!r} is NaN or infinite. In total "
            f"{n_bad} constituents in {n_bad_jets} jets are affected ({summary}). {remedy}")
    keep = ~bad
    new_counts = np.bincount(jet_of[keep], minlength=counts.shape[0]).astype(np.int64)
    warnings.warn(
        f"{where}: dropped {n_bad} constituents with NaN/inf features ({summary}) from "
        f"{n_bad_jets} jets; {int(np.count_nonzero((new_counts == 0) & (counts > 0)))} jets "
        "became empty", InvalidConstituentsWarning, stacklevel=stacklevel)
    return ([c[keep] for c in momenta], {n: c[keep] for n, c in features.items()}, new_counts)
