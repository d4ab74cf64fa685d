"""Fixtures for the linear-algebra tests."""

from __future__ import annotations

import os

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_thread():
    """One thread for torch and for NumPy's BLAS during these tests, restored afterwards.

    Their matrices are at most 500×500: threads only add synchronisation, and on a loaded 2-core
    machine the spin-waiting made tests/linalg take 67 s instead of 6 s (measured with
    OMP_NUM_THREADS=1). HESSLENS_TEST_THREADS=k uses k threads instead.
    """
    threads = int(os.environ.get("HESSLENS_TEST_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
