"""`harness history SPEC`: an index page of a spec's runs over time (harness.html_commands)."""

from __future__ import annotations

import argparse

from harness.html_commands import add_history_parser, run_history


def add_parser(sub) -> argparse.ArgumentParser:
    return add_history_parser(sub)


def run(args: argparse.Namespace) -> int:
    return run_history(args)
