"""Example coffea processor: score FatJets with lloca-hep and histogram the scores.

Works with every way coffea runs a processor:

* eager/virtual NanoEvents, e.g. a :class:`coffea.processor.Runner` with the iterative,
  futures or dask executor (``schema=PFNanoAODSchema``): ``process`` returns filled
  :class:`hist.Hist` histograms;
* dask NanoEvents (``NanoEventsFactory.from_root(..., mode="dask")`` or
  :func:`coffea.dataset_tools.apply_to_fileset`): ``process`` returns lazy
  :class:`hist.dask.Hist` histograms, computed with ``dask.compute``.

Run it on a PFNano file::

    python examples/coffea_processor.py pfnano.root --mode virtual
    python examples/coffea_processor.py pfnano.root --mode dask --model my_tagger.pt

The module is importable (``examples.coffea_processor`` from the repository root, or by path),
which dask workers need: a processor defined in ``__main__`` cannot be shipped to them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from lloca_hep.coffea import JetTagger

log = logging.getLogger(__name__)

#: Score histogram binning: top probability in [0, 1].
SCORE_BINS = 50
#: Jet pT histogram binning, GeV.
PT_BINS, PT_MIN_GEV, PT_MAX_GEV = 40, 0.0, 2000.0


def _is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask_awkward")


class TopTagProcessor(processor.ProcessorABC):
    """Score every jet of ``collection`` and fill score and (score, pT) histograms.

    Parameters
    ----------
    model:
        Tagger file (``None``: the tagger shipped with lloca-hep).
    collection:
        ``"FatJet"`` or ``"Jet"``.
    min_pt:
        Only jets above this pT (GeV) enter the histograms (all jets are scored).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, collection: str = "FatJet",
                 min_pt: float = 0.0) -> None:
        self.tagger = JetTagger(model, collection=collection)
        self.collection = collection
        self.min_pt = float(min_pt)

    def _histograms(self, dask_mode: bool) -> tuple[Any, Any]:
        if dask_mode:
            import hist.dask as hist_dask

            cls = hist_dask.Hist
        else:
            cls = hist.Hist
        score_axis = hist.axis.Regular(SCORE_BINS, 0.0, 1.0, name="score", label="LLoCa top score")
        h_score = cls(hist.axis.StrCategory([], name="dataset", growth=True), score_axis,
                      storage=hist.storage.Weight())
        h_2d = cls(
            score_axis,
            hist.axis.Regular(PT_BINS, PT_MIN_GEV, PT_MAX_GEV, name="pt", label="jet pT [GeV]"),
        )
        return h_score, h_2d

    def process(self, events: Any) -> dict[str, Any]:
        dask_mode = _is_dask(events)
        if dask_mode:
            import dask_awkward as lib
        else:
            lib = ak
        dataset = events.metadata.get("dataset", "unknown") if hasattr(events, "metadata") else "unknown"
        jets = events[self.collection]
        scores = self.tagger(events)  # [event][jet] float32, NaN for jets without candidates
        keep = (jets.pt > self.min_pt) & ~np.isnan(scores)
        flat_scores = lib.flatten(scores[keep], axis=1)
        flat_pt = lib.flatten(jets.pt[keep], axis=1)
        h_score, h_2d = self._histograms(dask_mode)
        h_score.fill(dataset=dataset, score=flat_scores)
        h_2d.fill(score=flat_scores, pt=flat_pt)
        n_jets = lib.sum(lib.num(jets, axis=1), axis=0)
        return {
            dataset: {
                "events": lib.num(events, axis=0),
                "jets": n_jets,
                "scored_jets": lib.num(flat_scores, axis=0),
                "score": h_score,
                "score_vs_pt": h_2d,
            }
        }

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


def main(argv: list[str] | None = None) -> int:
    """Run the processor on PFNano files and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="PFNano ROOT files")
    parser.add_argument("--mode", choices=("virtual", "dask"), default="virtual")
    parser.add_argument("--model", default=None, help="tagger file (default: shipped tagger)")
    parser.add_argument("--collection", default="FatJet")
    parser.add_argument("--min-pt", type=float, default=0.0, help="GeV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from coffea.nanoevents import PFNanoAODSchema

    proc = TopTagProcessor(args.model, collection=args.collection, min_pt=args.min_pt)
    fileset = {"sample": {"files": {f: "Events" for f in args.files}}}
    if args.mode == "virtual":
        runner = processor.Runner(processor.IterativeExecutor(), schema=PFNanoAODSchema)
        out = runner({"sample": list(args.files)}, proc, treename="Events")
    else:
        import dask
        from coffea.dataset_tools import DataGroupSpec, apply_to_fileset, preprocess

        available, _ = preprocess(DataGroupSpec(fileset), step_size=100_000)
        (out,) = dask.compute(apply_to_fileset(proc, available, schemaclass=PFNanoAODSchema))
        out = out["sample"]
    for dataset, result in out.items():
        h = result["score"]
        print(f"{dataset}: {int(result['events'])} events, {int(result['jets'])} "
              f"{args.collection}s, {int(result['scored_jets'])} in the histogram, "
              f"mean score {np.average(h.axes['score'].centers, weights=h[dataset, :].values()):.3f}"
              if h.sum().value > 0 else f"{dataset}: no jets scored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
