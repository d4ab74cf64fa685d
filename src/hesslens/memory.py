"""One memory budget for every hesslens computation that allocates in proportion to the model.

Algorithms estimate their peak working memory *before* allocating it and compare it with the budget:

* ``max_bytes=`` on the call, if given (an int, or a size string such as ``"8G"``);
* otherwise the environment variable ``HESSLENS_MEMORY_BUDGET`` (bytes, or a number with a
  suffix ``K``, ``M``, ``G``, ``T``, optionally followed by ``B`` or ``iB``: all are powers of 1024,
  so ``8G`` = ``8GB`` = ``8GiB`` = 8·2³⁰ bytes);
* otherwise :data:`DEFAULT_FRACTION` (a quarter) of the physical memory, itself the smaller of the
  machine's RAM and a container (cgroup) limit. A quarter leaves room for the model, its data and
  the product engine's cache (``HessianOperator`` caches up to another quarter by default).

A computation that can be split (the probes of a spectral density, the probe columns of a trace)
is run in groups that fit; one that cannot refuses with :class:`~hesslens.errors.MemoryBudgetError`,
whose message carries the estimate in GiB, what it is for, the budget and where that came from,
and the setting to change. This module imports nothing of hesslens but its errors, so that the
operators and the algorithms can share it.
"""

from __future__ import annotations

import ctypes
import math
import numbers
import os
import re

from .errors import InvalidInputError, MemoryBudgetError

#: Environment variable overriding the default budget, in bytes (suffixes K, M, G, T accepted).
ENV_VAR = "HESSLENS_MEMORY_BUDGET"
#: Default budget as a fraction of physical memory.
DEFAULT_FRACTION = 0.25
#: Physical memory assumed when the operating system does not say.
FALLBACK_PHYSICAL_BYTES = 8 * 2**30

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e\+?(\d+))?\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def gib(nbytes: int) -> str:
    """``nbytes`` as "x.xx GiB" (the unit every budget message uses), with the bytes below 10 MiB."""
    text = f"{nbytes / 2**30:.2f} GiB"
    return text if nbytes >= 10 * 2**20 else f"{text} ({int(nbytes)} bytes)"


def physical_memory_bytes() -> int:
    """RAM of the machine, or the container's cgroup memory limit when that is smaller.

    Falls back to :data:`FALLBACK_PHYSICAL_BYTES` where the operating system reports neither.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = FALLBACK_PHYSICAL_BYTES
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:  # "max" or a huge sentinel means no limit
            total = int(text)
    return int(total) if total > 0 else FALLBACK_PHYSICAL_BYTES


def parse_bytes(value: str | int | float, name: str = "max_bytes") -> int:
    """A positive byte count from an int, a float, or a string such as ``"8G"``, ``"512MiB"``, ``"1e9"``.

    Suffixes K, M, G, T, P are powers of 1024 (with or without a trailing ``B``/``iB``). ``name`` is
    what the error message calls the value.

    >>> parse_bytes("8G") == 8 * 2**30, parse_bytes("512MiB") == 512 * 2**20, parse_bytes("1e9")
    (True, True, 1000000000)
    """
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number of bytes, got {value!r}")
    if isinstance(value, numbers.Real):
        nbytes = float(value)
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise InvalidInputError(f"{name}={value!r} is not a size: give bytes or a number with a suffix "
                                    f"K, M, G or T (powers of 1024), e.g. 8G")
        mantissa, exponent, unit = match.groups()
        nbytes = float(mantissa) * 10.0 ** int(exponent or 0) * _UNITS[unit.lower()]
    else:
        raise InvalidInputError(f"{name} must be a number of bytes or a size string such as '8G', got {value!r}")
    if not (math.isfinite(nbytes) and nbytes >= 1):
        raise InvalidInputError(f"{name} must be a positive, finite number of bytes, got {value!r}")
    return int(nbytes)


def default_budget() -> int:
    """The budget when no ``max_bytes=`` is given: ``$HESSLENS_MEMORY_BUDGET``, else a quarter of
    :func:`physical_memory_bytes`. Read at every call, so the variable can be changed at run time."""
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        return parse_bytes(text, ENV_VAR)
    return int(DEFAULT_FRACTION * physical_memory_bytes())


def budget(max_bytes: str | int | float | None = None) -> int:
    """The budget in bytes: ``max_bytes`` if given (validated), else :func:`default_budget`."""
    return default_budget() if max_bytes is None else parse_bytes(max_bytes)


def _source(max_bytes: str | int | float | None) -> str:
    if max_bytes is not None:
        return f"max_bytes={max_bytes!r}"
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        return f"{ENV_VAR}={text}"
    return f"default: {DEFAULT_FRACTION:g} of {gib(physical_memory_bytes())} physical memory"


def estimate(*shape: int, itemsize: int = 8) -> int:
    """Bytes of an array of ``shape`` (float64 unless ``itemsize`` says otherwise)."""
    return int(itemsize * math.prod(int(s) for s in shape))


def refuse(need: int, what: str, max_bytes: str | int | float | None = None, *, advice: str = "") -> None:
    """Raise :class:`MemoryBudgetError`: ``what`` needs ``need`` bytes, above the budget."""
    limit = budget(max_bytes)
    hint = f"{advice}; or " if advice else ""
    raise MemoryBudgetError(
        f"{what} needs about {gib(need)}, above the memory budget of {gib(limit)} ({_source(max_bytes)}): "
        f"{hint}raise max_bytes= or set {ENV_VAR} (bytes, or e.g. 16G) if the machine has the memory"
    )


def check(need: int, what: str, max_bytes: str | int | float | None = None, *, advice: str = "") -> int:
    """Refuse (see :func:`refuse`) unless ``need`` bytes fit the budget; returns the budget.

    ``what`` names the allocation, e.g. "a dense 20000×20000 float64 matrix (plus one working copy)";
    ``advice`` suggests a cheaper request, e.g. "lower k".
    """
    limit = budget(max_bytes)
    if need > limit:
        refuse(need, what, max_bytes, advice=advice)
    return limit


def items_that_fit(per_item: int, count: int, fixed: int = 0, max_bytes: str | int | float | None = None, *,
                   what: str, advice: str = "") -> int:
    """How many of ``count`` items of ``per_item`` bytes fit next to ``fixed`` bytes, at least one:
    where not even one fits, refuse (see :func:`refuse`) with ``fixed + per_item`` as the need of
    ``what`` (the work done with a single item)."""
    room = budget(max_bytes) - fixed
    fit = int(max(0, min(count, room // max(1, per_item))))
    if fit == 0:
        refuse(fixed + per_item, what, max_bytes, advice=advice)
    return fit


def release_freed_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc's ``malloc_trim(0)``).

    Freed tensors stay resident in the C allocator's arenas, where later allocations reuse them but
    nothing else can: after a large cache is dropped (a linearisation built for the engine trial and
    not chosen holds 3–18× the bytes of one gradient's saved tensors; ``benchmarks.linearize_cache``)
    the process would keep its peak for the rest of the analysis. Returns whether any memory was
    returned; a no-op (False) where the C library is not glibc.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
