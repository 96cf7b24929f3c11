"""Figures of a tagger's performance (matplotlib Agg backend, hist + mplhep).

matplotlib, mplhep and hist are the optional extra ``plot``; without them the functions raise
:class:`ImportError` with the install hint (:func:`require_plotting`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from lloca_hep._files import atomic_output

from .multiclass import normalise_confusion

#: Bins of the score histogram over [0, 1].
SCORE_BINS = 50
FIGSIZE = (8.0, 7.0)
LEGEND_FONTSIZE = 16
DPI = 110
#: What to install for the figures.
PLOT_INSTALL_HINT = 'pip install "lloca-hep[plot]"'
PLOT_PACKAGES = ("matplotlib", "mplhep", "hist")
#: Legend font size of the multi-class ROC figure (it has one entry per signal class).
MULTICLASS_LEGEND_FONTSIZE = 12
#: Line styles of the multi-class ROC curves: the next one each time the colours repeat.
LINE_STYLES = ("-", "--", "-.", ":")


def require_plotting() -> tuple[ModuleType, ModuleType]:
    """``(mplhep, hist)``, or :class:`ImportError` naming the missing package and the install
    hint when one of :data:`PLOT_PACKAGES` is missing."""
    modules = {}
    for name in PLOT_PACKAGES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"the ROC and score figures need {name}, which is not installed: "
                              f"{PLOT_INSTALL_HINT}") from exc
    return modules["mplhep"], modules["hist"]


def _save(fig: object, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix, PNG by default)."""
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_output(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=DPI, format=fmt)  # type: ignore[attr-defined]


def _figure():
    """A figure drawn with the Agg canvas, independent of pyplot and the user's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_roc(eps_b: np.ndarray, eps_s: np.ndarray, path: str | os.PathLike[str], *,
             label: str = "tagger", auc: float | None = None) -> Path:
    """Background rejection 1/eps_B against signal efficiency eps_S (log scale), as a PNG."""
    mplhep, _ = require_plotting()
    from matplotlib import style

    path = Path(path)
    keep = eps_b > 0
    with style.context(mplhep.style.ROOT):
        fig, ax = _figure()
        text = label if auc is None else f"{label} (AUC {auc:.4f})"
        ax.plot(eps_s[keep], 1.0 / eps_b[keep], label=text)
        grid = np.linspace(0.01, 1.0, 100)
        ax.plot(grid, 1.0 / grid, ls="--", color="grey", label="random")
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        ax.legend(loc="upper right", fontsize=LEGEND_FONTSIZE)
        fig.tight_layout()
        _save(fig, path)
    return path


def plot_score_histograms(labels: np.ndarray, scores: np.ndarray, path: str | os.PathLike[str],
                          *, signal_name: str = "top (signal)",
                          background_name: str = "QCD (background)") -> Path:
    """Normalised score distributions of signal and background jets (hist + mplhep), as a PNG."""
    mplhep, hist = require_plotting()
    from matplotlib import style

    path = Path(path)
    labels = np.asarray(labels).astype(bool)
    h = (
        hist.Hist.new.Reg(SCORE_BINS, 0.0, 1.0, name="score", label="tagger score")
        .IntCat([0, 1], name="cls")
        .Double()
    )
    h.fill(score=np.clip(scores, 0.0, 1.0), cls=labels.astype(int))
    with style.context(mplhep.style.ROOT):
        fig, ax = _figure()
        for cls, name in ((1, signal_name), (0, background_name)):
            mplhep.histplot(h[:, hist.loc(cls)], ax=ax, density=True, label=name, yerr=False,
                            histtype="step", linewidth=2)
        ax.set_yscale("log")
        ax.set_xlabel("tagger score")
        ax.set_ylabel("normalised jets")
        ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)
        fig.tight_layout()
        _save(fig, path)
    return path


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str],
                          path: str | os.PathLike[str], *, normalise: bool = True,
                          title: str | None = None) -> Path:
    """The confusion matrix ``confusion`` (int ``(C, C)``, rows true class, columns predicted
    class, as :attr:`.multiclass.MultiClassMetrics.confusion`) as an annotated image: each row
    divided by its sum when ``normalise`` (rows without jets stay zero), else the counts."""
    mplhep, _ = require_plotting()
    from matplotlib import style

    path = Path(path)
    counts = np.asarray(confusion)
    names = list(class_names)
    if not names or counts.ndim != 2 or counts.shape != (len(names), len(names)):
        raise ValueError(f"confusion must be ({len(names)}, {len(names)}) for {len(names)} "
                         f"class names, got shape {counts.shape}")
    values = normalise_confusion(counts) if normalise else counts.astype(np.float64)
    vmax = 1.0 if normalise else max(float(values.max()), 1.0)
    fontsize = max(7, 22 - len(names))
    with style.context(mplhep.style.ROOT):
        fig, ax = _figure()
        image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                     label="fraction of true class" if normalise else "jets")
        for i in range(len(names)):
            for j in range(len(names)):
                v = values[i, j]
                text = f"{v:.2f}" if normalise else f"{int(counts[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if v > 0.5 * vmax else "black")
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=fontsize + 2)
        ax.set_yticks(ticks, names, fontsize=fontsize + 2)
        ax.minorticks_off()
        ax.tick_params(which="both", length=0)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if title is not None:
            ax.set_title(title)
        fig.tight_layout()
        _save(fig, path)
    return path


def plot_multiclass_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                        path: str | os.PathLike[str], *,
                        aucs: Mapping[str, float | None] | None = None,
                        title: str | None = None) -> Path:
    """Background rejection 1/eps_B (log scale) against eps_S, one curve per signal class.

    ``curves`` maps a class name to ``(eps_b, eps_s)``, as
    :func:`.multiclass.roc_curves_vs_background` returns them; ``aucs`` (for example
    ``per_class[name].auc_vs_background``) adds the AUC to the legend entries it names."""
    if not curves:
        raise ValueError("no ROC curves to plot")
    mplhep, _ = require_plotting()
    from matplotlib import rcParams, style

    path = Path(path)
    aucs = aucs or {}
    with style.context(mplhep.style.ROOT):
        fig, ax = _figure()
        # the style's colour cycle; the line style changes each time it starts over
        n_colours = max(1, len(rcParams["axes.prop_cycle"].by_key().get("color", [None])))
        for k, (name, (eps_b, eps_s)) in enumerate(curves.items()):
            eps_b, eps_s = np.asarray(eps_b), np.asarray(eps_s)
            keep = eps_b > 0
            auc = aucs.get(name)
            text = name if auc is None else f"{name} (AUC {auc:.4f})"
            ax.plot(eps_s[keep], 1.0 / eps_b[keep], label=text,
                    ls=LINE_STYLES[(k // n_colours) % len(LINE_STYLES)])
        grid = np.linspace(0.01, 1.0, 100)
        ax.plot(grid, 1.0 / grid, ls="--", color="grey", label="random")
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        ax.legend(loc="upper right", fontsize=MULTICLASS_LEGEND_FONTSIZE)
        if title is not None:
            ax.set_title(title)
        fig.tight_layout()
        _save(fig, path)
    return path
