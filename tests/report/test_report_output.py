"""Report folders are written whole or not at all, and only inside themselves (hesslens.outputs).

Each fault below is one a user meets: a symbolic link planted in the folder, files that are not a
report's, a folder that cannot be written, an error or Ctrl-C half-way through writing, a process killed
between two renames. Each test checks that what was there before is byte-for-byte still there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hesslens.report import REPORT_FILES, OutputError, check_report_folder, write_report
from hesslens.report import analysis as analysis_module
from hesslens import outputs as output

from ._summaries import make_summary


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def previous(tmp_path):
    """A report folder holding a complete earlier report (and the files a default run adds)."""
    out = tmp_path / "r"
    write_report(make_summary(name="previous"), out, extra={"model.pt": lambda p: p.write_bytes(b"old model")})
    return out


def _no_leftovers(out: Path) -> None:
    names = [p.name for p in out.parent.iterdir()]
    assert not [n for n in names if "hesslens-" in n], names


def test_a_report_is_written_whole_with_the_usual_permissions(tmp_path):
    out = tmp_path / "new" / "r"
    files = write_report(make_summary(), out)
    assert sorted(_snapshot(out)) == ["density.png", "hesd.png", "report.html", "summary.json"]
    assert files.summary_json == out / "summary.json" and files.report_html.read_text().startswith("<!DOCTYPE html>")
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask  # not the 0700 of a temporary folder
    _no_leftovers(out)


def test_rewriting_replaces_the_whole_report_stale_files_included(previous):
    write_report(make_summary(name="second"), previous)
    files = _snapshot(previous)
    assert sorted(files) == ["density.png", "hesd.png", "report.html", "summary.json"]  # the old model.pt is not left
    assert b"second" in files["report.html"] and b"previous" not in files["report.html"]
    _no_leftovers(previous)


@pytest.mark.parametrize("fault", [RuntimeError("figure writer failed"), KeyboardInterrupt(), OSError(28, "full")])
def test_an_error_or_ctrl_c_mid_write_leaves_the_previous_report_whole(previous, monkeypatch, fault):
    before = _snapshot(previous)

    def half_written_page(summary, path, png_path=None, hesd_png_path=None, layerwise_png_path=None):
        Path(path).write_text("<!DOCTYPE html><html><body>trunc")  # a truncated file, then the fault
        raise fault

    monkeypatch.setattr(analysis_module, "write_html", half_written_page)
    expected = OutputError if isinstance(fault, OSError) else type(fault)
    with pytest.raises(expected) as info:
        write_report(make_summary(name="interrupted"), previous)
    if isinstance(fault, OSError):
        assert "the previous report, if any, is unchanged" in str(info.value)
    assert _snapshot(previous) == before
    _no_leftovers(previous)


def test_a_symlink_in_the_folder_is_refused_and_its_target_untouched(previous, tmp_path):
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    (previous / "summary.json").unlink()
    (previous / "summary.json").symlink_to(Path("..") / "outside" / "victim.txt")
    for attempt in (check_report_folder, lambda out: write_report(make_summary(), out)):
        with pytest.raises(OutputError, match=r"summary.json' is a symbolic link \(to '../outside/victim.txt'\)"):
            attempt(previous)
    assert victim.read_text() == "precious" and (previous / "summary.json").is_symlink()


def test_a_symlinked_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OutputError, match="is a symbolic link"):
        write_report(make_summary(), tmp_path / "link")
    assert list(real.iterdir()) == []


def test_a_folder_with_other_files_is_refused_not_emptied(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "data").mkdir()
    with pytest.raises(OutputError, match=r"holds files that are not part of a hesslens report \(data/, notes.txt\)"):
        write_report(make_summary(), out)
    assert sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_current_directory_and_the_root_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="current directory"):
        check_report_folder(".")
    with pytest.raises(OutputError, match="current directory"):
        check_report_folder(tmp_path.parent)
    with pytest.raises(OutputError, match="root of the file system"):
        check_report_folder("/")


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_report_folder(tmp_path / "taken")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where nobody may create folders")
def test_an_unwritable_place_is_refused_before_anything_is_created():
    with pytest.raises(OutputError, match=r"cannot write report folder '/proc/hesslens-report/r' \(it would be "
                                          r"created in '/proc'\)"):
        check_report_folder("/proc/hesslens-report/r")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(previous):
    before = _snapshot(previous)
    previous.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write report folder"):
            check_report_folder(previous)
        with pytest.raises(OutputError):
            write_report(make_summary(), previous)
    finally:
        previous.chmod(0o755)
    assert _snapshot(previous) == before


def test_without_an_atomic_exchange_the_two_rename_swap_is_used(previous, monkeypatch):
    monkeypatch.setattr(output, "_exchange", lambda a, b: False)
    write_report(make_summary(name="swapped"), previous)
    assert b"swapped" in (previous / "report.html").read_bytes() and "model.pt" not in _snapshot(previous)
    _no_leftovers(previous)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_writer_are_cleaned_and_a_moved_aside_report_put_back(previous, tmp_path):
    dead = _dead_pid()
    stage = tmp_path / f".r.hesslens-stage-{dead}-abc123"
    stage.mkdir()
    (stage / "summary.json").write_text("{half")
    # Killed between the two renames of the fallback swap: the old report moved aside, nothing at r.
    before = _snapshot(previous)
    aside = tmp_path / f".r.hesslens-old-{dead}-abc123"
    previous.rename(aside)
    alive = tmp_path / f".r.hesslens-stage-{os.getpid()}-zzz"  # a live writer's folder is left alone
    alive.mkdir()
    output._sweep(tmp_path, ".r.", previous)
    assert _snapshot(previous) == before and not stage.exists() and not aside.exists() and alive.exists()


def test_ctrl_c_during_the_renames_is_delivered_after_them():
    # Python's own Ctrl-C handler, whatever an earlier test or library in this worker left installed;
    # raise_signal delivers to this thread at once (a process-wide kill may land on another thread)
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    moved = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with output._signals_deferred():
                signal.raise_signal(signal.SIGINT)
                moved.append("first")  # would not run if the interrupt struck here
                moved.append("second")
        assert moved == ["first", "second"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, found)


def test_entries_staged_into_a_shared_folder(tmp_path):
    """The study's way: a few entries of a folder replaced together, the rest of it left alone."""
    out = tmp_path / "study"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "old.png").write_bytes(b"old")
    (out / "study.sqlite").write_bytes(b"db")
    (out / "report.md").write_text("old report")
    with output.staged_folder(out, whole=False, last=("report.md",)) as stage:
        (stage / "figures").mkdir()
        (stage / "figures" / "new.png").write_bytes(b"new")
        (stage / "report.md").write_text("new report")
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["new.png"]
    assert (out / "report.md").read_text() == "new report" and (out / "study.sqlite").read_bytes() == b"db"
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.md", "study.sqlite"]

    (out / "report.md").unlink()
    (out / "report.md").symlink_to(tmp_path / "victim")
    (tmp_path / "victim").write_text("precious")
    with pytest.raises(OutputError, match="report.md' is a symbolic link"):
        with output.staged_folder(out, whole=False) as stage:
            (stage / "figures").mkdir()
            (stage / "report.md").write_text("through the link?")
    assert (tmp_path / "victim").read_text() == "precious"
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["new.png"]  # nothing moved at all
    for bad in ("../escape", "a/b", ".."):
        with pytest.raises(OutputError, match="not a plain name"):
            output.check_folder(out, whole=False, entries=[bad])


def test_report_files_are_the_ones_written():
    assert set(REPORT_FILES) == {"summary.json", "density.png", "hesd.png", "layerwise.png", "report.html", "model.pt"}
    with pytest.raises(Exception, match="extra files must be among"):
        write_report(make_summary(), "unused", extra={"notes.txt": lambda p: None})


def test_a_folder_with_layerwise_png_is_a_report_and_foreign_files_are_still_refused(tmp_path):
    """layerwise.png is one of a report's files: a folder holding it (a report written with the layer-wise
    table) is replaced, without it by a --no-layerwise report; anything else beside it is still refused."""
    out = tmp_path / "r"
    write_report(make_summary(name="previous"), out)
    (out / "layerwise.png").write_bytes(b"\x89PNG\r\n\x1a\nold")
    check_report_folder(out)
    write_report(make_summary(name="second"), out)
    assert sorted(_snapshot(out)) == ["density.png", "hesd.png", "report.html", "summary.json"]  # no stale figure
    (out / "layerwise.png").write_bytes(b"\x89PNG\r\n\x1a\nold")
    (out / "layerwise.svg").write_text("<svg/>")
    before = _snapshot(out)
    with pytest.raises(OutputError, match=r"not part of a hesslens report \(layerwise.svg\)"):
        check_report_folder(out)
    with pytest.raises(OutputError, match="layerwise.svg"):
        write_report(make_summary(), out)
    assert _snapshot(out) == before
