"""`--engine ray`: the batch prediction job of ernie3/batch_predict.py on Ray Data.

Ray Data reads the input (a datasource that streams numbered lines in blocks of one chunk each), an actor pool runs
the project's Predictor (`map_batches` with a callable class, one actor per worker, `threads_per_worker` CPUs
each), and the driver writes the results, in input order, as sharded JSON lines plus `manifest.json` into the output
directory; the directory appears under its name only when complete. Lines are numbered, converted and formatted by
the same functions as the local engine, and each Ray batch is one local chunk, so the shards concatenated are
byte-identical to the local engine's output file.

Locally it starts its own Ray (`ray.init(num_cpus=workers × threads + 1)`: the actors, and the reading); with
`--ray_address` it joins a cluster (refused within CONNECT_TIMEOUT_S when no gRPC server answers there: ray.init
itself would retry forever).
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional

import numpy as np

from ernie3.batch_predict import (JOB_KIND, BatchSettings, check_apart_from_input_and_model, input_and_example, line_text,
                                  NO_INPUT, model_dir_of, numbered_lines, prediction_line, reads_json_lines, skipped_line)  # fmt: skip
from ernie3.errors import UserError
from ernie3.files import atomic_directory, resolve_output_path
from ernie3.tasks import RecordError

MANIFEST = "manifest.json"
SHARD_NAME = "part-{:05d}.jsonl"
#: input records per output shard
DEFAULT_SHARD_RECORDS = 100_000
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: seconds a cluster address gets to accept a connection before it is refused
CONNECT_TIMEOUT_S = 10
#: the port of a Ray client server (ray://HOST) when the address names none
RAY_CLIENT_PORT = 10001


@dataclass(frozen=True)
class RayOptions:
    #: an existing cluster ("auto", "ray://head:10001", ...); None starts a local Ray for this job
    address: Optional[str] = None
    num_workers: int = 1
    threads_per_worker: int = 1
    #: object store of a local Ray: results and input blocks are small, the default (30% of RAM) is far more
    object_store_mb: int = 256
    #: send the model files through the object store to every actor (no shared storage needed on a cluster)
    ship_model: bool = False
    shard_records: int = DEFAULT_SHARD_RECORDS

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.threads_per_worker < 1:
            raise UserError("--num_workers and --threads_per_worker must be at least 1")
        if self.shard_records < 1:
            raise UserError("shard size must be at least 1 record")


def cluster_endpoint(address: str, flag: str = "--ray_address") -> tuple[str, int]:
    """(host, port) of HOST:PORT, [IPv6]:PORT or ray://HOST[:PORT]; anything else is refused in one line."""
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    default_port = str(RAY_CLIENT_PORT) if client else ""
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        port = after[1:] if after.startswith(":") else ("" if after else default_port)
    elif ":" in rest:
        host, port = rest.rsplit(":", 1)
    else:
        host, port = rest, default_port
    bad_host = not host or any(c in host for c in "/ \t") or (":" in host and not rest.startswith("["))
    if bad_host or not (port.isdigit() and 0 < int(port) < 65536):
        raise UserError(f"{flag} {address!r}: expected auto, HOST:PORT (the head node's GCS, e.g. 10.0.0.5:6379) or "
                        "ray://HOST[:PORT]")  # fmt: skip
    return host, int(port)


def check_cluster_reachable(address: str, flag: str = "--ray_address") -> None:
    """Refuse, within CONNECT_TIMEOUT_S, a cluster address where nothing accepts a connection: ray.init retries such
    an address forever. "auto" is looked up as Ray looks it up (RAY_ADDRESS, the last `ray start`)."""
    if address == "local":  # a new local cluster: nothing to reach
        return
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # what ray.init takes "auto" to mean first
    if address == "auto":
        try:  # Ray's own lookup (a private function: without it, the address is left to ray.init)
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:
            return
        try:
            address = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as exc:
            raise UserError(f"{flag} auto: {str(exc).split('. ')[0]}") from None
    endpoints = [cluster_endpoint(address, flag)]
    if not address.startswith("ray://"):
        try:  # ray.init connects to the node's own IP where the address names this host (127.0.0.1 → 10.x.y.z)
            from ray._private.services import canonicalize_bootstrap_address

            host, port = (canonicalize_bootstrap_address(address) or "").rsplit(":", 1)
            endpoints.append((host.strip("[]"), int(port)))
        except (ImportError, ValueError, OSError):
            pass
    for host, port in dict.fromkeys(endpoints):
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
                answer = _http2_answer(connection)
        except OSError as exc:
            reason = f"no answer within {CONNECT_TIMEOUT_S} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise UserError(f"{flag} {address}: no Ray cluster reachable at {host}:{port} ({reason}); start one with "
                            f"`ray start --head`, or leave {flag} out to run a local Ray") from None  # fmt: skip
        if not answer and os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
            raise UserError(f"{flag} {address}: {host}:{port} answers, but not as a Ray cluster (its GCS, or a Ray "
                            "client server, speaks gRPC); check the port (`ray status` on the head node shows it)")  # fmt: skip


#: what an HTTP/2 client sends first (the connection preface, then its SETTINGS frame, empty)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _http2_answer(connection: socket.socket) -> bool:
    """Whether the server answers the HTTP/2 preface with a SETTINGS frame, as every gRPC server (Ray's GCS and client
    server) must: a port that accepts connections but is something else would have ray.init retry forever."""
    connection.sendall(HTTP2_PREFACE)
    header = b""
    while len(header) < 9:
        block = connection.recv(9 - len(header))
        if not block:
            return False
        header += block
    return header[3] == 4  # frame type 4: SETTINGS


def start_ray(address: Optional[str], num_cpus: int, object_store_mb: int = 256, flag: str = "--ray_address") -> bool:
    """Connect this process to Ray (unless it already is); True if this call started it (and should stop it).

    `address`: join that cluster, shipping this package to its nodes (the venv with paddle must be there already);
    None: start a local Ray with `num_cpus` logical CPUs and a small object store (results and inputs are small).
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_cluster_reachable(address, flag)
        try:
            ray.init(address=address, runtime_env={"py_modules": [PACKAGE_DIR]}, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"{flag} {address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_mb << 20,
            log_to_driver=False,
            # local workers import this package from where the driver has it
            runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(PACKAGE_DIR)}},
        )
    return True


def numbered_lines_datasource(path: str, rows_per_block: int) -> Any:
    """A Ray Data datasource of an input file's non-blank lines with their numbers, `rows_per_block` per block."""
    import pyarrow
    from ray.data.datasource import FileBasedDatasource

    class NumberedLines(FileBasedDatasource):
        def _read_stream(self, f: "pyarrow.NativeFile", path: str) -> Iterator[Any]:
            lines: list[int] = []
            texts: list[str] = []
            errors: list[str] = []  # a line that is not UTF-8 travels as what is wrong with it (strings only)
            for number, line, _ in numbered_lines(f.read):
                lines.append(number)
                try:
                    texts.append(line_text(line))
                    errors.append("")
                except RecordError as exc:
                    texts.append("")
                    errors.append(str(exc))
                if len(lines) == rows_per_block:
                    yield pyarrow.table({"line": lines, "text": texts, "error": errors})
                    lines, texts, errors = [], [], []
            if lines:
                yield pyarrow.table({"line": lines, "text": texts, "error": errors})

    return NumberedLines([path])


def model_files(model_dir: str) -> dict[str, bytes]:
    return {name: open(os.path.join(model_dir, name), "rb").read()
            for name in os.listdir(model_dir) if os.path.isfile(os.path.join(model_dir, name))}  # fmt: skip


class ChunkPredictor:
    """One actor of the pool: a Predictor, and one chunk of numbered lines → prediction lines or error messages."""

    def __init__(self, predictor_options: dict, input_format: str, shipped_model: Any = None, include_input: bool = True):
        import ray

        from ernie3.predict import Predictor

        options = dict(predictor_options)
        if shipped_model is not None:
            # the model travelled through the object store: write it to this node's disk for Paddle to load
            directory = tempfile.mkdtemp(prefix="ernie3-model-")
            files = ray.get(shipped_model) if isinstance(shipped_model, ray.ObjectRef) else shipped_model
            for name, content in files.items():
                with open(os.path.join(directory, name), "wb") as handle:
                    handle.write(content)
            model_file = os.path.basename(options["model_path"]) if not os.path.isdir(options["model_path"]) else ""
            options["model_path"] = os.path.join(directory, model_file) if model_file else directory
        self.predictor = Predictor(**options)
        self.input_format = input_format
        self.include_input = include_input

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ernie3.tasks import RecordError

        lines = [int(n) for n in batch["line"]]
        examples, positions, inputs, errors = [], [], [], [str(error) for error in batch["error"]]
        for position, text in enumerate(batch["text"]):
            if errors[position]:
                continue
            try:
                given, example = input_and_example(self.predictor.task, self.input_format, str(text))
                examples.append(example)
                inputs.append(given if self.include_input else NO_INPUT)
                positions.append(position)
            except RecordError as exc:
                errors[position] = str(exc)
        outputs = [""] * len(lines)
        results = self.predictor.predict(examples) if examples else []
        for position, example, result, given in zip(positions, examples, results, inputs):
            outputs[position] = prediction_line(lines[position], example, result, given)
        return {"line": np.array(lines, dtype=np.int64), "output": np.array(outputs, dtype=object),
                "error": np.array(errors, dtype=object)}  # fmt: skip


class ShardWriter:
    """Numbered shards of JSON lines, a new one every `shard_records` records."""

    def __init__(self, directory: str, shard_records: int):
        self.directory, self.shard_records = directory, shard_records
        self.shards: list[dict] = []
        self.handle = None

    def write(self, line_number: int, text: str) -> None:
        if self.handle is None or self.shards[-1]["records"] == self.shard_records:
            self.close()
            name = SHARD_NAME.format(len(self.shards))
            self.handle = open(os.path.join(self.directory, name), "w", encoding="utf-8")
            self.shards.append({"file": name, "records": 0, "first_line": line_number, "last_line": line_number})
        self.handle.write(text)
        self.shards[-1]["records"] += 1
        self.shards[-1]["last_line"] = line_number

    def close(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None


def predict_on_ray(settings: BatchSettings, predictor_options: dict, options: RayOptions, log: Any = print) -> dict:
    """The batch prediction job on Ray Data; `settings.output_file` names the output directory."""
    import ray
    from tqdm import tqdm

    from ernie3.export import task_of_model_dir

    model_path = predictor_options["model_path"]
    output_dir = check_ray_output(settings, model_path)
    model_dir = model_dir_of(model_path)
    task = task_of_model_dir(model_dir)
    if settings.input_format == "dataset" and not reads_json_lines(task):
        raise UserError(f"--engine ray reads JSON lines; {task.name} dataset files are not (use --input_format api)")
    options_for_actor = {**predictor_options, "num_threads": options.threads_per_worker}
    # one CPU more than the actors take, for the read task that feeds them (else the job waits forever)
    started_ray = start_ray(options.address, options.num_workers * options.threads_per_worker + 1, options.object_store_mb)
    started = time.perf_counter()
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True  # shards in input order
        shipped = ray.put(model_files(model_dir)) if options.ship_model else None
        dataset = ray.data.read_datasource(
            numbered_lines_datasource(os.path.abspath(settings.input_file), settings.chunk_size)
        ).map_batches(
            ChunkPredictor,
            fn_constructor_kwargs={"predictor_options": options_for_actor, "input_format": settings.input_format,
                                   "shipped_model": shipped, "include_input": settings.include_input},  # fmt: skip
            batch_size=settings.chunk_size,  # = one block of the datasource = one chunk of the local engine
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.num_workers),
            num_cpus=options.threads_per_worker,
        )
        counts = {"records": 0, "predicted": 0, "skipped": 0}
        first_chunk_seconds = None
        with atomic_directory(output_dir) as staging:
            writer = ShardWriter(staging, options.shard_records)
            skipped_file = open(os.path.join(staging, "skipped.jsonl"), "w", encoding="utf-8") if settings.skip_invalid else None
            bar = tqdm(unit=" records", disable=not settings.progress, desc=f"predict (ray, {options.num_workers} workers)")
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    for number, output, error in zip(batch["line"], batch["output"], batch["error"]):
                        number = int(number)
                        counts["records"] += 1
                        if error:
                            if not settings.skip_invalid:
                                raise UserError(f"{settings.input_file}:{number}: {error} (--skip_invalid_records skips such lines)")
                            counts["skipped"] += 1
                            skipped_file.write(skipped_line(number, error))
                        else:
                            counts["predicted"] += 1
                            writer.write(number, output)
                    bar.update(len(batch["line"]))
                    first_chunk_seconds = first_chunk_seconds or time.perf_counter() - started
            finally:
                bar.close()
                writer.close()
                if skipped_file is not None:
                    skipped_file.close()
            if skipped_file is not None and not counts["skipped"]:
                os.unlink(os.path.join(staging, "skipped.jsonl"))
            if not counts["records"]:
                raise UserError(f"--input_file: {settings.input_file} holds no input records")
            seconds = time.perf_counter() - started
            manifest = {
                "kind": JOB_KIND,
                "engine": "ray",
                "input_file": os.path.abspath(settings.input_file),
                "model_path": model_path,
                "task": task.name,
                **counts,
                "shards": writer.shards,
                "skipped_file": "skipped.jsonl" if counts["skipped"] else None,
                "settings": {k: v for k, v in asdict(settings).items() if k not in ("progress", "overwrite")},
                "ray": {**asdict(options), "address": options.address or "local"},
                "seconds": round(seconds, 3),
            }
            with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, ensure_ascii=False, indent=1)
    finally:
        if started_ray:
            ray.shutdown()
    log(f"wrote {counts['predicted']} predictions in {len(manifest['shards'])} shard(s) to {settings.output_file}/ "
        f"({counts['records'] / seconds:.1f} records/s)")  # fmt: skip
    return {**counts, "output_file": settings.output_file, "seconds": round(seconds, 3),
            "first_chunk_seconds": round(first_chunk_seconds or seconds, 3),
            "records_per_second": round(counts["records"] / seconds, 2), "shards": len(manifest["shards"])}  # fmt: skip


def check_ray_output(settings: BatchSettings, model_path: str) -> str:
    """The output directory (resolved), once it is certain that writing it destroys nothing: as the local engine's
    checks (ernie3/batch_predict.py `check_output`), for a directory that replaces any earlier one as a whole: an
    existing one only if empty, or if it is a finished --engine ray output (its manifest names every file in it)
    and --overwrite is given."""
    given = settings.output_file
    output_dir = resolve_output_path(given, "--output_file", suffix_room=len(".partial-12345678") + 1)  # its staging dir
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"--output_file {given} is a file; --engine ray writes a directory of shards")
    check_apart_from_input_and_model(output_dir, given, settings.input_file, model_path, [output_dir])
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return output_dir
    try:
        with open(os.path.join(output_dir, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
        ours = {MANIFEST, *(shard["file"] for shard in manifest["shards"])} | ({manifest["skipped_file"]} - {None})
        if manifest["engine"] != "ray":
            raise ValueError("another engine")
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--output_file {given} is a directory that holds no --engine ray output (no {MANIFEST} of "
                        "one); it is left alone: choose another output name") from None  # fmt: skip
    foreign = sorted(set(os.listdir(output_dir)) - ours)
    if foreign:
        raise UserError(f"--output_file {given} holds files no --engine ray run wrote ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}); it is left alone: choose another output name")  # fmt: skip
    if not settings.overwrite:
        raise UserError(f"--output_file {given} holds the output of an earlier --engine ray run; pass --overwrite to "
                        "replace it, or choose another output name")  # fmt: skip
    return output_dir


def read_shards(directory: str) -> Iterator[str]:
    """The lines of a Ray output directory in input order (what the local engine writes into one file)."""
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    for shard in manifest["shards"]:
        with open(os.path.join(directory, shard["file"]), encoding="utf-8") as handle:
            yield from handle

