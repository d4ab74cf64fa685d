"""A hand-made Summary with known numbers, for the summary/figure/HTML tests (no analysis run)."""

from __future__ import annotations

import numpy as np

import hesslens as hl
from hesslens.report import Summary

NODES = np.array([[-0.5, 0.25, 2.0], [-0.25, 1.0, 3.0]])
WEIGHTS = np.array([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])


def make_summary(name: str = "MLP", stderr: float = 0.125, **overrides) -> Summary:
    density = hl.SpectralDensity(NODES, WEIGHTS, dimension=7, matvecs=6, meta={"steps": 3, "probes": 2})
    fields = dict(
        lambda_max={"value": 3.25, "residual": 1e-9, "converged": True},
        lambda_min={"value": -0.625, "residual": 2e-8, "converged": False},
        eigen={"matvecs": 40, "seconds": 0.5, "restarts": 1, "tol": 1e-6},
        trace={"estimate": 9.5, "stderr": stderr, "method": "hutch++", "matvecs": 12, "seconds": 0.1},
        density=density.to_dict(),
        settings={"seed": 0, "steps": 3, "probes": 2, "trace_matvecs": 12, "tol": 1e-6, "mode": "eval"},
        engine={"name": "linearize+vmap", "reason": "requested", "timings": {}, "setup_seconds": 0.2},
        timings={"trace": 0.1, "total": 1.5},
        model={"name": name, "analysed_parameters": 7},
        data={"name": "toy", "samples": 30, "batches": 2, "loss_value": 0.7},
        versions={"hesslens": hl.__version__},
        created="2025-01-01T00:00:00+00:00",
    )
    fields.update(overrides)
    return Summary(**fields)
