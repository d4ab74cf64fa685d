"""The documentation site builds with warnings as errors, and every Python example on it runs.

Examples are the ```python fenced blocks of docs/**/*.md (indented ones included). A block opts out
only with the marker ``<!-- not-run: reason -->`` on the line before its fence; opted-out blocks are
listed with their reasons (use it only for blocks that need the network or hours of compute).
Each page's blocks run in order, in one fresh interpreter whose working directory is the repository
root, so that pages may read repository files by relative path.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
PAGE_TIMEOUT = 300  # seconds per page; the examples are meant to take seconds

needs_mkdocs = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "mkdocstrings_handlers.python", "material")),
    reason="the docs extra is not installed (bash scripts/setup.sh docs)")


def examples(page: Path) -> tuple[list[str], list[str]]:
    """The page's runnable python blocks (dedented) and the reasons of the opted-out ones."""
    text = page.read_text()
    run, skipped = [], []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        opt_out = NOT_RUN.search(before)
        if opt_out:
            skipped.append(opt_out.group("reason"))
            continue
        indent = m.group("indent")
        run.append("\n".join(line[len(indent):] if line.startswith(indent) else line
                             for line in m.group("body").split("\n")))
    return run, skipped


PAGES = sorted(p for p in DOCS.rglob("*.md") if examples(p)[0])


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_examples_are_found_and_opt_outs_listed():
    counts = {str(p.relative_to(DOCS)): examples(p) for p in sorted(DOCS.rglob("*.md"))}
    skipped = {page: reasons for page, (_, reasons) in counts.items() if reasons}
    total = sum(len(run) for run, _ in counts.values())
    print(f"{total} python examples on {len(PAGES)} pages; skipped: "
          + (", ".join(f"{page}: {r}" for page, reasons in skipped.items() for r in reasons) or "none"))
    assert total >= 10
    assert all(reason.strip() for reasons in skipped.values() for reason in reasons)


@needs_mkdocs
def test_site_builds_strict(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    cli_page = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "--trace-matvecs" in cli_page and "--executor" in cli_page  # the rendered help of both commands
    assert "hesslens.eigenvalues" in (tmp_path / "site" / "api" / "core" / "index.html").read_text()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(page, tmp_path):
    blocks, _ = examples(page)
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(f"# --- {page.relative_to(ROOT)}, example {i + 1}\n{b}" for i, b in enumerate(blocks)))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=PAGE_TIMEOUT, env=env)
    assert done.returncode == 0, f"{page.relative_to(ROOT)}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def test_cli_page_matches_the_cli():
    """The hook renders the same help as the installed command prints."""
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    from click.testing import CliRunner

    from hesslens.cli import cli

    for words in (["analyze"], ["study"]):
        shown = hooks.command_help(words)
        printed = CliRunner().invoke(cli, [*words, "--help"], prog_name="hesslens",
                                  terminal_width=hooks.WIDTH).output
        assert shown.split() == printed.split()
