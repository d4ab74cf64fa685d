"""Analyses built on the operators and linear algebra: the sharpness protocol of Kaur et al. 2023 and
the edge-of-stability summary of a tracked λ_max trajectory (Cohen et al. 2021)."""

from .sharpness import (ANALYSIS_SAMPLES, INTERPOLATION_POINTS, PROTOCOLS, SharpnessResult, evenly_spaced_indices,
                        sharpness)
from .stability import EdgeOfStability, edge_of_stability

__all__ = ["ANALYSIS_SAMPLES", "INTERPOLATION_POINTS", "PROTOCOLS", "EdgeOfStability", "SharpnessResult",
           "edge_of_stability", "evenly_spaced_indices", "sharpness"]
