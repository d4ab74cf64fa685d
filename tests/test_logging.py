"""hesslens reports through logging and warnings, never with print.

Library convention: the ``hesslens`` logger carries a NullHandler, so nothing is shown (and no
"no handler" fallback fires) unless the application configures logging; modules log through
``logging.getLogger(__name__)``, inside the ``hesslens`` hierarchy.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

import hesslens
from hesslens.linalg.eigen import eigenvalues

SRC = Path(hesslens.__file__).parent
#: User-facing command-line output may print; the library may not.
CLI = {SRC / "cli.py"}


def test_hesslens_logger_has_a_null_handler():
    handlers = logging.getLogger("hesslens").handlers
    assert sum(isinstance(h, logging.NullHandler) for h in handlers) == 1


def test_null_handler_in_a_fresh_interpreter():
    """``import hesslens`` alone installs it, exactly once, whatever is imported after."""
    code = ("import logging, hesslens; import hesslens.progress, hesslens.linalg; hesslens.eigenvalues; "
            "print(sum(isinstance(h, logging.NullHandler) for h in logging.getLogger('hesslens').handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_module_loggers_are_in_the_hierarchy(caplog):
    a = np.diag(np.linspace(-1.0, 1.0, 200))
    with caplog.at_level(logging.DEBUG, logger="hesslens"):
        r = eigenvalues(a, k=1, progress=False)
    records = [rec for rec in caplog.records if rec.name == "hesslens.linalg.eigen"]
    assert records and f"after {r.matvecs} products" in records[-1].getMessage()


def test_no_print_calls_in_the_library():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path in CLI:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, f"print() in library code (use logging or warnings): {found}"
