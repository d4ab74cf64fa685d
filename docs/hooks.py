"""MkDocs hook: render the ``--help`` of the ``hesslens`` commands into docs/cli.md at build time.

A page line ``<!-- cli-help: analyze -->`` (or ``study``, or empty for the group) is replaced by the
command's help as click prints it, so the page never drifts from the code.
"""

from __future__ import annotations

import re

import click

MARKER = re.compile(r"^<!-- cli-help:\s*([\w ]*?)\s*-->$", re.M)
WIDTH = 100


def _settings(command: click.Command) -> dict:
    """The command's own context settings (e.g. ``-h`` as a help option), at a fixed width."""
    return {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}


def command_help(words: list[str]) -> str:
    """``hesslens WORDS --help``, rendered with click's own Context and get_help."""
    from hesslens.cli import cli

    command: click.Command = cli
    ctx = click.Context(cli, info_name="hesslens", **_settings(cli))
    for word in words:
        sub = command.get_command(ctx, word)  # type: ignore[attr-defined]
        if sub is None:
            raise ValueError(f"docs/cli.md names an unknown command: hesslens {' '.join(words)}")
        ctx = click.Context(sub, info_name=word, parent=ctx, **_settings(sub))
        command = sub
    return command.get_help(ctx)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda m: "```text\n" + command_help(m.group(1).split()) + "\n```", markdown)
