"""Progress bars for long loops: shown on a terminal, silent otherwise (tqdm with ``disable=None``).

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tqdm.auto import tqdm

#: The unit of bars over operator products: a rate reads "HVP/s" (Hessian-vector products per second).
PRODUCTS = "HVP"


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool | None = None, unit: str = "step") -> Iterator[tqdm]:
    """``enabled=None`` shows the bar only when stderr is a terminal; ``total=None`` is a counter
    without a total or an ETA, for work whose amount is not known in advance."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def product_bar(total: int | None, desc: str, enabled: bool | None = None):
    """A :func:`progress_bar` counting operator products (unit :data:`PRODUCTS`)."""
    return progress_bar(total, desc, enabled, unit=PRODUCTS)
