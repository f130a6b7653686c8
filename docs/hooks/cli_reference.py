"""MkDocs hook: the command-line reference is generated from the argparse parsers at build time.

A page holding the line ``<!-- cli-reference -->`` gets, in its place, one section per
``twintrack`` subcommand with the help text argparse prints, so the reference cannot drift
from the options the code accepts.
"""

from __future__ import annotations

import argparse
import io
import os

MARKER = "<!-- cli-reference -->"


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _help(parser: argparse.ArgumentParser) -> str:
    buffer = io.StringIO()
    parser.print_help(buffer)
    return buffer.getvalue().rstrip()


def cli_reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width; fix it for the page
    from TwinTrackCLI import build_parser

    parser = build_parser()
    parts = ["## twintrack", "", "```text", _help(parser), "```", ""]
    for name, sub in _subparsers(parser):
        parts += [f"## twintrack {name}", "", "```text", _help(sub), "```", ""]
        for child_name, child in _subparsers(sub):
            parts += [f"### twintrack {name} {child_name}", "", "```text", _help(child), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
