"""Batch prediction over input files of any size: streaming, in input order, resumable after a kill.

    input lines → chunks of `chunk_size` records → Predictor → JSON lines, one per input record, in input order

Memory holds one chunk at a time whatever the file size. Output is committed chunk by chunk: each chunk is appended
to `OUT.partial` and fsynced, then `OUT.progress.json` records how many input records are done, how many bytes of
output they gave, and a fingerprint of the input and of every setting that can change a result. A run started again
with the same command truncates `OUT.partial` to the last committed chunk and goes on from there; `OUT` appears only
when every record is done (os.replace of the partial file), with `OUT.job.json` beside it: the record that says
this tool wrote `OUT` (and its skipped-record log), so that a later run may replace them with --overwrite. Any other
existing file, the input, and anything in a model directory are refused as outputs before any work starts. The Ray
Data engine (ernie3/ray_batch.py) reads and converts lines with the same functions, so both engines write the same
bytes for the same input.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Callable, Iterator, Optional, Sequence, Union

from ernie3.errors import UserError
from ernie3.files import json_error_text, resolve_output_path, same_file, write_errors_as_user_errors
from ernie3.layout import enclosing_model_dir
from ernie3.tasks import RecordError, Task
from ernie3.tasks.base import RecordLocation

#: "api": one JSON value per line in the HTTP API's shape (a string, a [text, pair] list, {"question", "context"});
#: "text": each line as the task reads plain input lines (a text; text<TAB>text_pair for pair tasks); "dataset": the task's own dataset format (as --dev_file)
INPUT_FORMATS = ("api", "text", "dataset")
#: records per committed chunk: large enough that the fsync and manifest write cost nothing next to the model
DEFAULT_CHUNK_SIZE = 1024
#: bytes read at a time when splitting lines (and hashed at each end of the input for its fingerprint)
READ_BLOCK = 1 << 20
MANIFEST_VERSION = 1
#: the kind of job a finished output's record names (OUT.job.json, the Ray engine's manifest.json)
JOB_KIND = "batch_predict"


@dataclass(frozen=True)
class BatchSettings:
    """One batch prediction job; everything in it but `progress` is part of the resume fingerprint."""

    input_file: str
    output_file: str
    input_format: str = "api"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    skip_invalid: bool = False
    #: show a tqdm progress bar (on stderr)
    progress: bool = True
    #: replace the finished output of an earlier job (only an output this tool wrote)
    overwrite: bool = False
    #: each output line carries its input as given ("input"); part of the fingerprint: it changes every line
    include_input: bool = True

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise UserError(f"--input_format must be one of {', '.join(INPUT_FORMATS)}, got {self.input_format!r}")
        if self.chunk_size < 1:
            raise UserError("--chunk_size must be at least 1")
        if not os.path.isfile(self.input_file):
            raise UserError(f"--input_file: file not found: {self.input_file}")


@dataclass(frozen=True)
class OutputPaths:
    """Where one job writes: the final file, and the files that exist only while it is unfinished."""

    final: str

    @property
    def partial(self) -> str:
        return self.final + ".partial"

    @property
    def progress(self) -> str:
        return self.final + ".progress.json"

    @property
    def skipped(self) -> str:
        """Invalid records skipped with --skip_invalid_records: {"line": ..., "error": ...} per line."""
        return self.final + ".skipped.jsonl"

    @property
    def skipped_partial(self) -> str:
        return self.skipped + ".partial"

    @property
    def record(self) -> str:
        """What a finished job leaves beside its output: the job record that says this tool wrote it."""
        return self.final + ".job.json"

    def all(self) -> list[str]:
        """Every file a job may write or replace (the manifest's staging copy included)."""
        return [self.final, self.partial, self.progress, self.progress + ".tmp", self.skipped, self.skipped_partial,
                self.record, self.record + ".tmp"]  # fmt: skip


# -- reading and converting inputs (shared with the Ray engine) --------------------------------------------------


def numbered_lines(
    read: Callable[[int], bytes], first_line: int = 1, offset: int = 0
) -> Iterator[tuple[int, Union[str, bytes], int]]:
    """(line number, text, byte offset just after the line) of each non-blank line of a UTF-8 byte stream.

    Lines are split on "\\n" only, so every engine numbers them the same way; `read(n)` returns up to n bytes, b""
    at the end; `first_line` and `offset` say where the stream starts in its file. A line that is not UTF-8 comes
    as its raw bytes (never decoded with U+FFFD replacements): converting it says what is wrong (`line_text`).
    """
    number, pending = first_line - 1, b""
    for block in iter(lambda: read(READ_BLOCK), b""):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            number += 1
            text = _decode_line(raw, at_start=offset == 0)
            offset += len(raw) + 1
            if not isinstance(text, str) or text.strip():
                yield number, text, offset
    if pending.strip():
        yield number + 1, _decode_line(pending, at_start=offset == 0), offset + len(pending)


def _decode_line(raw: bytes, at_start: bool) -> Union[str, bytes]:
    if at_start and raw.startswith(b"\xef\xbb\xbf"):  # a BOM (Windows editors), accepted as by every other reader
        raw = raw[3:]
    raw = raw.rstrip(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def line_text(line: Union[str, bytes]) -> str:
    """The text of a line from `numbered_lines`; RecordError for one that is not UTF-8."""
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)") from None


def reads_json_lines(task: Task) -> bool:
    """Whether the task's dataset files are JSON lines (the default `Task.read_records`), so any line-based reader
    (this module's, Ray Data's) can read them; tasks with their own file format read it themselves."""
    return type(task).read_records is Task.read_records


def example_from_line(task: Task, input_format: str, line: Union[str, bytes]) -> dict:
    """The example of one input line; RecordError says what is wrong with it."""
    return input_and_example(task, input_format, line)[1]


def input_and_example(task: Task, input_format: str, line: Union[str, bytes]) -> tuple[Any, dict]:
    """(the input as given, its example) of one input line: the line itself for --input_format text, else its JSON
    value (an API input, or a dataset record); RecordError says what is wrong with it."""
    line = line_text(line)
    if input_format == "text":
        return line, task.example_from_text(task.input_from_line(line))
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(json_error_text(exc)) from None
    return value, example_from_record(task, input_format, value)


def example_from_record(task: Task, input_format: str, value: Any) -> dict:
    if input_format == "api":
        return task.example_from_text(value)
    if not isinstance(value, dict):
        raise RecordError(f"expected a JSON object, got {type(value).__name__}")
    example = task.parse_record(value, with_label=False)
    if example is None:  # records a task drops are not inputs to predict
        raise RecordError("the task drops this record")
    return example


#: `prediction_line`'s `given` when the output leaves the inputs out (--no_input_in_output)
NO_INPUT = object()


def prediction_line(location: RecordLocation, example: dict, result: dict, given: Any = NO_INPUT) -> str:
    """One output line: where the input was, its id if it had one, the input as given (unless NO_INPUT), and the
    result as the HTTP API gives it."""
    record: dict = {"line": location}
    if example.get("id") is not None:
        record["id"] = example["id"]
    if given is not NO_INPUT:
        record["input"] = given
    record.update(result)
    return json.dumps(record, ensure_ascii=False) + "\n"


def skipped_line(location: RecordLocation, message: str) -> str:
    return json.dumps({"line": location, "error": message}, ensure_ascii=False) + "\n"


@dataclass
class ChunkResult:
    """A chunk of inputs after prediction: output text, skipped-record text, counts."""

    output: str
    skipped: str
    records: int
    predicted: int
    skipped_count: int


def predict_chunk(
    predictor: Any, source: str, items: list[tuple[RecordLocation, Any]], convert: Callable[[Any], tuple[Any, dict]],
    skip_invalid: bool, include_input: bool = True,
) -> ChunkResult:
    """Convert (`convert`: item → (input as given, example)), predict and format one chunk; an invalid record is
    skipped or stops the job naming file:line."""
    examples, locations, inputs, skipped = [], [], [], []
    for location, raw in items:
        try:
            given, example = convert(raw)
            examples.append(example)
            inputs.append(given if include_input else NO_INPUT)
            locations.append(location)
        except RecordError as exc:
            where = f"{source}:{location}" if isinstance(location, int) else f"{source}: {location}"
            if not skip_invalid:
                raise UserError(f"{where}: {exc} (--skip_invalid_records skips such lines)") from None
            skipped.append(skipped_line(location, str(exc)))
    results = predictor.predict(examples) if examples else []
    output = "".join(prediction_line(*line) for line in zip(locations, examples, results, inputs))
    return ChunkResult(output, "".join(skipped), len(items), len(examples), len(skipped))


# -- where a job may write ------------------------------------------------------------------------------------------


#: the files of a model given as a file (`model.pdmodel` + `model.pdiparams`, `model.xml` + `model.bin`, ...)
MODEL_EXTENSIONS = (".pdmodel", ".pdiparams", ".onnx", ".xml", ".bin")


def model_dir_of(model_path: str) -> str:
    return model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))


def check_apart_from_input_and_model(
    output: str, given: str, input_file: str, model_path: str, writes: Sequence[str]
) -> None:
    """Refuse an output (`output`: resolved; `writes`: every file the job may write) that is or would replace the
    input, or lies in a model directory (the model being run, or any directory holding model files)."""
    for path in writes:
        if same_file(path, input_file):
            what = "is" if path == output else f"would write {path}, which is"
            raise UserError(f"--output_file {given} {what} the --input_file {input_file} (the same file); "
                            "choose another output name")  # fmt: skip
    if _within(input_file, output):  # the input inside an output directory (--engine ray)
        raise UserError(f"--output_file {given}: the --input_file {input_file} lies inside it; choose another output name")
    if not os.path.isdir(model_path):  # a model given as a file: neither it nor its companions (.pdiparams, .bin)
        stem = os.path.splitext(os.path.realpath(model_path))[0]
        for path in writes:
            if os.path.splitext(path)[0] == stem and os.path.splitext(path)[1] in MODEL_EXTENSIONS:
                raise UserError(f"--output_file {given} would replace a file of the model {model_path}; "
                                "choose another output name")  # fmt: skip
    model_dir = enclosing_model_dir(output if os.path.isdir(output) else os.path.dirname(output))
    if model_dir is None and os.path.isdir(model_path) and _within(output, model_path):
        model_dir = model_path  # the model being run, even without the usual file names
    if model_dir is not None:
        raise UserError(f"--output_file {given} lies in the model directory {model_dir}; write predictions outside "
                        "model directories")  # fmt: skip
    if _within(model_path, output):  # a model inside an output directory (--engine ray replaces it whole)
        raise UserError(f"--output_file {given} holds the model {model_path}; choose another output name")


def _within(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or lies inside it (symlinks resolved)."""
    inner, outer = os.path.realpath(path), os.path.realpath(directory)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def file_identity(path: str) -> dict:
    """What tells that a file is still the one a job wrote: size and modification time (kept by a rename)."""
    status = os.lstat(path)
    return {"file": os.path.basename(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def read_job_record(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("kind") == JOB_KIND else None


def written_by_job(path: str, record: Optional[dict], key: str) -> bool:
    """Whether `path` is the regular file a finished job's record describes under `key`, unchanged since."""
    entry = (record or {}).get(key)
    if not isinstance(entry, dict):
        return False
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISREG(status.st_mode) and entry.get("file") == os.path.basename(path)
            and entry.get("size") == status.st_size and entry.get("mtime_ns") == status.st_mtime_ns)  # fmt: skip


def check_output(settings: BatchSettings, model_path: str) -> OutputPaths:
    """The local engine's output files, once it is certain that writing them destroys nothing: refused (before any
    model is loaded) are the input and anything in a model directory, a directory, a directory that does not exist or
    cannot be written, and any existing file this tool did not write; an earlier finished output of this tool only
    with --overwrite; an unfinished job (OUT.partial with its OUT.progress.json) resumes."""
    given = settings.output_file
    if given.endswith(os.sep) or os.path.isdir(given):
        raise UserError(f"--output_file {given} is a directory; give a file name (--engine ray writes a directory)")
    paths = OutputPaths(resolve_output_path(given, "--output_file", suffix_room=len(".skipped.jsonl.partial")))
    if os.path.isdir(paths.final):
        raise UserError(f"--output_file {given} is a directory; give a file name (--engine ray writes a directory)")
    check_apart_from_input_and_model(paths.final, given, settings.input_file, model_path, paths.all())
    record = read_job_record(paths.record)
    if record is None and os.path.lexists(paths.record):
        raise UserError(f"--output_file {given}: {paths.record} exists and is not a job record of this tool; "
                        "it is left alone: move it away or choose another output name")  # fmt: skip
    for path, key in ((paths.final, "output"), (paths.skipped, "skipped")):
        if not os.path.lexists(path):
            continue
        which = f"--output_file {given}" + ("" if path == paths.final else f": {path}")
        if not written_by_job(path, record, key):
            raise UserError(f"{which} exists and is not the output of a finished batch prediction (no matching "
                            f"{os.path.basename(paths.record)}); it is left alone: move it away or choose another "
                            "output name")  # fmt: skip
        if not settings.overwrite:
            raise UserError(f"{which} holds the output of an earlier run; pass --overwrite to replace it, or choose "
                            "another output name")  # fmt: skip
    if not os.path.exists(paths.progress):
        for path in (paths.partial, paths.skipped_partial):
            if os.path.lexists(path):
                raise UserError(f"--output_file {given}: {path} exists but no {os.path.basename(paths.progress)} says "
                                "which run wrote it; it is left alone: move it away or choose another output name")  # fmt: skip
    return paths


# -- the resumable local engine ------------------------------------------------------------------------------------


def file_fingerprint(path: str) -> dict:
    """Size, modification time and a hash of both ends of a file: cheap for corpora of any size, and it changes
    when the file is edited, appended to or replaced."""
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(READ_BLOCK))
        if stat.st_size > READ_BLOCK:
            handle.seek(max(READ_BLOCK, stat.st_size - READ_BLOCK))
            digest.update(handle.read(READ_BLOCK))
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def predictor_fingerprint(predictor: Any) -> dict:
    """What about the predictor can change a result: its model files, task, backend and batching."""
    model_files = [predictor.model_file]
    params = os.path.splitext(predictor.model_file)[0] + ".pdiparams"
    if os.path.isfile(params):
        model_files.append(params)
    return {
        "model": [file_fingerprint(path) for path in model_files],
        "task": predictor.task.describe(),
        "backend": predictor.backend_name,
        "device": predictor.device,
        "precision": predictor.precision,
        "max_seq_length": predictor.max_seq_length,
        # padding follows batch composition, so batch size is part of what gives byte-identical output
        "batch_size": predictor.batch_size,
    }


def job_fingerprint(settings: BatchSettings, predictor: Any) -> dict:
    job = {k: v for k, v in asdict(settings).items() if k not in ("progress", "overwrite", "input_file", "output_file")}
    return {"input": file_fingerprint(settings.input_file), "job": job, "predictor": predictor_fingerprint(predictor)}


def count_lines(path: str) -> int:
    """Newlines in a file (a fast pass over raw bytes): the progress bar's total."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _fsync_append(handle: BinaryIO, text: str) -> int:
    data = text.encode("utf-8")
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())
    return len(data)


def _write_json_durably(path: str, value: Any) -> None:
    """Replace `path` with `value` so that a crash leaves either the old or the new file, never a torn one."""
    staging = path + ".tmp"
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


@dataclass
class Progress:
    """The manifest of an unfinished job (OUT.progress.json)."""

    fingerprint: dict
    records_done: int = 0
    output_bytes: int = 0
    skipped_bytes: int = 0
    predicted: int = 0
    skipped: int = 0
    chunks: int = 0
    #: where the next chunk starts in the input (line-based inputs): byte offset and line number
    input_offset: int = 0
    next_line: int = 1
    version: int = MANIFEST_VERSION


def load_progress(paths: OutputPaths, fingerprint: dict) -> Optional[Progress]:
    """The progress of an earlier run of the same job, or None to start afresh; a different job is refused."""
    if not os.path.exists(paths.progress):
        return None
    try:
        with open(paths.progress, encoding="utf-8") as handle:
            progress = Progress(**json.load(handle))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{paths.progress}: unreadable progress file ({exc}); delete it and {paths.partial} to start over") from None
    if progress.version != MANIFEST_VERSION or progress.fingerprint != fingerprint:
        changed = sorted(k for k in fingerprint if progress.fingerprint.get(k) != fingerprint[k]) or ["version"]
        raise UserError(
            f"{paths.progress}: an unfinished run with another {'/'.join(changed)} wrote to --output_file "
            f"{paths.final}; rerun that command to finish it, or delete {paths.partial} and {paths.progress} to start over"
        )
    if progress.output_bytes and (not os.path.isfile(paths.partial) or os.path.getsize(paths.partial) < progress.output_bytes):
        raise UserError(f"{paths.partial} is missing or shorter than {paths.progress} says; delete {paths.progress} to start over")
    return progress


def _open_at(path: str, size: int) -> BinaryIO:
    """Open for appending after the first `size` bytes (anything after them is an uncommitted chunk)."""
    handle = open(path, "r+b" if os.path.exists(path) else "w+b")
    handle.truncate(size)
    handle.seek(size)
    return handle


def line_chunks(path: str, offset: int, first_line: int, size: int) -> Iterator[tuple[list, int, int]]:
    """(lines, input offset after them, next line number) per chunk of `size` non-blank lines, from `offset`."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        chunk: list = []
        for number, text, end in numbered_lines(handle.read, first_line, offset):
            chunk.append((number, text))
            if len(chunk) == size:
                yield chunk, end, number + 1
                chunk = []
        if chunk:
            yield chunk, end, number + 1


def record_chunks(task: Task, path: str, records_done: int, size: int) -> Iterator[tuple[list, int, int]]:
    """Chunks of a task-format file read by the task definition (not line-based): resumed by skipping records."""
    chunk: list = []
    for position, item in enumerate(task.read_records(path, "--input_file")):
        if position < records_done:
            continue
        chunk.append(item)
        if len(chunk) == size:
            yield chunk, 0, 0
            chunk = []
    if chunk:
        yield chunk, 0, 0


def predict_file(predictor: Any, settings: BatchSettings, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) one batch prediction job; returns its summary. The output file appears only when complete."""
    paths = check_output(settings, predictor.model_file)
    # a disk that fills up (or is made read-only) mid-run: one line naming the output; committed chunks stay resumable
    with write_errors_as_user_errors(paths.final):
        return _predict_into(predictor, settings, paths, log)


def _predict_into(predictor: Any, settings: BatchSettings, paths: OutputPaths, log: Callable[[str], None]) -> dict:
    task = predictor.task
    finished = written_by_job(paths.final, read_job_record(paths.record), "output")
    if finished and os.path.exists(paths.progress) and not os.path.exists(paths.partial):
        os.unlink(paths.progress)  # a kill right after the output took its name: the job was finished
    fingerprint = job_fingerprint(settings, predictor)
    progress = load_progress(paths, fingerprint)
    if progress is None:
        progress = Progress(fingerprint)
        # the manifest comes first: a partial file is never without the manifest that says which job wrote it
        _write_json_durably(paths.progress, asdict(progress))
    else:
        log(f"resuming {paths.final}: {progress.records_done} input records already done ({progress.chunks} chunks)")
    line_based = settings.input_format != "dataset" or reads_json_lines(task)
    if line_based:
        chunks: Iterator = line_chunks(settings.input_file, progress.input_offset, progress.next_line, settings.chunk_size)

        def convert(line: str) -> tuple[Any, dict]:
            return input_and_example(task, settings.input_format, line)

    else:
        chunks = record_chunks(task, settings.input_file, progress.records_done, settings.chunk_size)

        def convert(record: Any) -> tuple[Any, dict]:
            return record, example_from_record(task, settings.input_format, record)

    from tqdm import tqdm

    total = count_lines(settings.input_file) if line_based else None
    started = time.perf_counter()
    done_before = progress.records_done
    first_chunk_seconds = None
    output = _open_at(paths.partial, progress.output_bytes)
    skipped = _open_at(paths.skipped_partial, progress.skipped_bytes) if settings.skip_invalid else None
    bar = tqdm(total=total, initial=progress.next_line - 1 if line_based else progress.records_done,
               unit=" lines" if line_based else " records", disable=not settings.progress, dynamic_ncols=True,
               desc="predict", smoothing=0.1)  # fmt: skip
    try:
        for items, input_offset, next_line in chunks:
            result = predict_chunk(predictor, settings.input_file, items, convert, settings.skip_invalid,
                                   settings.include_input)
            # commit order: output, skipped lines, then the manifest that makes them count
            progress.output_bytes += _fsync_append(output, result.output)
            if skipped is not None and result.skipped:
                progress.skipped_bytes += _fsync_append(skipped, result.skipped)
            progress.records_done += result.records
            progress.predicted += result.predicted
            progress.skipped += result.skipped_count
            progress.chunks += 1
            progress.input_offset, progress.next_line = input_offset, next_line
            _write_json_durably(paths.progress, asdict(progress))
            first_chunk_seconds = first_chunk_seconds or time.perf_counter() - started
            bar.update((next_line - 1 - bar.n) if line_based else result.records)
    except BaseException:
        if progress.chunks == 0:  # nothing committed: the files of this job are of no use to a rerun
            for path in (paths.partial, paths.skipped_partial):
                if os.path.exists(path) and os.path.getsize(path) == 0:
                    os.unlink(path)
            if not any(os.path.exists(path) for path in (paths.partial, paths.skipped_partial)):
                os.unlink(paths.progress)
        raise
    finally:
        bar.close()
        output.close()
        if skipped is not None:
            skipped.close()
        chunks.close()
    if progress.records_done == 0:
        for path in (paths.partial, paths.skipped_partial, paths.progress):
            if os.path.exists(path):
                os.unlink(path)
        raise UserError(f"--input_file: {settings.input_file} holds no input records")
    # finished: the skipped-record log and the output take their final names (with the record that says this tool
    # wrote them, written first: a kill in between leaves the job resumable), the manifest goes
    previous = read_job_record(paths.record)
    if skipped is not None and progress.skipped:
        os.replace(paths.skipped_partial, paths.skipped)
    else:
        if skipped is not None:
            os.unlink(paths.skipped_partial)
        if written_by_job(paths.skipped, previous, "skipped"):  # an earlier run's log (--overwrite): not this run's
            os.unlink(paths.skipped)
    _write_json_durably(paths.record, {
        "kind": JOB_KIND, "engine": "local", "input_file": os.path.abspath(settings.input_file),
        "model": predictor.model_file, "records": progress.records_done, "predicted": progress.predicted,
        "skipped_records": progress.skipped, "output": {**file_identity(paths.partial), "file": os.path.basename(paths.final)},
        "skipped": file_identity(paths.skipped) if progress.skipped else None,
    })  # fmt: skip
    os.replace(paths.partial, paths.final)
    os.unlink(paths.progress)
    seconds = time.perf_counter() - started
    summary = {
        "output_file": paths.final,
        "records": progress.records_done,
        "predicted": progress.predicted,
        "skipped": progress.skipped,
        "skipped_file": paths.skipped if progress.skipped else None,
        "seconds": round(seconds, 3),
        "first_chunk_seconds": round(first_chunk_seconds or seconds, 3),
        "records_per_second": round((progress.records_done - done_before) / seconds, 2) if seconds > 0 else None,
    }
    if progress.skipped:
        log(f"skipped {progress.skipped} invalid input records (listed with their line numbers in {paths.skipped})")
    log(f"wrote {progress.predicted} predictions to {paths.final}")
    return summary
