"""The one renderer of tables and pages, for ``hesslens analyze`` and every study.

* :func:`fmt` — a value for people: ``digits`` significant digits, ints with thousands separators,
  booleans as yes/no, ``None`` (and NaN, in tables) as a chosen blank.
* :func:`table` — a DataFrame, a list of rows or a mapping of pairs as a Markdown or HTML table, from
  the same cell strings (HTML escaped, Markdown pipes escaped), with a row cap that says how many rows
  were left out.
* :class:`Page` — a title, a subtitle, sections (heading + paragraphs, tables, figures) and a footer,
  rendered as one self-contained HTML page (figures embedded as base64 or linked; wide tables scroll
  sideways instead of running off the page) or as Markdown.

Paragraph text is plain text: it is escaped in HTML, and `backticks` become ``<code>``. Trusted markup
goes in a :class:`Raw` part. This module imports nothing of hesslens but its errors, so any layer may use it.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidInputError

Format = Literal["markdown", "html"]


def fmt(value: Any, digits: int = 6, *, blank: str = "—", nan: str = "nan") -> str:
    """A number for people: ``digits`` significant digits; ints with thousands separators; booleans as
    yes/no; ``None`` (and pandas' missing values) as ``blank``, NaN as ``nan``; anything else as ``str``."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) == 0:
        try:
            value = value.item()  # NumPy scalars as Python numbers
        except (TypeError, ValueError):
            pass
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return blank
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return nan
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _is_number(value: Any) -> bool:
    value = value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rows(data: Any, columns: Sequence[str] | None) -> tuple[list[str] | None, list[Sequence[Any]]]:
    """(header or None, rows) of a DataFrame, a mapping of pairs, a list of mappings or a list of sequences."""
    if hasattr(data, "itertuples") and hasattr(data, "columns"):
        header = [str(c) for c in data.columns] if columns is None else list(columns)
        return header, list(data.itertuples(index=False, name=None))
    if isinstance(data, Mapping):
        return (list(columns) if columns is not None else None), list(data.items())
    rows = list(data)
    if rows and all(isinstance(r, Mapping) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return (list(columns) if columns is not None else [str(k) for k in keys]), \
            [[r.get(k) for k in keys] for r in rows]
    return (list(columns) if columns is not None else None), [tuple(r) for r in rows]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _inline(text: str) -> str:
    """Plain text as HTML: escaped, with `backticks` as <code>."""
    return re.sub(r"`([^`\n]+)`", r"<code>\1</code>", html.escape(text, quote=True))


def table(data: Any, format: Format = "markdown", *, columns: Sequence[str] | None = None,
          float_digits: int = 4, max_rows: int | None = None, blank: str = "",
          row_headers: bool = False, more: str = "{n} more rows not shown", css_class: str | None = None) -> str:
    """``data`` as a Markdown or HTML table.

    ``data`` is a DataFrame, a mapping (a two-column table of its pairs, no header), a list of mappings
    (columns from their keys) or a list of sequences (``columns`` names them; without, no header).
    Floats get ``float_digits`` significant digits, None and NaN show as ``blank``. At most ``max_rows``
    rows are shown; then the line ``more`` (``{n}`` is the number left out) follows the table. In HTML
    every string is escaped, numbers carry ``class="num"`` and with ``row_headers`` the first column is
    ``<th>``; the table sits in a ``<div class="table">`` that scrolls sideways when wide.
    """
    if format not in ("markdown", "html"):
        raise InvalidInputError(f"format must be 'markdown' or 'html', got {format!r}")
    if max_rows is not None and max_rows < 0:
        raise InvalidInputError(f"max_rows must be ≥ 0, got {max_rows}")
    header, rows = _rows(data, columns)
    left_out = max(0, len(rows) - max_rows) if max_rows is not None else 0
    shown = rows[:max_rows] if max_rows is not None else rows
    cells = [[(fmt(v, float_digits, blank=blank, nan=blank), _is_number(v)) for v in row] for row in shown]
    note = more.format(n=left_out) if left_out else ""
    width = len(header) if header is not None else max((len(r) for r in shown), default=1)
    if format == "markdown":
        head = header if header is not None else [""] * width
        lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * width]
        lines += ["| " + " | ".join(_md_cell(text) for text, _ in row) + " |" for row in cells]
        return "\n".join(lines) + (f"\n\n({note})" if note else "")

    def td(i: int, text: str, number: bool) -> str:
        tag = "th" if row_headers and i == 0 else "td"
        cls = ' class="num"' if number and tag == "td" else ""
        return f"<{tag}{cls}>{html.escape(text, quote=True)}</{tag}>"

    out = [f'<div class="table"><table{f" class={chr(34)}{css_class}{chr(34)}" if css_class else ""}>']
    if header is not None:
        out.append("<tr>" + "".join(f"<th>{html.escape(h, quote=True)}</th>" for h in header) + "</tr>")
    out += ["<tr>" + "".join(td(i, t, n) for i, (t, n) in enumerate(row)) + "</tr>" for row in cells]
    out.append("</table></div>" + (f'\n<p class="sub">({html.escape(note)})</p>' if note else ""))
    return "\n".join(out)


@dataclass(frozen=True)
class Table:
    """A table part of a page: ``data`` and the options of :func:`table`."""

    data: Any
    options: Mapping[str, Any] = field(default_factory=dict)

    def render(self, format: Format) -> str:
        return table(self.data, format, **self.options)


@dataclass(frozen=True)
class Figure:
    """An image part: bytes (embedded in HTML; Markdown cannot embed, so it needs ``link``), or a path
    (embedded in HTML when ``embed`` and the file exists, else linked)."""

    image: bytes | str | Path
    caption: str = ""
    alt: str = ""
    embed: bool = True
    link: str | None = None

    def _mime(self, name: str) -> str:
        return {".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
            Path(name).suffix.lower(), "image/png")

    def render(self, format: Format, root: Path | None = None) -> str:
        alt = self.alt or self.caption
        if format == "markdown":
            target = self.link or (_relative(Path(self.image), root) if not isinstance(self.image, bytes) else "")
            return f"![{alt}]({target})" + (f"\n\n*{self.caption}*" if self.caption else "")
        if isinstance(self.image, bytes):
            src = f"data:{self._mime(self.link or '')};base64," + base64.b64encode(self.image).decode("ascii")
        elif self.embed and Path(self.image).is_file():
            data = base64.b64encode(Path(self.image).read_bytes()).decode("ascii")
            src = f"data:{self._mime(str(self.image))};base64,{data}"
        else:
            src = html.escape(self.link or str(self.image), quote=True)
        caption = f"<figcaption>{_inline(self.caption)}</figcaption>" if self.caption else ""
        return f'<figure><img src="{src}" alt="{html.escape(alt, quote=True)}">{caption}</figure>'


@dataclass(frozen=True)
class Raw:
    """Trusted HTML, put in the page as it is; ``markdown`` is what the Markdown page shows instead."""

    html: str
    markdown: str = ""

    def render(self, format: Format) -> str:
        return self.html if format == "html" else self.markdown


Part = str | Table | Figure | Raw


@dataclass(frozen=True)
class Section:
    heading: str
    parts: Sequence[Part] = ()


def _relative(path: Path, root: Path | None) -> str:
    if root is not None and path.resolve().is_relative_to(root.resolve()):
        return path.resolve().relative_to(root.resolve()).as_posix()
    return str(path)


CSS = """\
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
         padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
  h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
  .sub { color: #666; margin-top: 0; }
  div.table { overflow-x: auto; max-width: 100%; }
  table { border-collapse: collapse; margin: 0.5rem 0; }
  th, td { text-align: left; padding: 0.25rem 0.9rem 0.25rem 0; vertical-align: top; border-bottom: 1px solid #eee; }
  th { font-weight: 600; color: #333; }
  td.num { font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, Consolas, monospace; }
  img { max-width: 100%; height: auto; }
  figure { margin: 1rem 0; }
  figcaption { color: #555; }
  .note { background: #f6f8fa; border-left: 3px solid #8aa; padding: 0.6rem 1rem; }
  code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.95em; }
  pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; }
"""


@dataclass(frozen=True)
class Page:
    """A page: title, subtitle, sections and footer, as HTML (:meth:`html`) or Markdown (:meth:`markdown`).

    A paragraph string is plain text (escaped in HTML, `backticks` as code); an empty one is skipped.
    """

    title: str
    sections: Sequence[Section]
    subtitle: str = ""
    footer: str = ""
    intro: Sequence[Part] = ()

    def _parts(self, parts: Iterable[Part], format: Format, root: Path | None) -> list[str]:
        out = []
        for part in parts:
            if isinstance(part, str):
                if part.strip():
                    out.append(f"<p>{_inline(part.strip())}</p>" if format == "html" else part.strip())
            elif isinstance(part, Figure):
                out.append(part.render(format, root))
            elif isinstance(part, (Table, Raw)):
                out.append(part.render(format))
            else:
                raise InvalidInputError(f"a page part must be text, Table, Figure or Raw, not {type(part).__name__}")
        return [p for p in out if p]

    def html(self) -> str:
        title = html.escape(self.title.replace("`", ""), quote=True)
        out = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
               '<meta name="viewport" content="width=device-width, initial-scale=1">',
               f"<title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>", f"<h1>{_inline(self.title)}</h1>"]
        if self.subtitle:
            out.append(f'<p class="sub">{_inline(self.subtitle)}</p>')
        out += self._parts(self.intro, "html", None)
        for s in self.sections:
            out += [f"\n<h2>{html.escape(s.heading, quote=True)}</h2>", *self._parts(s.parts, "html", None)]
        if self.footer:
            out.append(f'<p class="sub">{_inline(self.footer)}</p>')
        out.append("</body>\n</html>\n")
        return "\n".join(out)

    def markdown(self, root: str | Path | None = None) -> str:
        """Markdown; figure paths inside ``root`` are written relative to it."""
        root = Path(root) if root is not None else None
        out = [f"# {self.title}", ""]
        if self.subtitle:
            out += [self.subtitle, ""]
        for p in self._parts(self.intro, "markdown", root):
            out += [p, ""]
        for s in self.sections:
            out += [f"## {s.heading}", ""]
            for p in self._parts(s.parts, "markdown", root):
                out += [p, ""]
        if self.footer:
            out += [self.footer, ""]
        return "\n".join(out)
