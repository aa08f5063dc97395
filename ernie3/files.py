"""Reading records and writing outputs so that a failed run never leaves a file that looks complete."""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import stat
import tempfile
from typing import Any, Iterable, Iterator, Optional, Sequence

from ernie3.errors import UserError


def json_error_text(exc: json.JSONDecodeError) -> str:
    """'malformed JSON (Expecting value at column 3)'; some of json's messages end in "at" already
    ("Unterminated string starting at", "Invalid control character at")."""
    where = "column" if exc.msg.endswith(" at") else "at column"
    return f"malformed JSON ({exc.msg} {where} {exc.colno})"


def read_json_lines(path: str, flag: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a JSON-lines file."""
    for line_number, line in read_lines(path, flag):
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{line_number}: {json_error_text(exc)}") from None


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


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (threads may be creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere, reading it means setting it; it is put back at once
    os.umask(mask)
    return mask


def make_public_like_umask(path: str, is_dir: bool) -> None:
    """Give a temporary file or directory the mode a plain `open`/`mkdir` would have given it.

    `tempfile` creates private entries (0600 files, 0700 dirs) so that nobody can read half-written output;
    once renamed into place they must be readable like any other output (issue: exported models were 0700).
    """
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


#: errors of a write that the user can fix: full disk or quota, read-only or unwritable place
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR)


@contextlib.contextmanager
def write_errors_as_user_errors(output: str) -> Iterator[None]:
    """Turn a failed write inside the block (e.g. a library saving a checkpoint on a full disk) into one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(exc.filename or output, exc) from None


def write_error(path: str, exc: OSError) -> UserError:
    """One line for a failed write (full disk, read-only or unwritable folder), naming the output."""
    return UserError(f"could not write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[Any]:
    """A text handle on a temporary sibling of `path`; it replaces `path` only if the block finishes.

    Whatever happens in between (kill, full disk), `path` holds either its old complete content or the new one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=directory, delete=False, prefix=f".{os.path.basename(path)}.", suffix=".partial"
        )
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        make_public_like_umask(handle.name, is_dir=False)
        os.replace(handle.name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def check_output_file(path: str, flag: str) -> str:
    """An output file path that can be written: not a directory, in a directory that exists or can be made."""
    if os.path.isdir(path):
        raise UserError(f"{flag}: {path} is a directory; give a file name")
    check_output_location(os.path.dirname(os.path.abspath(path)), flag)
    return path


def check_report_file(path: str, flag: str, keys: Sequence[str]) -> str:
    """A JSON report's path (e.g. infer.py's metrics), as `check_output_file`, and checked before any work: never in a
    model directory, never over an existing file other than an earlier report of the same kind (a JSON object with
    all of `keys`), which a new one replaces."""
    from ernie3.layout import enclosing_model_dir

    check_output_file(path, flag)
    model_dir = enclosing_model_dir(os.path.dirname(os.path.abspath(path)))
    if model_dir is not None:
        raise UserError(f"{flag} {path} lies in the model directory {model_dir}; write reports outside model directories")
    if os.path.lexists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                earlier = json.load(handle)
        except (OSError, ValueError):
            earlier = None
        if os.path.islink(path) or not (isinstance(earlier, dict) and all(key in earlier for key in keys)):
            raise UserError(f"{flag} {path} exists and is not a report of this command; it is left alone: move it "
                            "away or choose another name")  # fmt: skip
    return path


def write_json_lines_atomic(path: str, records: Iterable[dict]) -> None:
    """Write JSON lines to a temporary file and move it into place only when complete."""
    with atomic_file(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_json_atomic(path: str, value: Any) -> None:
    """Write one JSON document (e.g. a SQuAD-style {id: answer} submission) atomically."""
    with atomic_file(path) as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def write_text_atomic(path: str, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


#: prefix of the staging directories `atomic_directory` creates beside its target
STAGING_MARK = ".partial-"


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a sibling temporary directory; it replaces `path` only if the block finishes.

    The old directory is renamed aside before the new one is renamed into place, then removed: a kill leaves the
    old complete directory, or the new one (at worst beside a `.name.old-*` leftover), never a half-written one.
    """
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}{STAGING_MARK}", dir=parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        yield staging
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    aside = None
    try:
        make_public_like_umask(staging, is_dir=True)
        if os.path.lexists(path):
            aside = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.replace(path, os.path.join(aside, name))
        try:
            os.replace(staging, path)
        except BaseException:
            if aside is not None:
                os.replace(os.path.join(aside, name), path)
            raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise write_error(path, exc) from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def paths_overlap(first: str, second: str) -> bool:
    """Whether one path is the other or lies inside it (symlinks resolved)."""
    a, b = os.path.realpath(first), os.path.realpath(second)
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def check_output_location(path: str, flag: str) -> None:
    """An output directory must be a directory (or not exist yet) in a place this process can write."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f"{flag}: {path} exists and is not a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise UserError(f"{flag}: cannot create {path}: {existing} is not a directory")
    probe_writable(existing, flag)


def probe_writable(directory: str, flag: str) -> None:
    """Refuse a directory this process cannot create files in."""
    try:  # a real probe: permission bits say nothing for root, read-only file systems or quotas
        handle, probe = tempfile.mkstemp(prefix=".ernie3-write-probe-", dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag}: cannot write to {directory}: {exc.strerror or exc}") from None


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: the same path once symlinks are resolved, or the same inode (hard links)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def resolve_output_path(path: str, flag: str, suffix_room: int = 0) -> str:
    """Where an output named `path` really goes: its directory as the OS resolves it, which must exist and be
    writable. A `..` after a missing or non-directory component fails here as it would on open (os.path.abspath
    would silently drop it); symlinks are resolved, so that later checks compare real places. `suffix_room`: the
    longest suffix the output's own files add to its name (they must fit the file system's name length too)."""
    stripped = path.rstrip(os.sep) or path
    directory, name = os.path.split(stripped)
    if name in ("", ".", ".."):
        raise UserError(f"{flag}: {path} names no file or directory of its own; give a name")
    directory = directory or "."
    try:
        mode = os.stat(directory).st_mode
    except OSError as exc:
        raise UserError(f"{flag}: {path}: cannot use the directory {directory}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        raise UserError(f"{flag}: {path}: {directory} is not a directory")
    real_directory = os.path.realpath(directory)
    probe_writable(real_directory, flag)
    try:
        name_max = os.pathconf(real_directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(name)) + suffix_room > name_max:
        raise UserError(f"{flag}: {path}: file name too long ({len(os.fsencode(name))} bytes; at most "
                        f"{name_max - suffix_room} here)")  # fmt: skip
    return os.path.join(real_directory, name)


#: the record every run leaves in its output directory: which kind of run wrote it, so that a later
#: --overwrite_output_dir knows what it may delete
RUN_RECORD = "ernie3_run.json"
#: leftovers of interrupted atomic writes (`atomic_file`, `atomic_directory`), safe to delete
LEFTOVER_PATTERNS = (f".*{STAGING_MARK}*", ".*.old-*", ".*.partial")


def read_run_record(directory: str) -> Optional[dict]:
    path = os.path.join(directory, RUN_RECORD)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def foreign_entries(output_dir: str, kind: str, layout: Sequence[str], require_record: bool = True) -> list[str]:
    """Entries of `output_dir` that are not outputs of a previous `kind` run (by its record and its layout).

    Sub-directories that are outputs of other runs of this toolkit (their own record, or the task record every
    model directory it writes carries), such as a compress output or an ONNX export inside a training output, are
    not foreign: they are left alone, never deleted. Without `require_record`, a directory with no record at all
    (e.g. written by an older version) is judged by its layout alone: enough to add to it, not to delete from it.
    """
    from ernie3.layout import RUN_LOG_FILE, TASK_INFO_FILE
    # a run's log alone (a run that stopped at a bad input after its checks) is no output to protect
    if not os.path.isdir(output_dir) or not set(os.listdir(output_dir)) - {RUN_LOG_FILE}:
        return []
    record = read_run_record(output_dir)
    if record is not None and record.get("kind") != kind:
        return sorted(os.listdir(output_dir))  # another script's output
    if record is None and require_record:
        return sorted(os.listdir(output_dir))
    foreign = []
    for entry in sorted(os.listdir(output_dir)):
        full = os.path.join(output_dir, entry)
        if entry in (RUN_RECORD, RUN_LOG_FILE) or any(fnmatch.fnmatch(entry, p) for p in (*layout, *LEFTOVER_PATTERNS)):
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            if read_run_record(full) is not None or os.path.isfile(os.path.join(full, TASK_INFO_FILE)):
                continue
        foreign.append(entry)
    return foreign


def remove_previous_outputs(output_dir: str, layout: Sequence[str]) -> None:
    """Delete what a previous run of the same kind left (entries matching `layout`), never anything else."""
    for entry in sorted(os.listdir(output_dir)):
        if not any(fnmatch.fnmatch(entry, p) for p in (*layout, *LEFTOVER_PATTERNS)):
            continue
        full = os.path.join(output_dir, entry)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except OSError as exc:
            raise UserError(f"--overwrite_output_dir: could not remove {full}: {exc.strerror or exc}") from None


def write_run_record(output_dir: str, kind: str, **details: Any) -> None:
    write_json_atomic(os.path.join(output_dir, RUN_RECORD), {"kind": kind, **details})


#: bytes read from each end of a file for its content fingerprint
FINGERPRINT_BLOCK = 1 << 20


def content_fingerprint(path: str) -> dict:
    """Size and a hash of both ends of a file: cheap for files of any size, the same for a copy of the file
    (unlike its path or modification time), and different when it is edited, appended to or replaced."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BLOCK))
        if size > FINGERPRINT_BLOCK:
            handle.seek(max(FINGERPRINT_BLOCK, size - FINGERPRINT_BLOCK))
            digest.update(handle.read(FINGERPRINT_BLOCK))
    return {"size": size, "sha256_ends": digest.hexdigest()}


def staging_directory_for(path: str) -> str:
    """A new empty sibling of `path` to build a whole output in before `publish_staged_output` moves it in place."""
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}{STAGING_MARK}", dir=parent)
        make_public_like_umask(staging, is_dir=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    return staging


def publish_staged_output(staging: str, path: str, layout: Sequence[str]) -> str:
    """Replace the previous output at `path` (only its `layout` entries) with what was built in `staging`.

    Until this moment the previous complete output stays untouched, whatever failed while building the new one.
    """
    try:
        if not os.path.isdir(path) or not os.listdir(path):
            if os.path.isdir(path):
                os.rmdir(path)
            os.replace(staging, path)
            return path
        remove_previous_outputs(path, layout)
        for entry in os.listdir(staging):
            os.replace(os.path.join(staging, entry), os.path.join(path, entry))
        os.rmdir(staging)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path
