"""Figures of a tagger's performance (matplotlib Agg backend, hist + mplhep)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lloca_hep._files import atomic_output

#: Bins of the score histogram over [0, 1].
SCORE_BINS = 50
FIGSIZE = (8.0, 7.0)
LEGEND_FONTSIZE = 16
DPI = 110


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
    import mplhep
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
    import hist
    import mplhep
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
