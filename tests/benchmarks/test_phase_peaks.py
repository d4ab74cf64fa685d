"""The benchmark's per-phase peaks: resetting the high-water mark must not lose the whole run's peak."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks.measure import PhasePeaks, _rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_overall_peak_keeps_an_earlier_phase():
    peaks = PhasePeaks()
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    phase_one = peaks._hwm_mb()
    del big
    peaks.end("big")
    peaks.end("small")
    # Linux batches its RSS counters per thread: readings agree to a few hundred kB
    assert peaks.peaks["big"] >= phase_one - 2
    assert peaks.peaks["big"] >= peaks.peaks["small"] + 32  # the reset forgot the 64 MiB...
    assert peaks.overall() >= peaks.peaks["big"]  # ...the whole run's peak does not
    assert peaks.overall() >= _rss_mb()
