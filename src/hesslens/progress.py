"""Progress bars for long loops: shown on a terminal, silent otherwise (tqdm with ``disable=None``)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from tqdm.auto import tqdm


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool | None = None, unit: str = "step") -> Iterator[tqdm]:
    """``enabled=None`` shows the bar only when stderr is a terminal."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled, leave=False)
    try:
        yield bar
    finally:
        bar.close()
