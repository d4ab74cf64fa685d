"""The ``hesslens`` command line.

``hesslens analyze`` measures the curvature of a model's training loss and writes a report folder:

* with no options it trains the embedded default (:mod:`hesslens.defaults`, a small MLP on
  scikit-learn's bundled digits, a few seconds) and analyses it;
* with ``--model module:factory [--checkpoint file] --data module:function`` it analyses the
  user's own model: ``factory()`` returns the ``nn.Module`` (or the attribute is the module
  itself), ``--checkpoint`` is a ``state_dict`` saved with ``torch.save``, and ``function()``
  returns one ``(inputs, targets)`` batch, a list of batches or a DataLoader.

``--params PATTERN…`` restricts θ to the parameters whose ``named_parameters()`` names match one of
the fnmatch-style patterns (the ``params=`` of :class:`hesslens.HessianOperator`), and ``--k K --which
largest|smallest|both`` are the ``k`` and ``which`` of :func:`hesslens.eigenvalues`; all three are
recorded in the report's settings, and the report lists the values in the API's order.

``--layerwise/--no-layerwise`` (on by default) adds the layer-wise (local) Hessians: :func:`hesslens.layerwise`
on the same operator, every block's spectrum and metrics (``layerwise`` in ``summary.json``, ``layerwise.png``
and a section of the page; see :func:`hesslens.report.analysis.layerwise_options` for its settings).

``module`` is an importable module name (the current directory is searched first, as with
``python -m``) or a path to a ``.py`` file, resolved by :mod:`hesslens.loading`. Errors raised by
hesslens (bad data, a stochastic loss, a memory budget) are printed as one line and exit with
status 2, like usage errors.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_inputs import _AnalyzeCommand, _memory_budget, check_selection, load_data, load_model
from .errors import HesslensError

#: ``hesslens.eigenvalues(which=)`` choices, spelled out so that the CLI imports no torch before a
#: command needs it (``--status``, ``--version``); a test checks they equal ``linalg.eigen.WHICH``.
WHICH = ("largest", "smallest", "both")

LOSSES = ("cross_entropy", "mse")
MODES = ("eval", "train", "as_is")


class HesslensFailure(click.ClickException):
    """A hesslens error shown as ``Error: <one line>`` with exit status 2 (no traceback)."""

    exit_code = 2

    def __init__(self, error: BaseException):
        super().__init__(" ".join(str(error).split()) or type(error).__name__)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which compare as "in range" or
    satisfy a one-sided bound, and would then make a tolerance that never or always converges)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


#: Seeds go to ``torch.Generator.manual_seed`` (which overflows above 2**64 - 1) and NumPy; negative
#: seeds would wrap around silently.
SEED = click.IntRange(min=0, max=2**63 - 1)


# -- progress over the whole job -----------------------------------------------------------------
class _Steps:
    """One tqdm bar over the job's steps (on stderr, only on a terminal)."""

    def __init__(self, names: list[str], enabled: bool | None):
        from .progress import progress_bar

        self._cm = progress_bar(total=len(names), desc="hesslens analyze", enabled=enabled)
        self._bar = self._cm.__enter__()
        self._started = False

    def start(self, name: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str(name)

    def close(self) -> None:
        if self._started:
            self._bar.update(1)
        self._cm.__exit__(None, None, None)


# -- commands -------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hesslens")
def cli() -> None:
    """hesslens: Hessian eigenvalues, traces and spectral densities of PyTorch models."""


@cli.command(cls=_AnalyzeCommand)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("hesslens-report"),
              show_default=True, help="Report folder, replaced as a whole when the report is complete.")
@click.option("--model", "model_spec", metavar="MODULE:FACTORY",
              help="Your model: a factory returning an nn.Module (or the module object). Default: train the embedded digits MLP.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="A state_dict saved by torch.save, loaded into --model.")
@click.option("--data", "data_spec", metavar="MODULE:FUNCTION",
              help="Analysis data: a function returning an (inputs, targets) batch, a list of batches or a DataLoader.")
@click.option("--loss", type=click.Choice(LOSSES), default=None, help="Criterion for --model  [default: cross_entropy]")
@click.option("--mode", type=click.Choice(MODES), default="eval", show_default=True,
              help="eval, train (BatchNorm batch statistics), or as_is.")
@click.option("--params", "params", multiple=True, metavar="PATTERN...",
              help="Analyse only the parameters whose names (model.named_parameters()) match one of these "
              "fnmatch patterns, e.g. --params '2.*' or --params fc.weight fc.bias. Default: every trainable "
              "parameter.")
@click.option("--k", "k", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many extreme eigenvalues (at each end with --which both); below the number of "
              "selected parameters, at most half of it with both.")
@click.option("--which", "which", type=click.Choice(WHICH), default="both", show_default=True,
              help="largest: the k largest, descending; smallest: the k smallest, ascending; both: the k "
              "smallest ascending, then the k largest descending (as hesslens.eigenvalues).")
@click.option("--steps", type=click.IntRange(min=1), default=80, show_default=True, help="SLQ Lanczos steps (capped at the parameter count).")
@click.option("--probes", type=click.IntRange(min=1), default=10, show_default=True, help="SLQ random probes.")
@click.option("--trace-matvecs", type=click.IntRange(min=6), default=100, show_default=True, help="Hutch++ products for the trace.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of every random probe.")
@click.option("--tol", type=FiniteFloatRange(min=0, max=1, min_open=True, max_open=True), default=1e-6,
              show_default=True, help="Relative residual tolerance of the Lanczos eigenvalues (between 0 and 1).")
@click.option("--memory-budget", metavar="SIZE", callback=lambda ctx, param, value: _memory_budget(value),
              expose_value=False, help="Memory budget of every computation, e.g. 8G (sets HESSLENS_MEMORY_BUDGET; "
              "default: that variable, else a quarter of physical memory).")
@click.option("--layerwise/--no-layerwise", "layerwise", default=True, show_default=True,
              help="Also compute every layer's local Hessian H_ii (hesslens.layerwise on the same operator, "
              "with --steps, --probes, --seed and --trace-matvecs, lowered where they would cost more than "
              "half the main analysis's products): a table, layerwise.png and a report section.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only the report path.")
def analyze(out: Path, model_spec: str | None, checkpoint: str | None, data_spec: str | None, loss: str | None,
            mode: str, params: tuple[str, ...], k: int, which: str, steps: int, probes: int, trace_matvecs: int,
            seed: int, tol: float, layerwise: bool, quiet: bool) -> None:
    """Measure λ_max, λ_min, the trace and the spectral density of the loss Hessian; write a report.

    \b
    Without --model: train the embedded default (MLP on scikit-learn digits) and analyse it.
    With --model M:F --data M:G [--checkpoint FILE]: analyse your model on your data.
    --params PATTERN... restricts the analysis to some parameters; --k and --which
    choose the eigenvalues listed (λ_max and λ_min are always reported).
    --no-layerwise skips the per-block (layer-wise) Hessians.
    The report folder holds summary.json, density.png, hesd.png, layerwise.png
    (unless --no-layerwise) and report.html.
    """
    if model_spec is None:
        for given, name in ((data_spec, "--data"), (checkpoint, "--checkpoint")):
            if given is not None:
                raise click.UsageError(f"{name} needs --model MODULE:FACTORY (without --model the embedded default is used)")
        if loss not in (None, "cross_entropy"):
            raise click.UsageError("--loss applies to --model; the embedded default uses cross_entropy")
    elif data_spec is None:
        raise click.UsageError("--model needs --data MODULE:FUNCTION: the batches whose loss Hessian is analysed")
    from .report import OutputError, check_report_folder

    try:  # before any computation: a folder that cannot take the report fails now, not after the work
        check_report_folder(out)
    except OutputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--out'") from None
    try:
        with _friendly_warnings():
            files = _run(out, model_spec, checkpoint, data_spec, loss or "cross_entropy", mode, params, k, which,
                         steps, probes, trace_matvecs, seed, tol, quiet, layerwise)
    except HesslensError as exc:
        raise HesslensFailure(exc) from exc
    if files is None:  # a rank other than 0 of a torchrun launch: rank 0 writes the report
        return
    if quiet:
        click.echo(str(files.report_html))
        return
    click.echo(summary_table(files))


@contextlib.contextmanager
def _friendly_warnings():
    """Show hesslens's own warnings (an engine fallback, a budget) as one ``note:`` line on stderr,
    without the file and line a raw ``UserWarning`` carries; other warnings keep their usual form."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text.startswith("hesslens: "):
            click.echo("note: " + " ".join(text[len("hesslens: "):].split()), err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _run(out: Path, model_spec: str | None, checkpoint: str | None, data_spec: str | None, loss: str, mode: str,
         params: tuple[str, ...], k: int, which: str, steps: int, probes: int, trace_matvecs: int, seed: int,
         tol: float, quiet: bool, layerwise: bool = True):
    started = time.perf_counter()
    import torch
    from torch import nn

    from .operators import HessianOperator
    from .operators import distributed as shared
    from .report import STEPS, AnalysisSettings, analyze_operator, write_report

    # Under torchrun every rank runs this command on its shard of the data; rank 0 writes the report.
    joined = shared.init_from_environment("gloo")  # the CLI analyses on the CPU
    launched = shared.initialised()
    rank = torch.distributed.get_rank() if launched else 0

    settings = AnalysisSettings(seed=seed, steps=steps, probes=probes, trace_matvecs=trace_matvecs, tol=tol,
                                k=k, which=which, layerwise=layerwise)
    first = "train default model" if model_spec is None else "load model and data"
    progress = False if quiet or rank != 0 else None
    bar = _Steps([first, "build operator", *(STEPS if layerwise else STEPS[:-1]), "write report"], enabled=progress)
    timings: dict[str, float] = {}
    extra: dict[str, Any] = {}
    try:
        bar.start(first)
        t0 = time.perf_counter()
        if model_spec is None:
            from .defaults import analysis_data, build_model, default_problem

            # The untrained model has the trained one's parameter names and shapes: refuse --params and
            # --k before spending the training time.
            check_selection(build_model(), params, k, which)
            problem = default_problem()
            model, data, loss_fn = problem.model, problem.data, problem.loss_fn
            info = dict(problem.info)
            data_info = {"name": info.pop("dataset") + " (training split)"}
            # Saved with the report, in the same all-or-nothing move, so that it is never a stale model.
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            extra["model.pt"] = lambda path: torch.save(state, path)
            # How to re-analyse exactly this model with the --model path.
            info.update({"checkpoint": "model.pt", "factory": f"{build_model.__module__}:{build_model.__name__}",
                         "data_function": f"{analysis_data.__module__}:{analysis_data.__name__}"})
            timings["train"] = time.perf_counter() - t0
        else:
            model = load_model(model_spec, checkpoint)
            check_selection(model, params, k, which)
            data = load_data(data_spec)
            loss_fn = nn.CrossEntropyLoss() if loss == "cross_entropy" else nn.MSELoss()
            info = {"name": type(model).__name__, "factory": model_spec,
                    "parameters": sum(p.numel() for p in model.parameters())}
            if checkpoint is not None:
                info["checkpoint"] = str(checkpoint)
            data_info = {"name": data_spec}
            timings["load"] = time.perf_counter() - t0
        if launched:
            shared.broadcast_module(model)  # every rank analyses rank 0's model
            data = shared.shard(data)

        bar.start("build operator")
        t0 = time.perf_counter()
        try:
            op = HessianOperator(model, loss_fn, data, mode=mode, params=list(params) or None)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            # Almost always the user's model, data and --loss not fitting together (shapes, dtypes):
            # one line says which; the traceback stays available for debugging.
            # The operator names a raw failure of the loss (its cause is torch's error); the CLI adds
            # which --model, --data and --loss were combined.
            raw = exc.__cause__ if isinstance(exc, HesslensError) else exc
            if model_spec is None or not isinstance(raw, (RuntimeError, TypeError, ValueError, IndexError)) \
                    or os.environ.get("HESSLENS_TRACEBACK"):
                raise
            detail = str(exc) if isinstance(exc, HesslensError) else f"{type(exc).__name__}: {exc}"
            raise click.ClickException(
                f"evaluating the {loss} loss of --model {model_spec} on --data {data_spec} failed: "
                f"{' '.join(detail.split())} (set HESSLENS_TRACEBACK=1 for the traceback)"
            ) from exc
        timings["operator"] = time.perf_counter() - t0

        command = _command(model_spec, checkpoint, data_spec, loss, mode, params, k, which, steps, probes,
                           trace_matvecs, seed, tol, layerwise)
        summary = analyze_operator(op, settings, model_info=info, data_info=data_info,
                                   extra_settings={"loss": loss, "params": list(params) or None, "command": command,
                                                   **({"world_size": torch.distributed.get_world_size()} if launched else {})},
                                   timings=timings,
                                   progress=progress,
                                   on_step=bar.start)
        if rank != 0:
            return None
        bar.start("write report")
        return write_report(summary, out, started=started, extra=extra)
    finally:
        bar.close()
        if joined:
            torch.distributed.destroy_process_group()


def _command(model_spec: str | None, checkpoint: str | None, data_spec: str | None, loss: str, mode: str,
             params: tuple[str, ...], k: int, which: str, steps: int, probes: int, trace_matvecs: int, seed: int,
             tol: float, layerwise: bool = True) -> str:
    """The command line that repeats this analysis (recorded in the summary's settings)."""
    args = ["hesslens", "analyze"]
    if model_spec is not None:
        args += ["--model", model_spec, *(["--checkpoint", str(checkpoint)] if checkpoint else []),
                 "--data", str(data_spec), "--loss", loss]
    if params:
        args += ["--params", *params]
    args += ["--k", str(k), "--which", which, "--mode", mode, "--steps", str(steps), "--probes", str(probes),
             "--trace-matvecs", str(trace_matvecs), "--seed", str(seed), "--tol", repr(tol),
             "--layerwise" if layerwise else "--no-layerwise"]
    return shlex.join(args)


def summary_table(files: Any) -> str:
    """The few lines printed at the end of ``hesslens analyze`` (ASCII, safe on any terminal)."""
    from .render import fmt

    s = files.summary

    def eig(d: dict[str, Any]) -> str:
        return f"{fmt(d['value']):>14}   residual {fmt(d['residual'], 2)}{'' if d['converged'] else ', NOT converged'}"

    tr = s.trace
    selected = s.model.get("selected_parameters")
    of_total = f" of {fmt(s.model.get('parameters'))}" if selected and s.model.get("parameters") else ""

    def row(key: str, value: str) -> str:
        return f"  {key:<11}{value}"

    lines = [
        row("model", f"{s.model.get('name')}: {fmt(s.model.get('analysed_parameters'))}{of_total} parameters, "
                     f"{fmt(s.data.get('samples'))} samples"),
        *([row("params", ", ".join(selected))] if selected else []),
        row("lambda_max", eig(s.lambda_max)),
        row("lambda_min", eig(s.lambda_min)),
        *_requested_lines(s.eigen, eig),
        row("trace", f"{fmt(tr['estimate']):>14} +- {fmt(tr['stderr'], 3)} (1 s.e., {tr['method']}, "
                     f"{tr['matvecs']} products)"),
        *([row("hesd", f"{s.hesd['type']}" + ("" if s.hesd["decisive"] else " (weak)")
                     + f", C = {fmt(s.hesd['balance'], 3)}"
                     + (f", re = {fmt(s.hesd['criteria']['re'], 4)}, Kh = {fmt(s.hesd['criteria']['kh'], 4)}"
                        if s.hesd.get("criteria") else ", criteria not applicable")
                     + ("" if s.hesd["applicable"] or not s.hesd.get("criteria") else " (unreliable)"))]
          if s.hesd else []),
        *_layerwise_line(s.layerwise, row),
        row("engine", str(s.engine.get("name"))),
        row("time", f"{s.timings.get('total', float('nan')):.1f} s"),
        row("report", str(files.report_html)),
    ]
    return "\n".join(lines)


def _layerwise_line(entry: dict[str, Any], row: Callable[[str, str], str]) -> list[str]:
    """One line for the layer-wise table (``entry`` is the summary's ``layerwise``; nothing without one): the
    blocks, how many exact, the largest block λ_max and where, the smallest λ_min, how many carry warnings."""
    from .render import fmt

    rows = (entry or {}).get("table") or []
    if not rows:
        return []

    def finite(key: str) -> list[dict[str, Any]]:
        return [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]

    exact = sum(1 for r in rows if r.get("exact"))
    parts = [f"{len(rows)} block{'s' if len(rows) != 1 else ''} ({exact} exact)"]
    if top := finite("lambda_max"):
        r = max(top, key=lambda r: r["lambda_max"])
        parts.append(f"max lambda_max {fmt(r['lambda_max'], 4)} ({r['block']})")
    if low := finite("lambda_min"):
        r = min(low, key=lambda r: r["lambda_min"])
        parts.append(f"min lambda_min {fmt(r['lambda_min'], 4)} ({r['block']})")
    warned = sum(1 for r in rows if r.get("warnings"))
    parts.append(f"{warned} with warnings" if warned else "no warnings")
    return [row("layerwise", ", ".join(parts))]


def _requested_lines(e: dict[str, Any], eig: Callable[[dict[str, Any]], str]) -> list[str]:
    """The eigenvalues asked for with --k/--which (``e`` is the summary's ``eigen``), in
    hesslens.eigenvalues's order, which the first line states (nothing for k=1, which=both: the
    lambda_max and lambda_min lines are those two values)."""
    values = e.get("values") or []
    if not values or (e.get("k") == 1 and e.get("which") == "both"):
        return []
    order = str(e.get("order", "")).replace("λ_max", "lambda_max").replace("λ_min", "lambda_min")
    lines = [f"  {'eigen':<11}k={e.get('k')}, which={e.get('which')}, in this order: {order}"]
    lines += [f"    {v['end'] + ' #' + str(v['rank']):<11}{eig(v)}" for v in values]
    return lines


from .studies.cli import study  # noqa: E402  (the interface layer gathers its commands here)

cli.add_command(study)


def main() -> None:
    """Console-script entry point (``hesslens``)."""
    cli(prog_name="hesslens")


if __name__ == "__main__":  # pragma: no cover
    main()
