"""One adapter per library, each calling that library's own public API.

The adapters were written against the installed sources (site-packages) of

* hessian-eigenthings 1.0.0a5: ``HessianOperator(model, dataloader, loss_fn)`` (a fresh forward
  and double backward per product, one vector at a time), ``spectral_density(op, num_runs,
  lanczos_steps)`` (one probe at a time, full reorthogonalisation by a Python loop of dot/axpy),
  ``lanczos(op, k, max_iter, which)`` (no restarts: ``max_iter`` is the Krylov dimension) and
  ``trace(op, num_matvecs, method="hutch++")``;
* curvlinops-for-pytorch 3.0.1: ``HessianLinearOperator(model, loss_func, params, data)``
  (forward-over-reverse ``jvp(jacrev)`` vmapped over the columns, recomputed per product),
  ``.to_scipy()`` for SciPy's ``eigsh`` (its documented route to eigenvalues),
  ``lanczos_approximate_spectrum(A, ncv, num_repeats, boundaries)`` (Papyan 2020: one Gaussian
  probe at a time, *no* reorthogonalisation) and ``hutchpp_trace(A, num_matvecs)``;
* PyHessian 0.1: ``hessian(model, criterion, data=(x, y), cuda=False)`` (keeps the gradient graph
  of the one batch; products are ``pyhessian.utils.hessian_vector_product``),
  ``eigenvalues(maxIter, tol, top_n=1)`` (power iteration, largest *magnitude*), ``trace(maxIter,
  tol)`` (Hutchinson) and ``density(iter, n_v)``, which calls ``torch.eig``, removed from PyTorch:
  it fails, and the benchmark records the error instead of patching it.

:class:`PyHessianStyle` is **not** a library: it is our own loop in the manner of PyHessian's
``density()`` (gradient graph kept, double backward, one probe at a time, full
reorthogonalisation over lists of per-parameter tensors, ``torch.linalg.eigh`` in place of the
removed ``torch.eig``). It stands in for PyHessian's SLQ and needs only torch, so it also runs
when no peer is installed.

Every adapter exposes the same verbs, each returning plain numbers:
``setup(case)``, ``product(V)`` (V a float32 (n, k) tensor; ``max_columns`` says how many
columns one call may take), ``slq(steps, probes, seed)`` → (nodes, weights),
``lambda_max(setting)`` → (value, products), ``trace(num_matvecs, seed)`` → the estimate.
Every ``trace`` is seeded: the same seed gives the same probes, so the trace-to-accuracy sweep of
:mod:`benchmarks.measure` (several seeds at each number of products) is reproducible.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from typing import Any, Sequence

import numpy as np
import torch

from .zoo import Case


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _flat_params(case: Case) -> list[torch.nn.Parameter]:
    return [p for p in case.model.parameters() if p.requires_grad]


def _split(v: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for p in params:
        out.append(v[start:start + p.numel()].view_as(p))
        start += p.numel()
    return out


def _tridiagonal_quadrature(alphas: Sequence[float], betas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    theta, u = np.linalg.eigh(t)
    return theta, u[0] ** 2


class CountingScipy:
    """A SciPy LinearOperator wrapper that counts product columns."""

    def __init__(self, inner: Any):
        from scipy.sparse.linalg import LinearOperator

        self.count = 0

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x)
            self.count += 1 if x.ndim == 1 else x.shape[1]
            return inner.matmat(x.reshape(inner.shape[1], -1)).reshape(x.shape)

        self.op = LinearOperator(inner.shape, matvec=matmat, matmat=matmat, dtype=np.float64)


def eigsh_largest(scipy_op: Any, tol: float, seed: int = 0, maxiter: int | None = None) -> tuple[float, int]:
    """λ_max by ARPACK's implicitly restarted Lanczos (``which="LA"``), with a seeded start."""
    from scipy.sparse.linalg import eigsh

    counted = CountingScipy(scipy_op)
    v0 = np.random.default_rng(seed).standard_normal(scipy_op.shape[0])
    vals = eigsh(counted.op, k=1, which="LA", tol=tol, v0=v0, maxiter=maxiter, return_eigenvectors=False)
    return float(vals[0]), counted.count


# =============================================================================================
class Library:
    key = "?"
    label = "?"
    dist: str | None = None  # the PyPI distribution that must be installed
    module: str | None = None  # ... and the module it provides
    max_columns = 1  # columns one product call takes (1: one vector at a time)
    slq_note = ""
    lambda_method = ""
    lambda_settings: Sequence[Any] = ()
    lambda_setting_name = ""
    trace_method = ""

    @classmethod
    def version(cls) -> str | None:
        return _version(cls.dist) if cls.dist else "ours"

    @classmethod
    def unavailable(cls) -> str | None:
        if cls.module is None:
            return None
        try:
            importlib.import_module(cls.module)
        except ImportError as err:
            return f"not installed ({type(err).__name__}; the optional `bench` extra)"
        return None

    def setup(self, case: Case) -> None:
        raise NotImplementedError

    def product(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def slq(self, steps: int, probes: int, seed: int = 0, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def lambda_max(self, setting: Any) -> tuple[float, int]:
        raise NotImplementedError

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
class Hesslens(Library):
    key, label, dist, module = "hesslens", "hesslens", "hesslens", "hesslens"
    max_columns = 10
    slq_note = "all probes batched, full reorth., basis in the model dtype, float64 recurrences"
    lambda_method = "hl.eigenvalues (thick-restart block Lanczos)"
    lambda_settings = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
    lambda_setting_name = "tol"
    trace_method = "Hutch++"

    #: Choose the engine in ``setup`` (for the default 1,000 products: the main benchmark runs many jobs on one
    #: operator) rather than at the first product, for what the first estimator announces (a single job).
    choose_at_setup = True

    def setup(self, case: Case) -> None:
        import hesslens as hl

        self.hl = hl
        self.op = hl.HessianOperator(case.model, case.loss_fn, case.batch)
        if self.choose_at_setup:
            self.op.engine  # noqa: B018 - reading it makes the pending choice

    def product(self, v: torch.Tensor) -> torch.Tensor:
        # the peers' input: columns in the model's dtype (what hesslens's own default basis passes too,
        # float32 for a float32 model); benchmarks.product_parity times float64 columns beside it
        return self.op.torch_matmat(v.to(self.op.dtype))

    def slq(self, steps: int, probes: int, seed: int = 0, probe_batch: int | None = None, **kw: Any):
        sd = self.hl.spectral_density(self.op, steps=steps, probes=probes, seed=seed, probe_batch=probe_batch, progress=False)
        return sd.nodes, sd.weights

    def lambda_max(self, setting: float) -> tuple[float, int]:
        r = self.hl.eigenvalues(self.op, k=1, which="largest", tol=setting, seed=0, progress=False)
        return float(r.values[0]), int(r.matvecs)

    def reference_lambda(self, tol: float = 1e-9) -> tuple[float, int, bool]:
        r = self.hl.eigenvalues(self.op, k=1, which="largest", tol=tol, seed=1, progress=False)
        return float(r.values[0]), int(r.matvecs), bool(r.all_converged)

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        return float(self.hl.trace(self.op, num_matvecs=num_matvecs, method="hutch++", seed=seed).estimate)

    def reference_trace(self, exact_max_params: int = 12_000, matvecs: int = 3000, seed: int = 12345,
                        chunk: int = 256) -> dict[str, Any]:
        """The trace every library's estimates are scored against.

        Up to ``exact_max_params`` parameters it is exact: Σ_i (H e_i)_i from products with the
        identity in blocks of ``chunk`` columns (n products; the products in the model's dtype, the
        sum in float64). Above, it is a long seeded Hutch++ run of ``matvecs`` products, itself an
        estimate: its standard error is returned with it (``stderr``; 0 for the exact trace).
        """
        n = self.op.n
        if n <= exact_max_params:
            total = 0.0
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                rows, cols = torch.arange(start, stop), torch.arange(stop - start)
                e = torch.zeros(n, stop - start, dtype=torch.float64)
                e[rows, cols] = 1.0
                total += float(self.op.torch_matmat(e)[rows, cols].sum())
            return {"value": total, "exact": True, "stderr": 0.0, "products": n, "method": "exact"}
        r = self.hl.trace(self.op, num_matvecs=matvecs, method="hutch++", seed=seed)
        return {"value": float(r.estimate), "exact": False, "stderr": float(r.stderr), "products": int(r.matvecs),
                "method": "Hutch++", "seed": seed}


class ScipyOnHesslens(Library):
    """SciPy's ``eigsh`` (ARPACK) driven by the hesslens operator: the λ_max baseline of the issue."""

    key, label, dist = "eigsh", "SciPy eigsh on hesslens op", "scipy"
    lambda_method = "scipy eigsh(which='LA') on op.to_scipy()"
    lambda_settings = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
    lambda_setting_name = "tol"

    def __init__(self, hesslens: Hesslens):
        self.op = hesslens.op

    def lambda_max(self, setting: float) -> tuple[float, int]:
        return eigsh_largest(self.op.to_scipy(), setting)


# ---------------------------------------------------------------------------------------------
class Eigenthings(Library):
    key, label, dist, module = "eigenthings", "hessian-eigenthings", "hessian-eigenthings", "hessian_eigenthings"
    slq_note = "one probe at a time, full reorth. (Python loop)"
    lambda_method = "lanczos(which='LA'), no restarts"
    lambda_settings = (10, 15, 20, 30, 40, 60, 80, 120, 160)
    lambda_setting_name = "max_iter"
    trace_method = "Hutch++"

    def setup(self, case: Case) -> None:
        import hessian_eigenthings as he

        self.he = he
        self.op = he.HessianOperator(case.model, [case.batch], he.supervised_loss(case.loss_fn))

    def product(self, v: torch.Tensor) -> torch.Tensor:
        return self.op.matvec(v[:, 0])[:, None]

    def slq(self, steps: int, probes: int, seed: int = 0, **kw: Any):
        r = self.he.spectral_density(self.op, num_runs=probes, lanczos_steps=steps, seed=seed)
        return r.raw_eigenvalues.double().numpy(), r.raw_weights.double().numpy()

    def lambda_max(self, setting: int) -> tuple[float, int]:
        count = [0]

        def matvec(v: torch.Tensor) -> torch.Tensor:
            count[0] += 1
            return self.op.matvec(v)

        counted = self.he.LambdaOperator(matvec, self.op.size, self.op.device, self.op.dtype)
        r = self.he.lanczos(counted, k=1, max_iter=min(int(setting), self.op.size - 1), which="LA", seed=0)
        return float(r.eigenvalues[0]), count[0]

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        return float(self.he.trace(self.op, num_matvecs=num_matvecs, method="hutch++", seed=seed).estimate)


# ---------------------------------------------------------------------------------------------
class Curvlinops(Library):
    key, label, dist, module = "curvlinops", "curvlinops", "curvlinops-for-pytorch", "curvlinops"
    max_columns = 10
    slq_note = "its Papyan-2020 SLQ: one probe at a time, no reorth."
    lambda_method = "scipy eigsh(which='LA') on .to_scipy()"
    lambda_settings = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
    lambda_setting_name = "tol"
    trace_method = "Hutch++"

    def setup(self, case: Case) -> None:
        import curvlinops

        self.cl = curvlinops
        self.op = curvlinops.HessianLinearOperator(case.model, case.loss_fn, _flat_params(case), [case.batch],
                                                   progressbar=False, check_deterministic=True)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        return self.op @ v

    def slq(self, steps: int, probes: int, seed: int = 0, boundaries: tuple[float, float] | None = None, **kw: Any):
        from curvlinops.papyan2020traces.spectrum import lanczos_approximate_spectrum

        torch.manual_seed(seed)  # its probes come from the global generator
        # With boundaries given it skips its eigsh boundary estimate (extra products), so the work
        # is exactly num_repeats runs of ncv Lanczos steps. It returns only the smoothed curve.
        lanczos_approximate_spectrum(self.op, ncv=steps, num_repeats=probes, boundaries=boundaries)
        return None, None

    def lambda_max(self, setting: float) -> tuple[float, int]:
        return eigsh_largest(self.op.to_scipy(), setting)

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        torch.manual_seed(seed)  # hutchpp_trace (3.0.1) takes no generator: its probes come from the global one
        return float(self.cl.hutchpp_trace(self.op, num_matvecs=3 * (num_matvecs // 3)))


# ---------------------------------------------------------------------------------------------
class PyHessian(Library):
    key, label, dist, module = "pyhessian", "PyHessian", "PyHessian", "pyhessian"
    slq_note = "density() calls the removed torch.eig"
    lambda_method = "eigenvalues(): power iteration (largest magnitude)"
    lambda_settings = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
    lambda_setting_name = "tol"
    trace_method = "Hutchinson"
    power_max_iter = 1000

    def setup(self, case: Case) -> None:
        import sys

        from pyhessian import hessian

        ph_module = sys.modules["pyhessian.hessian"]  # the package re-exports the class under this name

        self._ph_module = ph_module
        self.h = hessian(case.model, case.loss_fn, data=case.batch, cuda=False)
        # Count products by wrapping the module-level function its methods call (behaviour unchanged).
        original = ph_module.hessian_vector_product
        self.count = 0

        def counted(gradsH, params, v):
            self.count += 1
            return original(gradsH, params, v)

        ph_module.hessian_vector_product = counted
        self._hvp = original

    def product(self, v: torch.Tensor) -> torch.Tensor:
        hv = self._hvp(self.h.gradsH, self.h.params, _split(v[:, 0], self.h.params))
        return torch.cat([h.reshape(-1) for h in hv])[:, None]

    def slq(self, steps: int, probes: int, seed: int = 0, **kw: Any):
        torch.manual_seed(seed)
        self.h.density(iter=steps, n_v=probes)
        return None, None

    def lambda_max(self, setting: float) -> tuple[float, int]:
        torch.manual_seed(0)  # its start vector comes from the global generator
        self.count = 0
        vals, _ = self.h.eigenvalues(maxIter=self.power_max_iter, tol=setting, top_n=1)
        return float(vals[0]), self.count

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        torch.manual_seed(seed)  # its Rademacher probes come from the global generator
        # tol=-inf: never stop early, so it spends exactly num_matvecs products (its default may stop after 2).
        return float(np.mean(self.h.trace(maxIter=num_matvecs, tol=-math.inf)))


# ---------------------------------------------------------------------------------------------
class PyHessianStyle(Library):
    """Our PyHessian-style SLQ: kept gradient graph, double backward, one probe at a time."""

    key, label, dist = "pyhessian_style", "PyHessian-style loop (ours)", None
    slq_note = "our loop: graph kept, one probe at a time, full reorth."

    def setup(self, case: Case) -> None:
        self.params = _flat_params(case)
        loss = case.loss_fn(case.model(case.inputs), case.targets)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def _hvp(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(self.grads, self.params, grad_outputs=v, retain_graph=True))

    def product(self, v: torch.Tensor) -> torch.Tensor:
        hv = self._hvp(_split(v[:, 0], self.params))
        return torch.cat([h.reshape(-1) for h in hv])[:, None]

    @staticmethod
    def _dot(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> float:
        return float(sum(torch.sum(x * y) for x, y in zip(xs, ys)))

    def slq(self, steps: int, probes: int, seed: int = 0, **kw: Any):
        gen = torch.Generator().manual_seed(seed)
        nodes, weights = [], []
        for _ in range(probes):
            v = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in self.params]
            norm = math.sqrt(self._dot(v, v))
            v = [x / norm for x in v]
            basis, alphas, betas = [v], [], []
            w = None
            for j in range(steps):
                if j > 0:
                    beta = math.sqrt(self._dot(w, w))
                    if beta < 1e-10:
                        break
                    betas.append(beta)
                    v = [x / beta for x in w]
                    basis.append(v)
                hv = self._hvp(v)
                alpha = self._dot(hv, v)
                alphas.append(alpha)
                w = [h - alpha * x for h, x in zip(hv, v)]
                if j > 0:
                    w = [x - betas[-1] * y for x, y in zip(w, basis[-2])]
                for b in basis:  # full reorthogonalisation, as PyHessian's density() does
                    c = self._dot(w, b)
                    w = [x - c * y for x, y in zip(w, b)]
            theta, wts = _tridiagonal_quadrature(alphas, betas)
            nodes.append(np.pad(theta, (0, steps - len(theta)), constant_values=theta[0]))
            weights.append(np.pad(wts, (0, steps - len(wts))))
        return np.array(nodes), np.array(weights)


LIBRARIES: dict[str, type[Library]] = {
    cls.key: cls for cls in (Hesslens, Eigenthings, Curvlinops, PyHessian, PyHessianStyle)
}
PEERS = ("eigenthings", "curvlinops", "pyhessian", "pyhessian_style")
