"""Progress bars of the numerical routines count operator products and end where the work ends.

A recording stand-in for tqdm (``hesslens.progress.tqdm``) captures each bar's total, its count and
its postfix; a real tqdm writing to a StringIO checks what a terminal would show (the rate unit,
no total for restarted Lanczos). Every count is compared with the products the operator really
did (a counting operator) and with the ``matvecs`` of the result.
"""

from __future__ import annotations

import functools
import io
import re
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from tqdm.auto import tqdm as real_tqdm

import hesslens.progress as progress_module
from hesslens.linalg.density import spectral_density
from hesslens.linalg.eigen import eigenvalues
from hesslens.linalg.trace import trace
from hesslens.progress import PRODUCTS


class RecordingBar:
    """Enough of tqdm's interface for hesslens's bars, recording everything they are told."""

    bars: ClassVar[list[RecordingBar]] = []

    def __init__(self, total=None, desc=None, unit="it", disable=False, leave=True, **_):
        self.initial_total, self.total, self.desc, self.unit = total, total, desc, unit
        self.disable = bool(disable)
        self.n, self.updates, self.postfixes, self.closed = 0, [], [], False
        RecordingBar.bars.append(self)

    def update(self, n=1):
        self.n += n
        self.updates.append(n)

    def set_postfix_str(self, s="", refresh=True):
        self.postfixes.append(s)

    def refresh(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.bars = []
    monkeypatch.setattr(progress_module, "tqdm", RecordingBar)
    return RecordingBar.bars


def counting(a: np.ndarray):
    """A LinearOperator over ``a`` and a one-element list counting the columns it has multiplied."""
    count = [0]

    def matmat(x):
        x = np.asarray(x)
        count[0] += 1 if x.ndim == 1 else x.shape[1]
        return a @ x

    return spla.LinearOperator(a.shape, matvec=matmat, matmat=matmat, rmatvec=matmat, dtype=np.float64), count


def planted(lam, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(lam), len(lam))))
    return (q * np.asarray(lam, dtype=np.float64)) @ q.T


def gapped(n: int = 400, seed: int = 0) -> np.ndarray:
    """A spectrum with well separated ends: restarted Lanczos converges far below its cap."""
    lam = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    lam[0], lam[1] = 10.0, -10.0
    return planted(lam, seed)


# -- Lanczos for extreme eigenvalues: products counted, no total ----------------------------------
@pytest.mark.parametrize("which, k", [("largest", 1), ("smallest", 2), ("both", 1)])
def test_eigen_bar_counts_products_without_the_cap_as_total(bars, which, k):
    op, count = counting(gapped())
    r = eigenvalues(op, k=k, which=which, tol=1e-8, progress=True)
    (bar,) = bars
    assert r.all_converged and r.matvecs < 1000  # the default cap is ≥ 1000 products
    assert bar.initial_total is None and bar.total is None  # no total: never the cap
    assert bar.n == r.matvecs == count[0]
    assert bar.unit == PRODUCTS and bar.closed and not bar.disable
    assert bar.postfixes and "residual" in bar.postfixes[-1] and "tol 1e-08" in bar.postfixes[-1]


def test_eigen_bar_through_restarts_and_at_the_cap(bars):
    op, count = counting(planted(np.linspace(-1.0, 1.0, 300) ** 3, seed=3))
    r = eigenvalues(op, k=2, which="largest", tol=1e-12, ncv=12, block_size=2, max_matvecs=150, progress=True)
    (bar,) = bars
    assert r.restarts > 0 and r.matvecs >= 150  # stopped by the cap, after restarts
    assert bar.total is None and bar.n == r.matvecs == count[0]
    assert f"{r.restarts} restarts" in bar.postfixes[-1]


def test_eigen_dense_path_has_no_bar(bars):
    r = eigenvalues(torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64)), k=1, progress=True)
    assert r.restarts == 0 and bars == []


# -- SLQ: total = probes × min(steps, n) products, lowered on early stops --------------------------
@pytest.mark.parametrize("steps, probes, batch", [(15, 5, None), (15, 5, 2), (500, 3, None)])
def test_slq_bar_total_is_the_products(bars, steps, probes, batch):
    a = planted(np.random.default_rng(1).uniform(-2.0, 2.0, 60), seed=1)
    op, count = counting(a)
    sd = spectral_density(op, steps=steps, probes=probes, probe_batch=batch, progress=True)
    (bar,) = bars
    assert bar.initial_total == probes * min(steps, 60)  # known before the first product
    assert bar.total == bar.n == sd.matvecs == count[0]
    assert bar.unit == PRODUCTS and bar.closed


def test_slq_bar_total_follows_early_stops(bars):
    a = planted(np.repeat([-1.0, 0.5, 2.0], 20), seed=2)  # 3 distinct eigenvalues: every recurrence stops at 3 steps
    op, count = counting(a)
    sd = spectral_density(op, steps=30, probes=4, probe_batch=2, progress=True)
    (bar,) = bars
    assert bar.initial_total == 4 * 30
    assert sd.matvecs < 4 * 30
    assert bar.total == bar.n == sd.matvecs == count[0]


# -- trace: total = num_matvecs ---------------------------------------------------------------------
@pytest.mark.parametrize("method, num", [("hutch++", 30), ("hutch++", 31), ("hutchinson", 17)])
def test_trace_bar_total_is_the_products(bars, method, num):
    op, count = counting(planted(np.linspace(0.0, 3.0, 50), seed=4))
    r = trace(op, num_matvecs=num, method=method, progress=True)
    (bar,) = bars
    assert bar.initial_total == bar.total == bar.n == r.matvecs == num == count[0]
    assert bar.unit == PRODUCTS and bar.closed


def test_trace_bar_in_groups(bars):
    op, count = counting(planted(np.linspace(0.0, 3.0, 50), seed=4))
    r = trace(op, num_matvecs=40, method="hutch++", max_bytes=10_700, progress=True)  # 3 columns per group
    (bar,) = bars
    assert len(bar.updates) > 3  # several probe groups, each counted as it is done
    assert bar.total == bar.n == r.matvecs == count[0] == 40


def test_trace_bar_off_by_default_builds_no_tqdm(bars):
    r = trace(planted(np.linspace(0.0, 3.0, 20)), num_matvecs=12)
    assert r.matvecs == 12 and bars == []  # pytest's stderr is not a terminal: no tqdm, no monitor thread


@pytest.mark.parametrize("enabled, terminal_stderr, drawn", [(None, False, False), (None, True, True),
                                                             (False, True, False), (True, False, True)])
def test_a_bar_is_a_tqdm_only_where_it_is_shown(monkeypatch, enabled, terminal_stderr, drawn):
    seen = []
    monkeypatch.setattr(progress_module, "tqdm", lambda **kw: seen.append(kw) or RecordingBar(**kw))
    monkeypatch.setattr(progress_module.sys, "stderr", type("Stream", (), {"isatty": lambda self: terminal_stderr})())
    with progress_module.product_bar(10, "x", enabled) as bar:
        bar.update(3)
        bar.set_postfix_str("residual 1e-3", refresh=False)
        bar.total -= 2
        bar.refresh()
    assert bar.n == 3 and bar.total == 8 and bar.disable is not drawn
    if drawn:
        (kw,) = seen
        assert kw["disable"] is False and kw["unit"] == PRODUCTS and kw["total"] == 10
    else:
        assert seen == [] and isinstance(bar, progress_module.QuietBar)


def test_quiet_estimators_start_no_tqdm_monitor_thread(monkeypatch):
    """The point of QuietBar: a silent estimator leaves tqdm untouched (no instance, no monitor thread)."""
    monkeypatch.setattr(progress_module, "tqdm", lambda **kw: pytest.fail(f"a tqdm was built: {kw}"))
    monkeypatch.setattr(progress_module.sys, "stderr", io.StringIO())  # not a terminal, also under pytest -s
    op, _ = counting(gapped(100))
    eigenvalues(op, k=1, progress=False)
    spectral_density(op, steps=5, probes=2, progress=None)
    trace(op, num_matvecs=12, progress=False)


# -- what a terminal shows --------------------------------------------------------------------------
@pytest.fixture
def terminal(monkeypatch):
    """tqdm writing to a StringIO, redrawing on every update."""
    out = io.StringIO()
    monkeypatch.setattr(progress_module, "tqdm", functools.partial(real_tqdm, file=out, mininterval=0, miniters=1))
    return out


def test_eigen_terminal_shows_rate_and_no_eta(terminal):
    op, _ = counting(gapped())
    r = eigenvalues(op, k=1, tol=1e-8, progress=True)
    text = terminal.getvalue()
    assert re.search(rf"\d+(\.\d+)?{PRODUCTS}/s", text), text
    assert f"{r.matvecs}{PRODUCTS} [" in text  # the final count of products, no "/total"
    assert "/1000" not in text and "<" not in text  # neither the cap nor an ETA
    assert "residual" in text


def test_slq_terminal_shows_products_of_total(terminal):
    op, _ = counting(planted(np.linspace(-1.0, 1.0, 40), seed=5))
    spectral_density(op, steps=10, probes=3, progress=True)
    text = terminal.getvalue()
    assert "/30 [" in text and "30/30" in text and f"{PRODUCTS}/s" in text


@pytest.mark.parametrize("progress", [False, None])  # None: StringIO is not a terminal
def test_no_output_when_off_or_not_a_terminal(terminal, progress):
    op, _ = counting(gapped(100))
    eigenvalues(op, k=1, progress=progress)
    spectral_density(op, steps=5, probes=2, progress=progress)
    trace(op, num_matvecs=12, progress=progress)
    assert terminal.getvalue() == ""
