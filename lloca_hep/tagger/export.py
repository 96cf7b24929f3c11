"""Ship or serve a tagger without the training code: ``torch.export`` archives (``.pt2``).

>>> from lloca_hep.tagger.export import export_tagger, load_exported
>>> export_tagger(lloca_hep.load_tagger("my_tagger.pt"), "my_tagger.pt2")
>>> tagger = load_exported("my_tagger.pt2")      # or lloca_hep.load_tagger("my_tagger.pt2")
>>> scores = tagger.score(jets)                  # same interface as lloca_hep.tagger.Tagger

The archive holds the model's graph and weights as produced by :func:`torch.export.export`
with *dynamic* batch and constituent dimensions (any number of jets, any padded width), and
the tagger's JSON header (model name and config, ``max_constituents``, preprocessing,
metadata, plus the torch version and the export settings) as the extra file
:data:`HEADER_FILE` inside the archive. Loading it needs torch and lloca-hep's preprocessing
(numba padding), but none of lloca-hep's model code.

Loading is safe for files from strangers: :func:`torch.export.load` by itself would unpickle
records with ``weights_only=False`` and ``exec`` strings from the archive, so
:func:`load_exported` first vets every record (:mod:`lloca_hep.tagger.safeload`: pickles must
load with ``weights_only=True``, the graph may call only ATen operators, expressions and guards
must stay within small grammars, no AOTInductor libraries) and the header
(:func:`lloca_hep.tagger.format.validate_header`, the same check as for ``.pt`` files), then
hands torch a fresh copy of exactly the vetted records. Weights holding NaN/inf are refused.
Every problem is a :class:`~lloca_hep.tagger.TaggerFileError` naming the file.

TorchScript (``torch.jit``) is not used: it is deprecated in torch 2.13.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch

from lloca_hep._files import atomic_output

from . import safeload as _safeload
from .format import (
    EXPORTED_SUFFIX,
    TaggerFileError,
    check_finite_weights,
    header_inputs,
    validate_header,
)
from .scoring import DEFAULT_BATCH_SIZE, Tagger, resolve_device

log = logging.getLogger(__name__)

__all__ = ["HEADER_FILE", "ExportedTagger", "export_tagger", "load_exported", "read_exported_header"]

#: Name of the JSON header stored inside the ``.pt2`` archive.
HEADER_FILE = "lloca_hep_header.json"
#: Shape of the example jets traced by the exporter: batch and constituents. Neither may be
#: 0 or 1 (torch specialises such sizes) and they differ so torch does not tie the two dims.
EXAMPLE_BATCH = 3
EXAMPLE_CONSTITUENTS = 7
#: Seed of the example jets (the exported graph does not depend on their values).
EXAMPLE_SEED = 20250526
#: Scale of the example momenta, GeV.
EXAMPLE_MOMENTUM_GEV = 50.0
#: Mass added in quadrature to make example constituents time-like, GeV.
EXAMPLE_MASS_GEV = 0.1
#: Tolerances of the check that the exported program reproduces the eager model (logits).
CHECK_RTOL = 1e-5
CHECK_ATOL = 1e-6
#: torch loggers that report (with a traceback) failures inside :func:`torch.export.load`;
#: silenced while loading, their first message goes into the TaggerFileError instead.
TORCH_LOAD_LOGGERS = ("torch.export", "torch.export.pt2_archive._package",
                      "torch._export.serde.serialize")
#: Longest piece of a torch error message quoted in a TaggerFileError.
MESSAGE_CHARS = 200


def _example_inputs(batch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random time-like jets: p4 float64 ``(batch, n, 4)`` (E, px, py, pz) GeV, mask bool."""
    gen = torch.Generator().manual_seed(EXAMPLE_SEED)
    p3 = torch.randn(batch, n, 3, dtype=torch.float64, generator=gen) * EXAMPLE_MOMENTUM_GEV
    p3[..., 2] += EXAMPLE_MOMENTUM_GEV  # a common direction, like constituents of one jet
    energy = (p3.pow(2).sum(-1) + EXAMPLE_MASS_GEV**2).sqrt()
    p4 = torch.cat([energy[..., None], p3], dim=-1)
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[0, n - 2:] = False  # exercise the padding path
    return p4, mask


class _ExportedModule(torch.nn.Module):
    """``model(p4, mask) -> logits`` backed by an exported program.

    The program's module is kept out of the registered submodules: exported modules refuse
    ``train()``/``eval()``, which :class:`~lloca_hep.tagger.Tagger` calls on its model.
    """

    program: torch.export.ExportedProgram
    _call: Any
    _config: dict[str, Any]

    def __init__(self, program: torch.export.ExportedProgram, config: dict[str, Any]) -> None:
        super().__init__()
        self.__dict__["program"] = program
        self.__dict__["_call"] = program.module()
        self.__dict__["_config"] = dict(config)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        if scalars is None:
            return self._call(p4, mask)
        return self._call(p4, mask, scalars)


class ExportedTagger(Tagger):
    """A :class:`~lloca_hep.tagger.Tagger` whose model is a ``torch.export`` program.

    Same scoring interface: :meth:`score`, :meth:`score_padded`, :attr:`max_constituents`;
    :meth:`save` writes a ``.pt2`` archive again.
    """

    def __init__(
        self,
        program: torch.export.ExportedProgram,
        header: dict[str, Any],
        *,
        device: str | torch.device | None = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        source: str | None = None,
    ) -> None:
        dev = resolve_device(device)
        if dev.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, dev)
        preprocessing = header.get("preprocessing") or {}
        inputs, classes = header_inputs(Path(source or "exported tagger"), header)
        super().__init__(
            _ExportedModule(program, header.get("config") or {}),
            header["model_name"],
            header["max_constituents"],
            metadata=header.get("metadata") or {},
            device=dev,
            batch_size=batch_size,
            sort_by_pt=bool(preprocessing.get("sort_by_pt", True)),
            inputs=inputs,
            classes=classes,
        )
        self.export_info: dict[str, Any] = dict(header.get("export") or {})
        self.source = source

    @property
    def program(self) -> torch.export.ExportedProgram:
        """The underlying :class:`torch.export.ExportedProgram`."""
        return cast(_ExportedModule, self.model).program

    def __repr__(self) -> str:
        n_params = sum(int(p.numel()) for p in self.program.parameters())
        return (
            f"ExportedTagger(model={self.model_name!r}, parameters={n_params}, "
            f"max_constituents={self.max_constituents}, device={str(self.device)!r})"
        )

    def to(self, device: str | torch.device) -> ExportedTagger:
        """Move the exported program to ``device`` and return ``self``."""
        dev = resolve_device(device)
        if dev != self.device:
            from torch.export.passes import move_to_device_pass

            self.model = _ExportedModule(move_to_device_pass(self.program, dev), self.config)
            self.device = dev
        return self

    def header(self) -> dict[str, Any]:
        header = super().header()
        header["export"] = dict(self.export_info)
        return header

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the program and header to a ``.pt2`` archive, atomically."""
        return _save_program(self.program, self.header(), Path(path))


def _save_program(program: torch.export.ExportedProgram, header: dict[str, Any],
                  path: Path) -> Path:
    if path.suffix != EXPORTED_SUFFIX:
        raise ValueError(
            f"{path}: exported taggers are {EXPORTED_SUFFIX} files (load_tagger recognises them "
            "by the suffix)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=EXPORTED_SUFFIX) as tmp:
        torch.export.save(program, tmp, extra_files={HEADER_FILE: json.dumps(header, sort_keys=True)})
    return path


def export_tagger(tagger: Tagger, path: str | os.PathLike[str], *, check: bool = True) -> Path:
    """Export ``tagger``'s model with :func:`torch.export.export` and save it to ``path`` (.pt2).

    The batch and constituent dimensions of ``p4`` float64 ``(B, N, 4)`` and ``mask`` bool
    ``(B, N)`` are dynamic (any ``B >= 1``, ``N >= 1``). The model is exported in eval mode
    on CPU. With ``check`` (default), the program is run on two differently shaped example
    batches and must reproduce the eager logits within :data:`CHECK_RTOL`/:data:`CHECK_ATOL`.
    Returns the path.
    """
    from torch.export import Dim

    path = Path(path)
    if path.suffix != EXPORTED_SUFFIX:
        raise ValueError(f"{path}: the exported tagger file must end in {EXPORTED_SUFFIX}")
    model = tagger.model
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to("cpu").eval()
    n_scalars = len(tagger.inputs)

    def example(batch: int, n: int) -> tuple[torch.Tensor, ...]:
        p4, mask = _example_inputs(batch, n)
        if not n_scalars:
            return p4, mask
        gen = torch.Generator().manual_seed(EXAMPLE_SEED + 1)
        return p4, mask, torch.randn(batch, n, n_scalars, generator=gen)

    try:
        args = example(EXAMPLE_BATCH, EXAMPLE_CONSTITUENTS)
        batch = Dim("batch", min=1)
        constituents = Dim("constituents", min=1)
        dynamic: dict[str, Any] = {"p4": {0: batch, 1: constituents},
                                   "mask": {0: batch, 1: constituents}}
        if n_scalars:
            dynamic["scalars"] = {0: batch, 1: constituents}
        with torch.no_grad():
            # one eager pass first: module-level caches (if any) then hold real tensors, not
            # the fake tensors of the trace
            model(*args)
        try:
            with torch.no_grad():
                program = torch.export.export(model, args, dynamic_shapes=dynamic)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(
                f"torch.export cannot export {tagger.model_name!r}: {first}. Data-dependent "
                "Python control flow (e.g. `if bool(tensor.all()):` fast paths) cannot be "
                "exported; guard it with `torch.compiler.is_compiling()`."
            ) from exc
        if check:
            exported = program.module()
            for shape in ((EXAMPLE_BATCH, EXAMPLE_CONSTITUENTS), (EXAMPLE_BATCH + 2, 2 * EXAMPLE_CONSTITUENTS + 1)):
                xs = example(*shape)
                with torch.no_grad():
                    want = model(*xs)
                    got = exported(*xs)
                if not torch.allclose(got, want, rtol=CHECK_RTOL, atol=CHECK_ATOL):
                    raise RuntimeError(
                        f"torch.export changed the model's output on a {shape} batch (max "
                        f"|diff| {float((got - want).abs().max()):.3g}); not writing {path}"
                    )
    finally:
        model.to(device).train(was_training)
    header = tagger.header()
    header["export"] = {
        "torch_version": torch.__version__,
        "dynamic_dims": {k: ["batch", "constituents"] for k in dynamic},
        "input_dtypes": {"p4": "float64", "mask": "bool",
                         **({"scalars": "float32"} if n_scalars else {})},
    }
    _save_program(program, header, path)
    log.info("exported %r to %s", tagger, path)
    return path


class _Capture(logging.Filter):
    """Keeps the records of a logger instead of letting them reach a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def _quiet_torch_load() -> Iterator[_Capture]:
    """Silence :data:`TORCH_LOAD_LOGGERS` (no tracebacks on stderr); yields what they said."""
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in TORCH_LOAD_LOGGERS]
    for logger in loggers:
        logger.addFilter(capture)
    try:
        yield capture
    finally:
        for logger in loggers:
            logger.removeFilter(capture)


def _one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most :data:`MESSAGE_CHARS` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS] + " ..."


def _vetted_records(path: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The archive's records, vetted by :mod:`lloca_hep.tagger.safeload`, and its checked header."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such exported tagger file")
    if path.is_dir():
        raise TaggerFileError(path, "is a directory, not an exported tagger")
    records = _safeload.read_archive(path)
    raw = records.get(_safeload.EXTRA_DIR + HEADER_FILE)
    if raw is None:
        raise TaggerFileError(path, f"archive has no {HEADER_FILE}: not exported by lloca-hep")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaggerFileError(path, f"{HEADER_FILE} is not UTF-8 text") from exc
    header = validate_header(path, text, where=HEADER_FILE)
    _safeload.check_archive(path, records)
    return records, header


def _load_archive(path: Path) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    records, header = _vetted_records(path)
    with _quiet_torch_load() as said:
        try:
            program = torch.export.load(_safeload.rebuilt_archive(records))
        except Exception as exc:
            cause = next((r.exc_info[1] for r in said.records
                          if r.exc_info and r.exc_info[1] is not None), exc)
            raise TaggerFileError(
                path, f"not a readable torch.export archive: {_one_line(cause)}"
            ) from exc
    for record in said.records:
        log.debug("torch.export.load(%s): %s", path, record.msg)
    check_finite_weights(path, program.state_dict)
    return program, header


def read_exported_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header embedded in a ``.pt2`` exported tagger (the archive is vetted, but no
    program is built)."""
    return _vetted_records(Path(path))[1]


def load_exported(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ExportedTagger:
    """Load a ``.pt2`` written by :func:`export_tagger` as a tagger (``score``,
    ``score_padded``, ``max_constituents``). ``device``: ``"cpu"`` (default), ``"cuda"``,
    ``"auto"``. Raises :class:`FileNotFoundError` or :class:`~lloca_hep.tagger.TaggerFileError`.
    """
    path = Path(path)
    program, header = _load_archive(path)
    tagger = ExportedTagger(program, header, device=device, batch_size=batch_size,
                            source=str(path))
    log.debug("loaded %r from %s", tagger, path)
    return tagger
