"""Reading records and writing outputs so that a failed run never leaves a file that looks complete."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator

from ernie3.errors import UserError


def read_json_lines(path: str, flag: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a JSON-lines file."""
    for line_number, line in read_lines(path, flag):
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{line_number}: malformed JSON ({exc.msg} at column {exc.colno})") from None


def read_lines(path: str, flag: str, keep_blank: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for each non-blank line of a UTF-8 text file.

    With `keep_blank`, blank lines are yielded too (as ""): formats such as CoNLL separate records with them.
    """
    if not os.path.isfile(path):
        raise UserError(f"{flag}: file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a BOM (Windows editors) is accepted in every format
            for line_number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_number, line
                elif keep_blank:
                    yield line_number, ""
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def check_output_file(path: str, flag: str) -> str:
    """An output file path that can be written: not a directory, in a directory that exists or can be made."""
    if os.path.isdir(path):
        raise UserError(f"{flag}: {path} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{flag}: cannot create {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: cannot write {path}: no write permission in {existing}")
    return path


def write_json_lines_atomic(path: str, records: Iterable[dict]) -> None:
    """Write JSON lines to a temporary file and move it into place only when complete."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False, suffix=".partial") as handle:
        try:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


def write_json_atomic(path: str, value: Any) -> None:
    """Write one JSON document (e.g. a SQuAD-style {id: answer} submission) atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False, suffix=".partial") as handle:
        try:
            json.dump(value, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a sibling temporary directory; it replaces `path` only if the block finishes."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(staging, path)
