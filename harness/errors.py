"""Errors the CLI turns into exit codes without a traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix (bad spec, template, dataset or flag): exit code 2."""

    exit_code = 2


class FieldProblem(ValueError):
    """A problem with one field of a spec model, raised inside its validation: `loc` is the key
    path below the model that raises it, so the spec error names that field and its line."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = loc


class SpecError(HarnessError):
    """One or more mistakes in a spec file, each located as `file:line: field: message`."""

    MAX_SHOWN = 20  # a file with hundreds of mistakes prints the first ones and a count

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]]):
        self.path = path
        self.problems = problems
        lines = []
        said: set[str] = set()  # a long "Allowed: ..." list is printed once, not on every line
        for line, field, message in problems[: self.MAX_SHOWN]:
            head, sep, allowed = message.partition(" Allowed: ")
            if sep:
                message = head if allowed in said else message
                said.add(allowed)
            where = f"{path}:{line}" if line else path
            lines.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        if len(problems) > self.MAX_SHOWN:
            lines.append(f"… and {len(problems) - self.MAX_SHOWN} more problem(s) in {path}")
        super().__init__("\n".join(lines))


class CacheMissError(HarnessError):
    """Replay mode found requests with no stored response: exit code 3."""

    exit_code = 3
