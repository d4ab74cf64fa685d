"""Analyses built on the operators and linear algebra: the sharpness protocol of Kaur et al. 2023, the
edge-of-stability summary of a tracked λ_max trajectory (Cohen et al. 2021), the HESD criteria re/Kh
and type (Gabdullin 2024, 2025) of a spectral density, spectral metrics of a density and the layer-wise
(local) Hessians of Bolshim & Kugaevskikh (2025)."""

from .assessment import Assessment, Comparison, assess, compare
from .hesd import HESD_KINDS, HesdCriteria, HesdType, hesd_criteria, hesd_type
from .layerwise import Layerwise, layerwise
from .metrics import (Estimate, abs_stable_rank, condition, effective_rank, neg_mass, spectral_entropy,
                      spectral_metrics, stable_rank)
from .sharpness import (ANALYSIS_SAMPLES, INTERPOLATION_POINTS, PROTOCOLS, SharpnessResult, evenly_spaced_indices,
                        sharpness)
from .stability import EdgeOfStability, edge_of_stability

__all__ = ["Assessment", "Comparison", "assess", "compare", "HESD_KINDS", "HesdCriteria", "HesdType", "hesd_criteria", "hesd_type", "ANALYSIS_SAMPLES", "INTERPOLATION_POINTS", "PROTOCOLS", "EdgeOfStability", "SharpnessResult",
           "edge_of_stability", "evenly_spaced_indices", "sharpness", "Layerwise", "layerwise", "Estimate",
           "abs_stable_rank", "condition", "effective_rank", "neg_mass", "spectral_entropy", "spectral_metrics",
           "stable_rank"]
