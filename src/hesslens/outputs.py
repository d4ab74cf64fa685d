"""Output folders written whole or not at all, and only inside the folder asked for.

Every file hesslens writes for a person — an analysis report, a study's report and its exported
tables — goes through :func:`staged_folder`: the files are written into a private staging folder and
moved into place only once all of them exist, so an exception, Ctrl-C or a full disk half-way leaves
the previous files exactly as they were. Two ways of moving them:

* ``whole=True`` — the folder *is* the output (``hesslens analyze --out``): the staging folder is
  made beside it (``.NAME.hesslens-stage-PID-…``) and replaces it in one atomic exchange (Linux
  ``renameat2(RENAME_EXCHANGE)``; two renames elsewhere). A reader sees the old report or the new one,
  never a mixture. Because the whole folder is replaced, it may hold only the files hesslens writes
  there (``owned``); anything else is refused rather than deleted.
* ``whole=False`` — a few entries of a folder that holds other things (a study's ``report.md``,
  ``report.html``, ``figures/`` and ``results.csv`` next to its database): the staging folder is made
  inside it and each staged entry is renamed over its old version. SIGINT, SIGTERM and SIGHUP are
  held back for those few renames, so Ctrl-C leaves the old set or the new set.

Rules, checked by :func:`check_folder` before any computation (so a bad folder fails in a second, not
after an hour) and again right before the move: no entry to be replaced may be a symbolic link (a write
through it would land outside the folder; replacing it would silently drop the user's link), and in
``whole`` mode neither may the folder itself; names may not climb out of the folder; and the folder
(or the nearest existing ancestor it would be created in) must be writable, which is probed by really
creating and removing an empty folder there, so read-only mounts and permissions are both caught.

Staging folders left behind by a process killed with SIGKILL are removed by the next writer (their
names carry the PID of the process that made them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import InvalidInputError

_STAGE = "hesslens-stage"
_OLD = "hesslens-old"


class OutputError(InvalidInputError):
    """An output folder that cannot be written safely; the message names the path and what to do."""


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (possibly owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


# -- checks ---------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def _probe_writable(folder: Path, what: str, dest: Path) -> None:
    """Create and remove an empty folder in ``folder``: the only test that read-only mounts, ACLs and
    permissions all answer truthfully (``os.access`` says yes to root on a read-only bind mount)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{_STAGE}-probe-", dir=folder))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = "" if folder == dest else f" (it would be created in {str(folder)!r})"
        raise OutputError(f"cannot write {what} {str(dest)!r}{where}: {reason.lower()}; choose another folder "
                          "or make it writable") from None


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _check_entry(dest: Path, name: str, what: str) -> None:
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise OutputError(f"refusing to write {name!r}: not a plain name inside {what} {str(dest)!r}")
    path = dest / name
    if path.is_symlink():
        raise OutputError(f"{str(path)!r} is a symbolic link (to {_link_target(path)!r}); hesslens writes only "
                          f"regular files inside {what} {str(dest)!r} and will not follow or replace a link: "
                          "remove the link or choose another folder")
    if path.is_dir():
        for root, dirs, files in os.walk(path):  # a replaced folder must not hide links either
            for sub in (*dirs, *files):
                inner = Path(root) / sub
                if inner.is_symlink():
                    raise OutputError(f"{str(inner)!r} is a symbolic link (to {_link_target(inner)!r}) inside "
                                      f"{what} {str(dest)!r}; remove the link or choose another folder")


def check_folder(dest: str | Path, *, whole: bool, entries: Iterable[str] = (), owned: Sequence[str] = (),
                 what: str = "output folder") -> Path:
    """Refuse ``dest`` now, with a message naming the path, if writing ``entries`` into it could not be
    done safely later (see the module docstring); creates nothing. Returns ``dest`` as a Path.

    ``whole``: the folder is replaced as a whole and may hold only ``owned`` names. ``entries``: the
    names that will be replaced inside it (``whole=False``).
    """
    dest = Path(dest)
    if dest.is_symlink() and whole:
        raise OutputError(f"{what} {str(dest)!r} is a symbolic link (to {_link_target(dest)!r}); hesslens "
                          "replaces the folder itself, so give the real folder instead of the link")
    if os.path.lexists(dest) and not dest.is_dir():
        raise OutputError(f"{what} {str(dest)!r} exists and is not a directory")
    if whole:
        real = dest.resolve()
        if real.parent == real:
            raise OutputError(f"{what} {str(dest)!r} is the root of the file system; give a folder of its own")
        cwd = Path.cwd().resolve()
        if real == cwd or real in cwd.parents:
            raise OutputError(f"{what} {str(dest)!r} is (or contains) the current directory; hesslens replaces "
                              "the whole folder, so give a folder of its own (e.g. hesslens-report)")
    if dest.is_dir():
        if whole:
            names = sorted(os.listdir(dest))
            for name in names:
                if name in owned:
                    _check_entry(dest, name, what)
            foreign = [n + ("/" if (dest / n).is_dir() else "") for n in names
                       if (n not in owned or (dest / n).is_dir()) and not n.startswith(f".{_STAGE}-probe-")]
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise OutputError(f"{what} {str(dest)!r} holds files that are not part of a hesslens report "
                                  f"({shown}); hesslens replaces the whole folder, so choose a new or empty "
                                  f"folder (it may hold only {', '.join(owned)})")
        else:
            for name in entries:
                _check_entry(dest, name, what)
        _probe_writable(dest, what, dest)
    # A whole folder is staged next to it; a new folder is created in its nearest existing ancestor.
    parent = _nearest_existing(dest.parent if whole or not dest.exists() else dest)
    if parent != dest:
        _probe_writable(parent, what, dest)
    return dest


# -- moving into place ----------------------------------------------------------------------------
@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back for a few renames, then deliver them as they would have been.

    Python runs signal handlers in the main thread between bytecodes, so replacing the handlers there
    (rather than masking the signals, which another thread could still receive) is what keeps a
    KeyboardInterrupt out of the middle of the renames.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None or signal.getsignal(sig) is None:  # a handler installed outside Python: leave it
            continue
        previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # e.g. a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(new: Path, dest: Path, old: Path) -> None:
    """Put ``new`` at ``dest``; whatever was at ``dest`` ends up at ``new`` (exchange) or ``old``."""
    if not os.path.lexists(dest):
        os.rename(new, dest)
    elif new.is_dir() and dest.is_dir():
        if not _exchange(new, dest):
            os.rename(dest, old)
            try:
                os.rename(new, dest)
            except BaseException:
                os.rename(old, dest)
                raise
    else:
        os.replace(new, dest)


def _sweep(folder: Path, prefix: str, dest: Path | None = None) -> None:
    """Remove staging folders in ``folder`` left by dead processes; put back an old report (``dest``)
    that a two-rename swap, killed between its renames, had moved aside."""
    pattern = re.compile(rf"{re.escape(prefix)}({_STAGE}|{_OLD})-(\d+)-[a-z0-9_]+")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        found = pattern.fullmatch(name)
        path = folder / name
        if found is None or pid_alive(int(found[2])) or path.is_symlink() or not path.is_dir():
            continue
        if found[1] == _OLD and dest is not None and not os.path.lexists(dest):
            with contextlib.suppress(OSError):
                os.rename(path, dest)
                continue
        shutil.rmtree(path, ignore_errors=True)


def _mode_for_new_folder() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


@contextlib.contextmanager
def staged_folder(dest: str | Path, *, whole: bool, owned: Sequence[str] = (), last: Sequence[str] = (),
                  what: str = "output folder") -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends normally, move what was written there into
    ``dest`` (see the module docstring); when it raises (or is interrupted), delete it and leave
    ``dest`` untouched.

    ``owned`` (``whole=True``): the names ``dest`` may already hold. ``last`` (``whole=False``): entries
    moved after all the others (a report's page, so that it never links figures not yet in place).
    """
    dest = Path(dest)
    check_folder(dest, whole=whole, owned=owned, what=what)
    pid = os.getpid()
    if whole:
        dest.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{dest.name}."
        _sweep(dest.parent, prefix, dest)
        stage = Path(tempfile.mkdtemp(prefix=f"{prefix}{_STAGE}-{pid}-", dir=dest.parent))
        os.chmod(stage, (os.stat(dest).st_mode & 0o7777) if dest.is_dir() else _mode_for_new_folder())
    else:
        dest.mkdir(parents=True, exist_ok=True)
        prefix = "."
        _sweep(dest, prefix)
        stage = Path(tempfile.mkdtemp(prefix=f".{_STAGE}-{pid}-", dir=dest))
    try:
        yield stage
        if whole:
            check_folder(dest, whole=True, owned=owned, what=what)  # it may have changed meanwhile
            old = dest.parent / f"{prefix}{_OLD}-{pid}-{stage.name.rsplit('-', 1)[-1]}"
            with _signals_deferred():
                _swap_in(stage, dest, old)
            shutil.rmtree(old if os.path.lexists(old) else stage, ignore_errors=True)
        else:
            names = sorted(os.listdir(stage), key=lambda n: (n in last, last.index(n) if n in last else 0, n))
            check_folder(dest, whole=False, entries=names, what=what)
            with _signals_deferred():
                for name in names:
                    _swap_in(stage / name, dest / name, stage / f".{_OLD}-{name}")
    finally:
        if os.path.lexists(stage):
            shutil.rmtree(stage, ignore_errors=True)
