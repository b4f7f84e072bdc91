"""Reading user files as UTF-8 with a clear error, and writing files atomically.

Every file a user hands the harness (spec, template, dataset, fixture, run folder) is read through
`read_text`, so a Latin-1 file or a folder passed as a file ends in one line naming it (exit 2),
never a UnicodeDecodeError traceback. Everything the harness writes for later commands (fixtures,
reports, metrics, the schema) goes through `atomic_write_text`: a temp file next to the target,
then a rename, so a kill or a full disk never leaves a partial file where a good one was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError


def read_text(path: Path | str, what: str = "file", max_bytes: int | None = None) -> str:
    path = Path(path)
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise HarnessError(
                f"{path}: the {what} is {path.stat().st_size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    return decode_utf8(data, path, what)


def decode_utf8(data: bytes, path: Path | str, what: str = "file") -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HarnessError(
            f"{path}:{line}: the {what} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    return text.removeprefix("\ufeff")


def atomic_write_text(path: Path | str, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def import_object(import_path: str, folders: list[Path], where: str):
    """`module:Object`, the module looked up on the normal import path, then in `folders` (the
    spec's folder, the working directory), so a user's module needs no PYTHONPATH=. An error
    while importing is the user's: one line naming the module, never a traceback."""
    import importlib
    import sys

    module_name, _, name = import_path.partition(":")
    added = [str(p) for p in dict.fromkeys(folders) if str(p) not in sys.path]
    sys.path[len(sys.path):] = added  # appended: never shadows an installed module
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(
            f"{where}: cannot import {import_path!r}: {exc}; give `module:Class` of a Pydantic model in a "
            f"module next to the spec, in the working directory or installed"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the module itself failed while importing
        raise HarnessError(f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    try:
        return getattr(module, name)
    except AttributeError:
        raise HarnessError(f"{where}: cannot import {import_path!r}: module {module_name!r} has no {name!r}") from None
