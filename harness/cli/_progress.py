"""Progress on stderr for long steps: a rich bar on a terminal; one plain line every few seconds
otherwise (CI logs), so a log never sits silent until the end."""

from __future__ import annotations

import sys
import time

from harness.cli._common import console

LOG_EVERY_S = 5.0
UPDATE_EVERY_S = 0.1  # a terminal bar is redrawn at most this often per model x prompt


class _PlainTask:
    """One step's progress as log lines: `NAME: 120/600 (20%) 2 invalid, 14s` at most every few seconds."""

    def __init__(self, name: str, total: int, every: float):
        self.name, self.total, self.every = name, total, every
        self.done = 0
        self.invalid = 0
        self.t0 = time.monotonic()
        self.last = self.t0

    def advance(self, n: int = 1, invalid: int | None = None) -> None:
        self.done += n
        if invalid is not None:
            self.invalid = invalid
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            extra = f" {self.invalid} invalid," if self.invalid else ""
            print(f"{self.name}: {self.done}/{self.total}{share}{extra} {now - self.t0:.0f}s",
                  file=sys.stderr, flush=True)


class Progress:
    """A progress bar per step on stderr; results are counted from the runner's callback.

    `tracker(name, total)` returns the per-prediction callback the runner calls; `step(name, total)`
    returns an `advance(n)` function for other long steps (embedding, baseline fit, curve)."""

    def __init__(self, enabled: bool, every: float = LOG_EVERY_S):
        self.enabled = enabled
        self.every = every
        self._progress = None
        self._plain = enabled and not console(stderr=True).is_terminal
        self._flushes: list = []

    def __enter__(self):
        return self

    def _start(self) -> None:
        # Started with the first step, not before: an error while preparing the run then prints
        # alone, without the blank line an empty progress display leaves on stderr.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
        from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[invalid]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console(stderr=True), transient=False,
        )
        self._progress.__enter__()

    def __exit__(self, *exc):
        for flush in self._flushes:  # what the throttle held back
            flush()
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def step(self, name: str, total: int):
        """An `advance(n=1)` callable for a long step, or None when progress is off."""
        if not self.enabled:
            return None
        if self._plain:
            task = _PlainTask(name, total, self.every)
            return lambda n=1: task.advance(n)
        if self._progress is None:
            self._start()
        rich_task = self._progress.add_task(name, total=total, invalid="")
        return lambda n=1: self._progress.update(rich_task, advance=n)

    def tracker(self, name: str, total: int):
        if not self.enabled:
            return None
        invalid = 0
        if self._plain:
            task = _PlainTask(name, total, self.every)

            def on_plain(prediction) -> None:
                nonlocal invalid
                invalid += prediction.outcome != "valid"
                task.advance(1, invalid)

            return on_plain
        if self._progress is None:
            self._start()
        rich_task = self._progress.add_task(name, total=total, invalid="0 invalid")
        pending = done = 0
        last = 0.0

        def flush() -> None:
            nonlocal pending
            if pending:
                self._progress.update(rich_task, advance=pending, invalid=f"{invalid} invalid")
                pending = 0

        def on_result(prediction) -> None:
            # Throttled: a cached replay answers thousands of requests a second, and one bar
            # update per answer cost more than the answer.
            nonlocal invalid, pending, done, last
            invalid += prediction.outcome != "valid"
            pending += 1
            done += 1
            now = time.monotonic()
            if now - last >= UPDATE_EVERY_S or done >= total:
                last = now
                flush()

        self._flushes.append(flush)
        return on_result
