"""Ragged jets -> padded four-vector batches (numba).

``pad_jets`` takes an awkward array of jets (one entry per jet, a ragged list of constituents
with ``px, py, pz`` and ``E``/``energy``/``t`` fields or vector/coffea behaviour), ``pad_flat``
takes the flat columns plus either ``offsets`` or ``counts`` (what the coffea helper has inside
``numpy_call``). Both return :class:`PaddedJets` with float64 ``(n_jets, N, 4)`` four-momenta
ordered (E, px, py, pz) in GeV and a boolean mask.

Empty-jet policy: a jet with no constituents is kept; its mask row is all False, its
``n_constituents`` is 0, and an :class:`EmptyJetsWarning` states how many such jets the batch
holds. The tagger is expected to return NaN for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt

from lloca_hep._defaults import DEFAULT_MAX_CONSTITUENTS

from . import kernels


class EmptyJetsWarning(UserWarning):
    """Some jets have no constituents; their mask rows are all False."""


@dataclass(frozen=True)
class PaddedJets:
    """Padded jets.

    Attributes
    ----------
    p4 : float64 ``(n_jets, N, 4)``, (E, px, py, pz) in GeV, zeros in padded slots, sorted by
        descending pT when requested.
    mask : bool ``(n_jets, N)``, True for real constituents.
    n_constituents : int64 ``(n_jets,)``, constituents per jet *before* truncation to N.
    """

    p4: np.ndarray
    mask: np.ndarray
    n_constituents: np.ndarray
    #: float32 ``(n_jets, N, S)`` per-particle scalars in the order of ``p4`` (zeros in padded
    #: slots), or None when no scalars were given.
    scalars: np.ndarray | None = None

    @property
    def n_jets(self) -> int:
        return int(self.p4.shape[0])

    @property
    def max_constituents(self) -> int:
        return int(self.p4.shape[1])

    @property
    def empty(self) -> np.ndarray:
        """bool ``(n_jets,)``: jets without any constituent."""
        return self.n_constituents == 0

    @property
    def n_empty(self) -> int:
        return int(np.count_nonzero(self.n_constituents == 0))

    @property
    def n_truncated(self) -> int:
        """Number of jets that had more than N constituents."""
        return int(np.count_nonzero(self.n_constituents > self.max_constituents))

    def __len__(self) -> int:
        return self.n_jets


def offsets_from_counts(counts: npt.ArrayLike) -> np.ndarray:
    """int64 offsets ``(n_jets + 1,)`` starting at 0 from per-jet constituent counts."""
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {counts.shape}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _as_flat_float(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat one-dimensional array, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _sort_mode(sort_by_pt: bool | str) -> int:
    if isinstance(sort_by_pt, str):
        if sort_by_pt == "truncated":
            return kernels.SORT_WHEN_TRUNCATING
        raise ValueError(f"sort_by_pt must be True, False or 'truncated', got {sort_by_pt!r}")
    return kernels.SORT_ALWAYS if sort_by_pt else kernels.SORT_NEVER


def pad_flat(
    offsets: npt.ArrayLike | None,
    px: npt.ArrayLike,
    py: npt.ArrayLike,
    pz: npt.ArrayLike,
    energy: npt.ArrayLike,
    max_constituents: int = DEFAULT_MAX_CONSTITUENTS,
    sort_by_pt: bool | str = True,
    *,
    counts: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
    mask_out: np.ndarray | None = None,
    warn_empty: bool = True,
    scalars: npt.ArrayLike | None = None,
    _stacklevel: int = 2,
) -> PaddedJets:
    """Pad flat constituent columns to ``(n_jets, max_constituents, 4)``.

    Parameters
    ----------
    offsets : int ``(n_jets + 1,)`` boundaries of each jet in the flat columns (non-decreasing;
        may start at a non-zero value, e.g. a sliced awkward array), or None when ``counts`` is
        given instead.
    px, py, pz, energy : float32/float64 ``(n_total,)``, GeV.
    max_constituents : N, constituents kept per jet (the leading ones when sorted).
    sort_by_pt : True: sort by descending pT inside each jet (ties keep file order);
        False: keep file order (truncation keeps the first N); ``"truncated"``: sort only the
        jets longer than N, so the N leading are kept while the others stay in file order
        (much cheaper on unordered input, and enough for permutation-invariant models).
    counts : int ``(n_jets,)`` constituents per jet, the alternative to ``offsets``
        (``offsets = [0, cumsum(counts)]``); give exactly one of the two.
    out, mask_out : optional preallocated float ``(n_jets, N, 4)`` (float64, or float32 if you
        accept float32 momenta) and bool ``(n_jets, N)`` buffers, reused to avoid page faults
        when padding many batches.
    warn_empty : emit :class:`EmptyJetsWarning` when some jets have no constituents.
    scalars : optional float ``(n_total, S)`` per-particle scalars (one row per constituent,
        the rows of the columns' order), padded in the same pass as the momenta into
        ``PaddedJets.scalars`` float32 ``(n_jets, N, S)``.

    Returns
    -------
    PaddedJets with float64 ``p4`` (or ``out``'s dtype), bool ``mask``, int64
    ``n_constituents`` (before truncation) and ``scalars`` (None without ``scalars``).
    """
    if (offsets is None) == (counts is None):
        raise ValueError("give exactly one of offsets or counts")
    if offsets is None:
        offsets_arr = offsets_from_counts(np.asarray(counts))
    else:
        offsets_arr = np.ascontiguousarray(np.asarray(offsets), dtype=np.int64)
        if offsets_arr.ndim != 1 or offsets_arr.shape[0] < 1:
            raise ValueError(f"offsets must have shape (n_jets + 1,), got {offsets_arr.shape}")
        if offsets_arr.shape[0] > 1 and np.any(np.diff(offsets_arr) < 0):
            raise ValueError("offsets must be non-decreasing")
        if offsets_arr.size and offsets_arr[0] < 0:
            raise ValueError("offsets must be non-negative")
    columns = [
        _as_flat_float(n, v)
        for n, v in (("px", px), ("py", py), ("pz", pz), ("energy", energy))
    ]
    n_total = columns[0].shape[0]
    if any(c.shape[0] != n_total for c in columns):
        raise ValueError(
            "px, py, pz and energy must have the same length, got "
            + ", ".join(str(c.shape[0]) for c in columns)
        )
    if offsets_arr[-1] > n_total:
        raise ValueError(
            f"offsets/counts address {offsets_arr[-1]} constituents but the columns hold {n_total}"
        )
    if int(max_constituents) < 1:
        raise ValueError(f"max_constituents must be >= 1, got {max_constituents}")
    n_max = int(max_constituents)
    n_jets = offsets_arr.shape[0] - 1
    if out is None:
        out = np.empty((n_jets, n_max, 4), dtype=np.float64)
    elif out.shape != (n_jets, n_max, 4) or out.dtype not in (np.float32, np.float64):
        raise ValueError(f"out must be float32/64 of shape {(n_jets, n_max, 4)}, got {out.dtype} {out.shape}")
    if mask_out is None:
        mask_out = np.empty((n_jets, n_max), dtype=np.bool_)
    elif mask_out.shape != (n_jets, n_max) or mask_out.dtype != np.bool_:
        raise ValueError(f"mask_out must be bool of shape {(n_jets, n_max)}")
    n_constituents = np.empty(n_jets, dtype=np.int64)
    longest = int(np.max(np.diff(offsets_arr))) if n_jets else 0
    scratch = np.empty(max(longest, 1), dtype=np.float64)
    order = np.empty(max(longest, 1), dtype=np.int64)
    order_tmp = np.empty_like(order)
    key_tmp = np.empty_like(scratch)
    if scalars is None:
        kernels.pad_kernel(
            offsets_arr, columns[0], columns[1], columns[2], columns[3], _sort_mode(sort_by_pt),
            scratch, order, order_tmp, key_tmp, out, mask_out, n_constituents,
        )
        padded_scalars = None
    else:
        rows = np.ascontiguousarray(np.asarray(scalars), dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] != n_total:
            raise ValueError(f"scalars must have shape ({n_total}, S), got {rows.shape}")
        padded_scalars = np.empty((n_jets, n_max, rows.shape[1]), dtype=np.float32)
        kernels.pad_with_scalars_kernel(
            offsets_arr, columns[0], columns[1], columns[2], columns[3], rows,
            _sort_mode(sort_by_pt), scratch, order, order_tmp, key_tmp, out, padded_scalars,
            mask_out, n_constituents,
        )
    padded = PaddedJets(p4=out, mask=mask_out, n_constituents=n_constituents,
                        scalars=padded_scalars)
    if warn_empty:
        n_empty = padded.n_empty
        if n_empty:
            warnings.warn(
                f"{n_empty} of {n_jets} jets have no constituents: their mask rows are all "
                "False and taggers score them NaN",
                EmptyJetsWarning,
                stacklevel=_stacklevel,
            )
    return padded


_ENERGY_NAMES = ("E", "energy", "e", "t")


def _component(constituents: ak.Array, names: tuple[str, ...]) -> ak.Array:
    fields = ak.fields(constituents)
    for name in names:
        if name in fields:
            return constituents[name]
    for name in names:
        try:
            return getattr(constituents, name)
        except AttributeError:
            continue
    raise ValueError(
        f"constituents have none of the fields {names} (fields: {fields}); expected Cartesian "
        "px, py, pz, E or a vector/coffea Lorentz-vector behaviour"
    )


def _flat_column(values: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """counts, flat numpy values of a (n_jets, var) numeric awkward array."""
    if values.ndim != 2:
        raise ValueError(
            f"expected one entry per jet with a list of constituents (ndim 2), got type "
            f"{values.type}; flatten event-level jets first (ak.flatten(jets, axis=1))"
        )
    layout = values.layout
    # Missing jets (option at axis 0) become empty jets; missing constituents are dropped.
    if layout.is_option:
        values = ak.fill_none(values, [], axis=0)
    values = ak.drop_none(values, axis=1)
    values = ak.to_packed(values)
    counts = ak.to_numpy(ak.num(values, axis=1)).astype(np.int64)
    flat = ak.to_numpy(ak.flatten(values, axis=1))
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    return counts, flat


def pad_jets(
    constituents: ak.Array,
    max_constituents: int = DEFAULT_MAX_CONSTITUENTS,
    sort_by_pt: bool | str = True,
    *,
    warn_empty: bool = True,
    scalars: Sequence[str] | None = None,
) -> PaddedJets:
    """Pad an awkward array of jets' constituents to ``(n_jets, max_constituents, 4)``.

    ``constituents``: one entry per jet, each a list of records with Cartesian ``px, py, pz``
    and ``E`` (or ``energy``/``e``/``t``) fields, or any record with a vector/coffea Lorentz
    behaviour (e.g. pt/eta/phi/mass). Sliced or masked arrays (ListArray) and option types
    from index joins are accepted: missing constituents are dropped, missing jets become empty
    jets. A record array with a ``constituents`` field (what :func:`lloca_hep.io.read_jets`
    returns) is accepted too. Returns float64 momenta (E, px, py, pz) in GeV.
    """
    if not isinstance(constituents, ak.Array):
        constituents = ak.Array(constituents)
    if constituents.ndim == 1 and "constituents" in ak.fields(constituents):
        constituents = constituents["constituents"]
    comps = [
        _component(constituents, ("px",)),
        _component(constituents, ("py",)),
        _component(constituents, ("pz",)),
        _component(constituents, _ENERGY_NAMES),
    ]
    names = list(scalars or ())
    missing = [n for n in names if n not in ak.fields(constituents)]
    if missing:
        raise KeyError(f"constituents lack the field(s) {missing} (fields: "
                       f"{ak.fields(constituents)})")
    comps += [constituents[n] for n in names]
    fast = _direct_columns(comps)
    if fast is not None:
        offsets, columns = fast
        return pad_flat(
            offsets,
            columns[0],
            columns[1],
            columns[2],
            columns[3],
            max_constituents=max_constituents,
            sort_by_pt=sort_by_pt,
            warn_empty=warn_empty,
            scalars=_stack(columns[4:]) if names else None,
            _stacklevel=3,
        )
    # Drop constituents missing in any component consistently: apply one shared mask.
    if any(c.layout.is_option or _has_inner_option(c) for c in comps):
        present = None
        for c in comps:
            p = ~ak.is_none(c, axis=1)
            present = p if present is None else (present & p)
        present = ak.fill_none(present, [], axis=0)
        comps = [ak.fill_none(c, [], axis=0)[present] for c in comps]
    flat = [_flat_column(c) for c in comps]
    counts = flat[0][0]
    for c, _ in flat[1:]:
        if not np.array_equal(c, counts):
            raise ValueError("px, py, pz, E (and the scalars) have different numbers of "
                             "constituents per jet")
    return pad_flat(
        None,
        flat[0][1],
        flat[1][1],
        flat[2][1],
        flat[3][1],
        max_constituents=max_constituents,
        sort_by_pt=sort_by_pt,
        counts=counts,
        warn_empty=warn_empty,
        scalars=_stack([f[1] for f in flat[4:]]) if names else None,
        _stacklevel=3,
    )


def _stack(columns: list[np.ndarray]) -> np.ndarray:
    """float32 ``(n_total, S)`` rows from flat per-constituent columns of equal length."""
    out = np.empty((columns[0].shape[0], len(columns)), dtype=np.float32)
    for k, col in enumerate(columns):
        out[:, k] = col
    return out


def _direct_columns(comps: list[ak.Array]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Offsets and flat numpy columns without copying, when all four components are plain
    ``ListOffsetArray(NumpyArray)`` with equal offsets (what :func:`read_jets` returns)."""
    offsets = None
    columns = []
    for c in comps:
        layout = c.layout
        if not isinstance(layout, ak.contents.ListOffsetArray):
            return None
        content = layout.content
        if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
            return None
        data = np.asarray(content.data)
        if data.dtype not in (np.float32, np.float64):
            return None
        off = np.asarray(layout.offsets.data)
        if offsets is None:
            offsets = off
        elif off is not offsets and not np.array_equal(off, offsets):
            return None
        columns.append(data)
    if offsets is None:
        return None
    return offsets, columns


def _has_inner_option(values: ak.Array) -> bool:
    layout = values.layout
    while layout.is_option or layout.is_indexed:
        layout = layout.content
    if layout.is_list:
        return bool(layout.content.is_option)
    return False


def argsort_by_pt(offsets: npt.ArrayLike, px: npt.ArrayLike, py: npt.ArrayLike) -> np.ndarray:
    """Permutation (int64, ``(n_total,)``, indices relative to ``offsets[0]``) that sorts the
    flat constituent columns by descending pT inside each jet; use it to reorder any other
    per-constituent column consistently with :func:`pad_flat`."""
    offsets_arr = np.ascontiguousarray(np.asarray(offsets), dtype=np.int64)
    pxa = _as_flat_float("px", px)
    pya = _as_flat_float("py", py)
    n = int(offsets_arr[-1] - offsets_arr[0]) if offsets_arr.size else 0
    out = np.empty(n, dtype=np.int64)
    longest = int(np.max(np.diff(offsets_arr))) if offsets_arr.size > 1 else 0
    size = max(longest, 1)
    kernels.argsort_pt_kernel(
        offsets_arr, pxa, pya, np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64),
        np.empty(size), out,
    )
    return out
