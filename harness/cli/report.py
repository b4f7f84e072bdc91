"""`harness report RUN`: re-render report.md and report.html from a run folder (harness.html_commands)."""

from __future__ import annotations

import argparse

from harness.html_commands import add_report_parser, run_report


def add_parser(sub) -> argparse.ArgumentParser:
    return add_report_parser(sub)


def run(args: argparse.Namespace) -> int:
    return run_report(args)
