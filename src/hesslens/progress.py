"""Progress bars for long loops: shown on a terminal, silent otherwise (tqdm's rule for ``disable=None``).

A bar's total is the work the loop will do, never a cap it may stop far short of. The numerical
routines count operator products (Hessian-vector products on a Hessian), in the unit
:data:`PRODUCTS`, so their rate reads as products per second:

* work known in advance (SLQ, trace estimation): the total is the number of products, lowered
  when a Lanczos recurrence stops early (invariant subspace), so a finished bar is full;
* work not known in advance (restarted Lanczos for eigenvalues, which stops on convergence): no
  total and no ETA, a counter of products with its rate and the convergence so far as a postfix.

Messages go through ``logging.getLogger(__name__)`` (the ``hesslens`` logger carries a
:class:`logging.NullHandler`, added in ``hesslens/__init__.py``), never prints; an application shows
them by configuring logging, e.g. ``logging.basicConfig(level=logging.DEBUG)``.

A bar that would not show is not built: the first tqdm of a process starts tqdm's monitor thread
(about 1 ms, paid again whenever every bar has closed), a visible part of one λ_max in a fresh process.
Such loops get a :class:`QuietBar`, which counts and otherwise does nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

#: The unit of bars over operator products: a rate reads "HVP/s" (Hessian-vector products per second).
PRODUCTS = "HVP"


class QuietBar:
    """The part of tqdm's interface hesslens's loops use, for a bar that is not shown: it keeps the
    count (``n``) and the ``total`` and draws nothing. ``disable`` is True, as on a disabled tqdm."""

    disable = True

    def __init__(self, total: int | None = None) -> None:
        self.total, self.n = total, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def shown(enabled: bool | None) -> bool:
    """Whether a bar is drawn: ``enabled`` if given, else whether stderr is a terminal (tqdm's rule for
    ``disable=None``, applied to the stream its bars write to)."""
    if enabled is not None:
        return bool(enabled)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool | None = None, unit: str = "step") -> Iterator[Any]:
    """A tqdm bar where :func:`shown`, else a :class:`QuietBar`; ``total=None`` is a counter without
    a total or an ETA, for work whose amount is not known in advance."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=False, leave=False) if shown(enabled) else QuietBar(total)
    try:
        yield bar
    finally:
        bar.close()


def product_bar(total: int | None, desc: str, enabled: bool | None = None):
    """A :func:`progress_bar` counting operator products (unit :data:`PRODUCTS`)."""
    return progress_bar(total, desc, enabled, unit=PRODUCTS)
