"""What a run function gets as its second argument: which run it is (configuration key, seed, attempt),
a folder of its own, and a place to save arrays and tables with its record.

Artifacts saved here are kept in memory, already encoded (:mod:`.artifacts`), and handed to the
runner with the run's outcome, which stores them in the same transaction as the record — never
before the run has finished, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import Artifact, encode, run_folder


@dataclass(frozen=True)
class RunContext:
    """Run ``run(config, ctx)`` to get one.

    Attributes:
        study: the study's name.
        run_key: the configuration's key (the same for every seed of it).
        attempt: 1 on the first try, 2 after a failure or an interruption, ...
        out: the study's output folder.
        seed: the replicate seed of this run (also in ``config.seed`` when the config has that field).
    """

    study: str
    run_key: str
    attempt: int
    out: Path
    seed: int = 0
    _saved: dict[str, Artifact] = field(default_factory=dict, repr=False, compare=False)

    @property
    def artifacts(self) -> Path:
        """``OUT/runs/<run_key>-seed<seed>``: a folder for files (checkpoints) a run keeps itself."""
        return self.out / "runs" / run_folder(self.run_key, self.seed)

    def artifact_dir(self) -> Path:
        """:attr:`artifacts`, created."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts

    def save_artifact(self, name: str, obj: Any) -> None:
        """Store ``obj`` (a NumPy array, a pandas DataFrame or a JSON-able dict) with this run's record.

        Encoded now, so a bad object raises here; saving a name again replaces it. Read it back with
        :meth:`hesslens.studies.Store.artifacts`; it is exported as ``OUT/artifacts/<run>/<name>.*``.
        """
        self._saved[name] = encode(name, obj)

    def saved_artifacts(self) -> list[Artifact]:
        return list(self._saved.values())
