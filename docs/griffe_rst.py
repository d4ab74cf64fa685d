"""Griffe extension used by the docs build: read hesslens's reST-flavoured docstrings as Markdown.

The docstrings are NumPy-style with Sphinx roles and reST literals. Before mkdocstrings parses
them, three rewrites make them render as intended (nothing in ``src/`` changes):

* ``:class:`~a.b.C``` and the other Python roles become inline code (`` `C` ``; ``~`` keeps the last part);
* reST double-backtick literals become Markdown code, and a paragraph ending in ``::`` ends in ``:``;
* NumPy entries written ``name : description`` (description where the parser expects a type) in
  Parameters/Attributes sections become ``name`` with the description on the next line, indented;
  a closing paragraph after such a section (NumPy sections end only at the next header) is given
  a "Notes" header instead of being read as more parameters.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")
LITERAL = re.compile(r"``(.+?)``")
SECTIONS = ("Parameters", "Other Parameters", "Attributes")
ENTRY = re.compile(r"^([A-Za-z_*][\w*]*(?:, *[A-Za-z_*][\w*]*)*) : (.+)$")
NAME = re.compile(r"^[A-Za-z_*][\w*]*(?:, *[A-Za-z_*][\w*]*)*\s*$")
TYPE_LIKE = re.compile(r"[\w.\[\]|]+(?:\s*[,|]\s*[\w.\[\]]+)*(?:, optional)?")


def _role(match: re.Match) -> str:
    tilde, target, explicit = match.groups()
    if explicit:  # :func:`title <target>`
        return f"`{target.strip()}`"
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _entries(lines: list[str]) -> list[str]:
    out: list[str] = []
    section = None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) == {"-"} and line.strip():
            section = line.strip()
        elif line and not line[0].isspace() and section in SECTIONS:
            if i and not lines[i - 1].strip() and not NAME.match(line) and not ENTRY.match(line):
                # a closing paragraph: NumPy sections end only at the next header, so give it one
                out += ["Notes", "-----", line]
                section = "Notes"
                continue
            m = ENTRY.match(line)
            if m and not TYPE_LIKE.fullmatch(m.group(2).strip()):
                out += [m.group(1), "    " + m.group(2)]
                continue
        out.append(line)
    return out


def markdown_docstring(text: str) -> str:
    text = ROLE.sub(_role, text)
    text = LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.M)
    return "\n".join(_entries(text.split("\n")))


class RestToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
