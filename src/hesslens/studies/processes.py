"""Which process is which, and workers that do not outlive their parent.

A PID alone does not identify a process: once a runner is gone, the kernel hands its PID to the next
process that asks, and a study database that trusted the PID would take that stranger for the live
owner of its ``running`` rows, skipping them forever. :func:`identity` pairs the PID with the
process's start time — on Linux field 22 of ``/proc/PID/stat`` (clock ticks since boot) with the boot
id, elsewhere ``psutil`` if installed or ``ps -o lstart=`` — so a recycled PID shows a different identity.

:func:`die_with_parent` makes a worker process exit when the process that started it dies, even by
SIGKILL (which gives the parent no chance to clean up): on Linux the kernel sends the worker SIGKILL
(``prctl(PR_SET_PDEATHSIG)``), and everywhere a watchdog thread exits the worker once its parent PID
changes (it is re-parented when the parent dies). A study's pool workers each hold a model and its
data — hundreds of MB — so an orphan is not a harmless leftover.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache

from ..outputs import pid_alive

__all__ = ["die_with_parent", "identity", "pid_alive"]

_PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _linux_identity(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has finished: it owns nothing
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 3 is fields[0], so field 22 (starttime) is fields[19]


def identity(pid: int) -> str | None:
    """A string naming process ``pid`` uniquely over time: ``None`` if no such (live) process exists,
    ``""`` if it exists but its start time cannot be read on this system (then only the PID is known)."""
    if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
        return _linux_identity(pid)
    if not pid_alive(pid):
        return None
    try:
        import psutil  # optional; never a dependency of hesslens

        return repr(psutil.Process(pid).create_time())
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=10,
                               check=False)
        return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None
    return ""


def _watch_parent(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int, *, use_prctl: bool = True, interval: float = 0.5) -> None:
    """Make this process exit as soon as process ``parent`` (its parent) dies; see the module docstring.

    Call it first thing in a worker (a pool initializer). ``use_prctl=False`` leaves only the
    watchdog thread, which checks every ``interval`` seconds (the fallback off Linux; tests use it).
    """
    if use_prctl and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, interval), daemon=True, name="hesslens-parent-watch").start()
