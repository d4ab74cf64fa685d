"""Analyses built on the operators and linear algebra: the sharpness protocol of Kaur et al. 2023."""

from .sharpness import (ANALYSIS_SAMPLES, INTERPOLATION_POINTS, PROTOCOLS, SharpnessResult, evenly_spaced_indices,
                        sharpness)

__all__ = ["ANALYSIS_SAMPLES", "INTERPOLATION_POINTS", "PROTOCOLS", "SharpnessResult", "evenly_spaced_indices",
           "sharpness"]
