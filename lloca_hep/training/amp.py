"""Mixed precision (``--amp``) and ``torch.compile`` (``--compile``) of the training step.

:class:`TrainingModel` is the network as the training step and the validation call it: the
forward pass under :func:`torch.autocast` with the ``--amp`` dtype, through ``torch.compile``
with ``--compile``, while ``state_dict`` / ``load_state_dict`` are those of the plain network
(checkpoints and the saved tagger hold the same names as without these options).

Which parts run in which dtype with ``--amp bf16`` or ``--amp fp16``:

============================================  ================================================
part                                          dtype
============================================  ================================================
input momenta                                 float64
frames: frames net, polar/Gram-Schmidt        float64; autocast is switched off around them
frames, relative frames ``L_i L_J^-1``        (:class:`~lloca_hep.models._common.
                                              LocalFrameModel`), and autocast never casts
                                              float64 tensors, so the frames of every LLoCa
                                              model (``llocapart``, ``llocaparticlenet`` too)
                                              stay float64
canonicalisation: reference coordinates,      float64 (as the frames)
local features ``L_i p_i``, log masses
backbone: embedding, attention / message      the ``--amp`` dtype for matrix products and
passing (incl. the frame transforms of the    linear layers (the float32 copy of the relative
features inside the attention), final norm,   frames is cast to it); what torch's autocast
classifier head                               keeps in float32 (softmax, norms, reductions)
                                              stays float32
logits, loss                                  float32 (the logits are cast before the loss)
parameters, gradients, optimizer state        float32
============================================  ================================================

The network input of the backbone is Lorentz invariant before it is rounded to the AMP dtype,
so the rounding does not break the invariance: a boosted jet gives the same backbone input up
to float64 round-off, and its logits differ from the unboosted ones by rarely more than the
AMP dtype's precision (``tests/test_training_amp.py`` measures it with rapidity-6 boosts).

``fp16`` uses a :class:`torch.amp.GradScaler` (loss scaling; steps with overflowing gradients
are skipped); its scale is not checkpointed, so a resumed fp16 run starts again from the
initial scale. Validation runs under the same autocast as training; a saved tagger scores in
float32. ``bf16`` and ``fp16`` both run on the CPU (torch's CPU autocast), slower than float32
there unless the CPU has bfloat16/float16 matrix units.

``--compile`` wraps the network in ``torch.compile(backend=--compile-backend)``; a backend that
fails to compile (e.g. inductor without a working C++ compiler) is reported with a warning in
the log and the run continues in eager mode.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["AMP_DTYPES", "TrainingModel", "check_amp", "make_grad_scaler"]

#: torch dtype of each ``--amp`` choice but ``off``.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _compile_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the compiler backend failed" (not an error of the model)."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import BackendCompilerFailed

        errors.append(BackendCompilerFailed)
    except ImportError:  # pragma: no cover - torch without dynamo
        pass
    try:
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    except ImportError:  # pragma: no cover - older torch
        pass
    return tuple(errors)


def check_amp(amp: str, device: torch.device) -> None:
    """``ValueError`` when ``--amp amp`` cannot run on ``device`` (no autocast for the device
    type, or bfloat16 on a GPU without it)."""
    if amp == "off":
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of off, {', '.join(AMP_DTYPES)}; got {amp!r}")
    available = getattr(torch.amp, "is_autocast_available", None)
    if available is not None and not available(device.type):
        raise ValueError(f"--amp {amp}: torch has no autocast for device {device}; use "
                         "--amp off")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 "
                         "support; use --amp fp16")


def make_grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler of ``--amp fp16`` on ``device`` (None for ``off`` and ``bf16``, whose
    exponent range needs none)."""
    if amp != "fp16":
        return None
    try:
        return torch.amp.GradScaler(device.type)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"--amp fp16 needs a GradScaler on {device.type}, which torch "
                         f"{torch.__version__} does not provide ({exc}); use --amp bf16") from exc


class TrainingModel(nn.Module):
    """``model`` as the training step calls it: under autocast to ``AMP_DTYPES[amp]`` (on
    ``device_type``), through ``torch.compile(model, backend=compile_backend)`` when
    ``compile``.

    ``state_dict`` and ``load_state_dict`` are ``model``'s (no ``model.`` prefix), so a
    checkpoint written through this wrapper loads into the plain network. Called as
    ``model(p4, mask, scalars=None)``.
    """

    _compiled: nn.Module | None

    def __init__(self, model: nn.Module, *, amp: str = "off", device_type: str = "cpu",
                 compile: bool = False, compile_backend: str = "inductor") -> None:
        super().__init__()
        if amp != "off" and amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of off, {', '.join(AMP_DTYPES)}; got {amp!r}")
        self.model = model
        self.amp = amp
        self.amp_dtype = AMP_DTYPES.get(amp)
        self.device_type = device_type
        self.compile_backend = compile_backend
        # not a registered submodule: its parameters are model's, and its state_dict keys
        # would carry an ``_orig_mod.`` prefix
        compiled = torch.compile(model, backend=compile_backend) if compile else None
        object.__setattr__(self, "_compiled", compiled)

    @property
    def compiled(self) -> bool:
        """Whether the forward pass still goes through ``torch.compile`` (False after a
        backend failure made it fall back to eager mode)."""
        return self._compiled is not None

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        args = (p4, mask) if scalars is None else (p4, mask, scalars)
        with torch.autocast(self.device_type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            return self._call(*args)

    def _call(self, *args: torch.Tensor) -> torch.Tensor:
        compiled = self._compiled
        if compiled is None:
            return self.model(*args)
        try:
            return compiled(*args)
        except _compile_errors() as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("torch.compile (backend %s) failed, training continues in eager mode: "
                        "%s", self.compile_backend, first)
            object.__setattr__(self, "_compiled", None)
            return self.model(*args)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True,
                        assign: bool = False) -> Any:
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)
