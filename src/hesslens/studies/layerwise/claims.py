"""The layer-wise study's claims, declared from its :class:`~.design.Design` before any run.

Bolshim & Kugaevskikh (2025, arXiv 2510.17486; papers.md §3). Every statistic is per seed — one seed is a
replicate of the whole 111-run study — so the verdicts rest on intervals over seeds like every hesslens
study's:

1. the local spectra separate the capacity regimes — (1a) better than a classifier that sees only cheap
   features, (1b) better than chance;
2. they evolve in consistent patterns during training — four patterns named in advance, each "consistent"
   when it holds in more than half of the runs (:mod:`.features` defines them);
3. they relate to generalization — the first canonical correlation between the spectral features and
   (score gap, test score) exceeds the 95th percentile of its permutation null.
"""

from __future__ import annotations

from typing import Any

from ..arms import pooled_value
from ..claims import Claim
from .design import CHEAP, GENERALIZATION, SPECTRAL, Design
from .learn import accuracy_gain, canonical_excess

__all__ = ["PATTERNS", "declare"]

#: The patterns of claim 2: record column → (sentence, runs it is defined on).
PATTERNS: dict[str, tuple[str, dict[str, Any]]] = {
    "p_output_sharpest": ("At the end of training the output block has the largest λ_max of the three blocks.", {}),
    "p_sharpness_peaks": ("The largest block λ_max peaks at an interior checkpoint, above its values at "
                          "initialisation and at the end (sharpening, then flattening).", {}),
    "p_negmass_falls": ("The mean negative mass of the blocks is lower at the end than at initialisation "
                        "(tanh and GELU nets: ReLU blocks are positive semi-definite).",
                        {"activation": ["tanh", "gelu"]}),
    "p_erank_falls": ("The output block's effective-rank fraction is lower at the end than at initialisation "
                      "(its curvature concentrates in fewer directions).", {}),
}


def declare(d: Design) -> list[Any]:
    """The claims of design ``d``: 1a, 1b, 2a–2d, 3."""
    n_runs = len(d.datasets) * len(d.regimes)
    c1a = Claim("1a", f"Spectral features of the local Hessians separate the {len(d.regimes)} capacity regimes better "
                "than the cheap features (training loss and score, parameters per sample, weight norms).",
                f"all {n_runs} runs of each seed",
                accuracy_gain(SPECTRAL, CHEAP, folds=d.folds), "greater")
    c1b = Claim("1b", "…and better than chance.", f"all {n_runs} runs of each seed",
                accuracy_gain(SPECTRAL, 1.0 / len(d.regimes), folds=d.folds), "greater")
    patterns = [Claim(f"2{'abcd'[i]}", sentence + " (It holds in more than half of the runs.)",
                      "every run" if not where else f"runs with {where}",
                      pooled_value(column, where, minus=0.5), "greater")
                for i, (column, (sentence, where)) in enumerate(PATTERNS.items())]
    c3 = Claim("3", "Spectral features relate to generalization across datasets: their first canonical correlation "
               f"with ({', '.join(GENERALIZATION)}) exceeds the 95th percentile of its permutation null.",
               f"all {n_runs} runs of each seed",
               canonical_excess(SPECTRAL, GENERALIZATION, permutations=d.permutations), "greater")
    return [c1a, c1b, *patterns, c3]
