"""`--engine ray`: the batch prediction job of ernie3/batch_predict.py on Ray Data.

Ray Data reads the input (a datasource that streams numbered lines in blocks of one chunk each), an actor pool runs
the project's Predictor (`map_batches` with a callable class, one actor per worker, `threads_per_worker` CPUs
each), and the driver writes the results, in input order, as sharded JSON lines plus `manifest.json` into the output
directory; the directory appears under its name only when complete. Lines are numbered, converted and formatted by
the same functions as the local engine, and each Ray batch is one local chunk, so the shards concatenated are
byte-identical to the local engine's output file.

Locally it starts its own Ray (`ray.init(num_cpus=workers × threads + 1)`: the actors, and the reading); with `--ray_address` it joins a cluster.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional

import numpy as np

from ernie3.batch_predict import BatchSettings, example_from_line, numbered_lines, prediction_line, reads_json_lines, skipped_line
from ernie3.errors import UserError
from ernie3.files import atomic_directory

MANIFEST = "manifest.json"
SHARD_NAME = "part-{:05d}.jsonl"
#: input records per output shard
DEFAULT_SHARD_RECORDS = 100_000
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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


def start_ray(address: Optional[str], num_cpus: int, object_store_mb: int = 256) -> bool:
    """Connect this process to Ray (unless it already is); True if this call started it (and should stop it).

    `address`: join that cluster, shipping this package to its nodes (the venv with paddle must be there already);
    None: start a local Ray with `num_cpus` logical CPUs and a small object store (results and inputs are small).
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, runtime_env={"py_modules": [PACKAGE_DIR]}, log_to_driver=False)
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
            for number, text, _ in numbered_lines(f.read):
                lines.append(number)
                texts.append(text)
                if len(lines) == rows_per_block:
                    yield pyarrow.table({"line": lines, "text": texts})
                    lines, texts = [], []
            if lines:
                yield pyarrow.table({"line": lines, "text": texts})

    return NumberedLines([path])


def model_files(model_dir: str) -> dict[str, bytes]:
    return {name: open(os.path.join(model_dir, name), "rb").read()
            for name in os.listdir(model_dir) if os.path.isfile(os.path.join(model_dir, name))}  # fmt: skip


class ChunkPredictor:
    """One actor of the pool: a Predictor, and one chunk of numbered lines → prediction lines or error messages."""

    def __init__(self, predictor_options: dict, input_format: str, shipped_model: Any = None):
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

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ernie3.tasks import RecordError

        lines = [int(n) for n in batch["line"]]
        examples, positions, errors = [], [], [""] * len(lines)
        for position, text in enumerate(batch["text"]):
            try:
                examples.append(example_from_line(self.predictor.task, self.input_format, str(text)))
                positions.append(position)
            except RecordError as exc:
                errors[position] = str(exc)
        outputs = [""] * len(lines)
        results = self.predictor.predict(examples) if examples else []
        for position, example, result in zip(positions, examples, results):
            outputs[position] = prediction_line(lines[position], example, result)
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
    model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    task = task_of_model_dir(model_dir)
    if settings.input_format == "dataset" and not reads_json_lines(task):
        raise UserError(f"--engine ray reads JSON lines; {task.name} dataset files are not (use --input_format api)")
    if os.path.isfile(settings.output_file):
        raise UserError(f"--output_file {settings.output_file} is a file; --engine ray writes a directory of shards")
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
                                   "shipped_model": shipped},  # fmt: skip
            batch_size=settings.chunk_size,  # = one block of the datasource = one chunk of the local engine
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.num_workers),
            num_cpus=options.threads_per_worker,
        )
        counts = {"records": 0, "predicted": 0, "skipped": 0}
        first_chunk_seconds = None
        with atomic_directory(settings.output_file) as staging:
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
                "engine": "ray",
                "input_file": os.path.abspath(settings.input_file),
                "model_path": model_path,
                "task": task.name,
                **counts,
                "shards": writer.shards,
                "skipped_file": "skipped.jsonl" if counts["skipped"] else None,
                "settings": {k: v for k, v in asdict(settings).items() if k != "progress"},
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


def read_shards(directory: str) -> Iterator[str]:
    """The lines of a Ray output directory in input order (what the local engine writes into one file)."""
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    for shard in manifest["shards"]:
        with open(os.path.join(directory, shard["file"]), encoding="utf-8") as handle:
            yield from handle

