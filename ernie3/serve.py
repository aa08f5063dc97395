"""HTTP serving of exported models: a FastAPI app on uvicorn, with per-model request batching.

    python deploy/serving/serve.py --config deploy/serving/config.yml [--host 127.0.0.1] [--port 8000] [--verbose]

Every model of the YAML config is loaded once, at start-up, into its own worker thread; that thread owns the
model's Predictor (Paddle predictors are not thread-safe) and runs batches of texts gathered from requests that
arrive together; a request bigger than a batch runs in parts that take turns with other requests. The event loop
only parses and validates requests, so it keeps answering while models compute. Everything a client gets wrong is
answered 4xx with {"error": ...}; anything else 500 with a request id that points into the log, never internals.
This module only adapts HTTP to `Predictor.predict_texts`: what a text is, and what a result holds, is the task
definition's business (ernie3/tasks).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import inspect
import json
import logging
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ernie3.errors import UserError, run_cli
from ernie3.logs import set_verbose

logger = logging.getLogger("uvicorn.error")  # runtime messages appear in uvicorn's log, in its format

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# -- configuration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingLimits:
    """Batching and request limits of one model; `defaults:` in the config, overridable per model."""

    #: texts run together in one batch at most; a larger request is split into batches that take turns with
    #: other requests' batches, so that no request holds the model for long
    max_batch_size: int = 16
    #: characters run together in one batch at most (a single longer text still runs, alone); what bounds a batch
    #: of long QA contexts, where one text gives many model windows
    max_batch_chars: int = 8000
    #: how long the first request of a batch waits for others to join it; 0: a batch is what queued while the model
    #: ran the previous one (no added latency for a lone request, and as much throughput under load on CPU)
    max_wait_ms: float = 0.0
    #: requests waiting for a model at most; beyond that, requests are refused with 503
    max_queued_requests: int = 256
    max_texts_per_request: int = 64
    #: characters of one text at most (all strings of a text: both texts of a pair, question + context)
    max_text_chars: int = 2000
    #: characters of all texts of one request at most: bounds the work a single request can ask for
    max_request_chars: int = 100_000
    max_body_bytes: int = 1 << 20
    #: a request still unanswered after this long gets 504
    request_timeout_s: float = 60.0


@dataclass(frozen=True)
class ServerSettings:
    """`server:` section of the config."""

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    #: one log line per request costs throughput; off by default
    access_log: bool = False
    #: let several server processes bind the same port (Linux shares connections between them)
    reuse_port: bool = False
    #: a client has this long to send a request's headers (from its first byte, or from connecting) and as long
    #: again for its body; slower connections are answered 408 and closed, so stalled clients cannot pile up
    read_timeout_s: float = 10.0
    #: an idle keep-alive connection is closed after this long
    keep_alive_s: float = 5.0
    #: require `Authorization: Bearer <key>` on every endpoint but /health; better kept out of the YAML with
    #: `api_key_env` (the name of an environment variable that holds the key)
    api_key: Optional[str] = None
    api_key_env: Optional[str] = None
    #: refuse to start when the models' expected peak RSS (ernie3/memory.py) is above this; 0: no limit
    max_memory_mb: int = 0


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    limits: ServingLimits
    #: passed to the Predictor as keyword arguments (backend, device, precision, num_threads, batch_size, ...)
    predictor_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ServingConfig:
    server: ServerSettings
    models: tuple[ModelSpec, ...]


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
FLOAT_LIMITS = {"max_wait_ms", "request_timeout_s", "read_timeout_s", "keep_alive_s"}  # the other limits are positive integers
ZERO_ALLOWED = {"max_wait_ms"}  # 0: no waiting, batches hold only what queued while the model was busy


def _checked_value(where: str, key: str, value: Any, expected: Any) -> Any:
    """`value` converted to the type of `expected` (a default value), or a UserError naming the key."""
    if isinstance(expected, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(expected, (int, float)):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in FLOAT_LIMITS:
            if not is_number or value < 0 or (value == 0 and key not in ZERO_ALLOWED):
                bound = ">= 0" if key in ZERO_ALLOWED else "> 0"
                raise UserError(f"{where}: '{key}' must be a number {bound}, got {value!r}")
            return float(value)
        if key == "port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise UserError(f"{where}: 'port' must be a port number (0-65535; 0: any free port), got {value!r}")
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{where}: '{key}' must be a positive integer, got {value!r}")
        return value
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _fill_dataclass(cls: Any, where: str, values: Mapping[str, Any], base: Any = None) -> Any:
    """An instance of a settings dataclass from config values, on top of `base` (or the class defaults)."""
    base = base if base is not None else cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown setting '{unknown[0]}' (known: {', '.join(sorted(known))})")
    checked = {key: _checked_value(where, key, value, getattr(base, key)) for key, value in values.items()}
    return dataclasses.replace(base, **checked)


def predictor_option_names() -> list[str]:
    """Keyword arguments the Predictor takes besides the model directory; a model's other config keys go there."""
    from ernie3.predict import Predictor

    parameters = list(inspect.signature(Predictor.__init__).parameters.values())[2:]  # after self, model directory
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


# Predictor options whose values the config checks before any model loads (a bad one would otherwise load "ready"
# and then fail every request); options not listed here are checked by the Predictor when the model loads.
POSITIVE_INT_OPTIONS = ("num_threads", "batch_size", "max_seq_length")
DEVICES = ("cpu", "gpu")


def check_predictor_options(where: str, options: Mapping[str, Any]) -> dict:
    """A model's Predictor options, checked: positive counts, known devices and precisions, TensorRT settings."""
    from ernie3.backends import PRECISIONS

    for key, value in options.items():
        if key in POSITIVE_INT_OPTIONS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{where}: '{key}' must be a positive integer, got {value!r}")
        elif key == "device" and value not in DEVICES:
            raise UserError(f"{where}: 'device' must be one of {', '.join(DEVICES)}, got {value!r}")
        elif key == "precision" and value not in ("auto", *PRECISIONS):
            raise UserError(f"{where}: 'precision' must be one of auto, {', '.join(PRECISIONS)}, got {value!r}")
        elif key == "tensorrt":
            tensorrt_options(where, value)
        elif key in ("backend", "model_prefix") and (not isinstance(value, str) or not value):
            raise UserError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return dict(options)


def tensorrt_options(where: str, value: Any) -> Any:
    """The `tensorrt:` mapping of a model as the Predictor takes it (TensorRTOptions), checked."""
    from ernie3.backends import TensorRTOptions

    if not isinstance(value, Mapping):
        raise UserError(f"{where}: 'tensorrt' must be a mapping of TensorRT settings, got {value!r}")
    known = {f.name for f in dataclasses.fields(TensorRTOptions)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise UserError(f"{where}: unknown tensorrt setting '{unknown[0]}' (known: {', '.join(sorted(known))})")
    options = TensorRTOptions(**value)
    try:
        options.validate()
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return options


def parse_config(raw: Any, base_dir: str) -> ServingConfig:
    """A serving config from its parsed YAML; model paths are relative to `base_dir` (the config's folder)."""
    if not isinstance(raw, Mapping):
        raise UserError("the config must be a YAML mapping with 'server', 'defaults' and 'models' sections")
    # `ray:` holds the Ray Serve replicas (ernie3/ray_serve.py reads it), so one config serves both services
    unknown = sorted(set(raw) - {"server", "defaults", "models", "ray"})
    if unknown:
        raise UserError(f"unknown config section '{unknown[0]}' (known: server, defaults, models, ray)")
    sections = {}
    for section in ("server", "defaults"):
        value = raw.get(section) or {}
        if not isinstance(value, Mapping):
            raise UserError(f"config section '{section}' must be a mapping")
        sections[section] = value
    server = _fill_dataclass(ServerSettings, "server", sections["server"])
    if server.log_level not in LOG_LEVELS:
        raise UserError(f"server: 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {server.log_level!r}")
    defaults = _fill_dataclass(ServingLimits, "defaults", sections["defaults"])

    entries = raw.get("models")
    if not isinstance(entries, list) or not entries:
        raise UserError("config section 'models' must be a non-empty list of {name, path, ...} entries")
    limit_keys = {f.name for f in dataclasses.fields(ServingLimits)}
    option_keys = predictor_option_names()
    models, seen = [], set()
    for position, entry in enumerate(entries):
        where = f"models[{position}]"
        if not isinstance(entry, Mapping):
            raise UserError(f"{where}: expected a mapping with 'name' and 'path'")
        for key in ("name", "path"):
            if not isinstance(entry.get(key), str) or not entry.get(key):
                raise UserError(f"{where}: '{key}' is required (a non-empty string)")
        name = entry["name"]
        if not MODEL_NAME_PATTERN.match(name):
            raise UserError(f"{where}: model name {name!r} may hold only letters, digits, '_', '.' and '-'")
        if name in seen:
            raise UserError(f"{where}: model name '{name}' is used twice")
        seen.add(name)
        rest = {k: v for k, v in entry.items() if k not in ("name", "path")}
        unknown = sorted(set(rest) - limit_keys - set(option_keys))
        if unknown:
            raise UserError(
                f"{where} ({name}): unknown setting '{unknown[0]}' (serving limits: {', '.join(sorted(limit_keys))}; "
                f"predictor options: {', '.join(option_keys)})"
            )
        limits = _fill_dataclass(ServingLimits, f"{where} ({name})", {k: v for k, v in rest.items() if k in limit_keys}, defaults)
        options = check_predictor_options(f"{where} ({name})", {k: v for k, v in rest.items() if k not in limit_keys})
        path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(entry["path"])))
        models.append(ModelSpec(name, path, limits, options))
    return ServingConfig(server, tuple(models))


def read_config_file(path: str) -> Any:
    """The parsed YAML of a serving config file (both services read the same file)."""
    import yaml

    if not os.path.isfile(path):
        raise UserError(f"--config: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(path: str) -> ServingConfig:
    raw = read_config_file(path)
    try:
        return parse_config(raw, os.path.dirname(os.path.abspath(path)))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


# -- models and their batching workers --------------------------------------------------------------------------


def resolve_served_path(spec: ModelSpec) -> str:
    """The model a config path means, as infer.py reads it: a compress output dir serves its best/ candidate."""
    from ernie3.layout import resolve_model_path

    if not os.path.exists(spec.path):
        raise UserError(f"model '{spec.name}' could not be loaded: path not found: {spec.path}")
    try:
        return resolve_model_path(spec.path)
    except UserError as exc:  # its messages name infer.py's flag; here the path comes from the config
        raise UserError(f"model '{spec.name}' could not be loaded: {str(exc).removeprefix('--model_path: ')}") from None


def load_predictor(spec: ModelSpec) -> Any:
    """The one place the server builds a Predictor; any failure becomes one clear line naming the model."""
    from ernie3.predict import Predictor

    path = resolve_served_path(spec)
    options = dict(spec.predictor_options)
    if "tensorrt" in options:
        options["tensorrt"] = tensorrt_options(f"model '{spec.name}'", options["tensorrt"])
    try:
        predictor = Predictor(path, **options)
    except UserError as exc:
        raise UserError(f"model '{spec.name}' could not be loaded: {exc}") from None
    except Exception as exc:  # Paddle and the tokenizer raise many kinds; all mean this model cannot serve
        raise UserError(f"model '{spec.name}' could not be loaded from {path}: {last_line(exc)}") from None
    return predictor


def last_line(exc: BaseException) -> str:
    """The telling part of a library's (often multi-line) error message, bounded."""
    text = str(exc).strip()
    return (text.splitlines()[-1].strip() if text else type(exc).__name__)[:300]


def stretched(text: Any, length: int) -> Any:
    """`text` with each of its strings repeated to at least `length` characters, in the same shape."""
    if isinstance(text, str):
        return text * (length // max(len(text), 1) + 1)
    if isinstance(text, list):
        return [stretched(item, length) for item in text]
    if isinstance(text, dict):
        return {key: stretched(item, length) for key, item in text.items()}
    return text


def warm_up(name: str, predictor: Any) -> None:
    """Run on the thread that will serve the model, before the server reports ready: a short and a full-length
    prediction (options that load but cannot run show here, not in every request afterwards), then every shape
    bucket once, so that the process holds its steady memory from the start (Paddle's oneDNN keeps its per-shape
    state per thread: warming up on another thread would hold a second copy)."""
    check_first_predictions(name, predictor)
    if hasattr(predictor, "warm_up"):
        predictor.warm_up()


def check_first_predictions(name: str, predictor: Any) -> None:
    for candidate in predictor.task.sample_inputs()[:1]:
        try:
            predictor.predict_texts([candidate, stretched(candidate, predictor.max_seq_length)])
        except Exception as exc:  # noqa: BLE001 (any failure here means the model cannot serve)
            raise UserError(f"model '{name}' loaded but failed its first prediction: {last_line(exc)}") from None
            return


class RequestError(Exception):
    """A request the server refuses: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str, headers: Optional[Mapping[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": self.message}


class InternalError(RequestError):
    """A failure that is not the client's fault: the answer names no internals, only the request id under which
    the log holds the details."""

    def __init__(self, request_id: str):
        super().__init__(500, f"internal error; the server log has the details under request id {request_id}")
        self.request_id = request_id

    def body(self) -> dict:
        return {"error": self.message, "request_id": self.request_id}


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class BatchStats:
    """Counters of one model's worker, written by the worker thread and read by request handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.texts = 0
        self.batches = 0
        self.failed_batches = 0
        self.largest_batch_requests = 0
        self.largest_batch_texts = 0
        self.inference_seconds = 0.0
        self.requests_per_batch: Counter = Counter()
        self.split_requests = 0

    def record_split(self) -> None:
        with self._lock:
            self.split_requests += 1

    def record(self, requests: int, texts: int, seconds: float, failed: bool) -> None:
        with self._lock:
            self.batches += 1
            self.failed_batches += int(failed)
            self.requests += requests
            self.texts += texts
            self.inference_seconds += seconds
            self.largest_batch_requests = max(self.largest_batch_requests, requests)
            self.largest_batch_texts = max(self.largest_batch_texts, texts)
            self.requests_per_batch[requests] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "texts": self.texts,
                "batches": self.batches,
                "failed_batches": self.failed_batches,
                "mean_requests_per_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
                "largest_batch_requests": self.largest_batch_requests,
                "largest_batch_texts": self.largest_batch_texts,
                "requests_per_batch": {str(k): v for k, v in sorted(self.requests_per_batch.items())},
                # requests larger than a batch, run in parts that took turns with other requests
                "split_requests": self.split_requests,
                "inference_seconds": round(self.inference_seconds, 4),
            }


@dataclass
class Job:
    """One request's texts, and the future (of the event loop that waits on it) that gets their results.

    A request larger than a batch runs in parts: `results` holds those of the texts done so far, and the job goes
    back to the end of the queue after each part, behind the requests that arrived meanwhile.
    """

    texts: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    request_id: str = ""
    characters: list = field(default_factory=list)  # per text
    results: list = field(default_factory=list)

    @property
    def done_texts(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class Part:
    """Texts [start, stop) of one job, in one batch."""

    job: Job
    start: int
    stop: int


_STOP = object()  # queued to end a worker


def _settle(future: asyncio.Future, result: Any = None, error: Optional[BaseException] = None) -> None:
    """Runs on the event loop: a request that timed out has a cancelled future already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def describe_model(spec: ModelSpec, predictor: Any, stats: dict, **state: Any) -> dict:
    """What GET /models tells about a model: its task, how it runs, its limits, state and batch statistics; no
    filesystem paths (they tell a client nothing it needs, and an attacker something)."""
    task = predictor.task
    shown_options = {k: v for k, v in spec.predictor_options.items() if k in ("num_threads", "batch_size")}
    return {
        "name": spec.name,
        **task.describe(),
        **({"pair": task.pair} if hasattr(task, "pair") else {}),  # single texts or pairs
        "max_seq_length": predictor.max_seq_length,
        # what the Predictor chose where the config left it to defaults or "auto"
        "backend": predictor.backend_name,
        "device": predictor.device,
        "precision": predictor.precision,
        **shown_options,
        "limits": dataclasses.asdict(spec.limits),
        **state,
        "stats": stats,
    }


class ModelWorker:
    """One model: its Predictor, owned by one thread that runs batches of queued requests."""

    def __init__(self, spec: ModelSpec, predictor: Any):
        self.spec = spec
        self.limits = spec.limits
        self.predictor = predictor
        self.task = predictor.task
        self.stats = BatchStats()
        # unbounded: the worker puts unfinished jobs back; predict() bounds what clients may queue
        self._jobs: queue.Queue = queue.Queue()
        self._carried: Any = None  # a job (or _STOP) that did not fit into the previous batch
        self._thread = threading.Thread(target=self._serve, name=f"model-{spec.name}", daemon=True)
        self._started = threading.Event()  # set once the worker thread has warmed the model up (or failed to)
        self._start_error: Optional[UserError] = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread and wait for its warm-up; a model that cannot serve stops start-up here."""
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the worker after the batch running now; requests still waiting then are refused."""
        if not self._thread.is_alive():
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def describe(self) -> dict:
        return describe_model(self.spec, self.predictor, self.stats.snapshot(), ready=self.alive,
                              queued_requests=self._jobs.qsize())  # fmt: skip

    async def predict(self, texts: list, request_id: Optional[str] = None) -> list[dict]:
        """Results of `texts` (already validated), computed by the worker thread together with other requests'."""
        if not self.alive:
            raise RequestError(503, f"model '{self.spec.name}' is not running")
        if self._jobs.qsize() >= self.limits.max_queued_requests:
            raise RequestError(503, f"model '{self.spec.name}' is busy ({self.limits.max_queued_requests} requests "
                                    "queued); retry later")  # fmt: skip
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        characters = [count_characters(text) for text in texts]
        self._jobs.put_nowait(Job(texts, future, loop, request_id or new_request_id(), characters))
        try:
            return await asyncio.wait_for(future, self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, f"model '{self.spec.name}' gave no answer within "
                                    f"{self.limits.request_timeout_s:g} s") from None  # fmt: skip

    # -- the worker thread ---------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            warm_up(self.spec.name, self.predictor)
        except UserError as exc:
            self._start_error = exc
            return
        finally:
            self._started.set()
        while True:
            batch = self._gather()
            if batch is None:
                break
            if batch:
                self._run_batch(batch)
        self._refuse_waiting("the server is shutting down")

    def _next_job(self, timeout: Optional[float]) -> Any:
        """The next queued job still awaited by its client (requests that timed out need no work), or _STOP;
        None when none arrives in time (timeout None: wait as long as it takes, 0: take only what is queued)."""
        while True:
            try:
                if timeout is None:
                    job = self._jobs.get()
                elif timeout > 0:
                    job = self._jobs.get(timeout=timeout)
                else:
                    job = self._jobs.get_nowait()
            except queue.Empty:
                return None
            if job is _STOP or not job.future.cancelled():
                return job

    def _fit(self, job: Job, texts: int, characters: int) -> int:
        """How many of `job`'s remaining texts fit into a batch that holds `texts` texts of `characters` so far
        (at least one when the batch is empty: a text longer than max_batch_chars runs alone)."""
        count = 0
        for chars in job.characters[job.done_texts :]:
            if texts + count >= self.limits.max_batch_size:
                break
            if texts + count > 0 and characters + chars > self.limits.max_batch_chars:
                break
            count += 1
            characters += chars
        return count

    def _gather(self) -> Optional[list[Part]]:
        """Blocks for a first request, then gathers others until the batch is full or `max_wait_ms` has passed.
        None once the worker is asked to stop; an empty list when only requests that timed out were waiting."""
        first = self._carried if self._carried is not None else self._next_job(None)
        self._carried = None
        if first is _STOP:
            return None
        if first.future.cancelled():
            return []
        batch: list[Part] = []
        texts = characters = 0
        deadline = time.monotonic() + self.limits.max_wait_ms / 1000
        job = first
        while True:
            count = self._fit(job, texts, characters)
            if count == 0:
                self._carried = job
                break
            start = job.done_texts
            batch.append(Part(job, start, start + count))
            texts += count
            characters += sum(job.characters[start : start + count])
            if start + count < len(job.texts):  # the job did not fit whole: the batch is full
                break
            job = self._next_job(max(0.0, deadline - time.monotonic()))
            if job is None:
                break
            if job is _STOP:
                self._carried = job
                break
        return batch

    def _run_batch(self, batch: list[Part]) -> None:
        texts = [text for part in batch for text in part.job.texts[part.start : part.stop]]
        started = time.perf_counter()
        try:
            results = self.predictor.predict_texts(texts)
        except Exception:  # noqa: BLE001 (reported to the requests, and logged)
            self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=True)
            if len(batch) > 1:
                # one request's texts may be what fails: run each alone so the others still get their results
                for part in batch:
                    self._run_batch([part])
                return
            job = batch[0].job
            logger.exception("model '%s': prediction failed (request id %s)", self.spec.name, job.request_id)
            job.loop.call_soon_threadsafe(_settle, job.future, None, InternalError(job.request_id))
            return
        self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=False)
        offset = 0
        for part in batch:
            job = part.job
            job.results.extend(results[offset : offset + part.stop - part.start])
            offset += part.stop - part.start
            if job.done_texts == len(job.texts):
                job.loop.call_soon_threadsafe(_settle, job.future, job.results)
            elif not job.future.cancelled():
                if part.start == 0:
                    self.stats.record_split()
                self._jobs.put_nowait(job)  # behind the requests that arrived meanwhile

    def _refuse_waiting(self, reason: str) -> None:
        pending = [self._carried] if self._carried is not None else []
        while True:
            try:
                pending.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for job in pending:
            if job is not _STOP and job is not None:
                job.loop.call_soon_threadsafe(_settle, job.future, None, RequestError(503, reason))


def recorded_max_seq_length(predictor: Any) -> Optional[int]:
    """The max_seq_length the model's ernie3_task.json records (what it was fine-tuned and exported with)."""
    from ernie3.export import read_task_info

    try:
        return read_task_info(os.path.dirname(os.path.abspath(predictor.model_file))).get("max_seq_length")
    except (UserError, OSError, ValueError, AttributeError):
        return None


class ModelRegistry:
    """The served models by name, in config order."""

    def __init__(self, workers: Sequence[ModelWorker]):
        self.workers = {worker.spec.name: worker for worker in workers}

    @classmethod
    def load(cls, specs: Sequence[ModelSpec], progress: Any = print) -> "ModelRegistry":
        """Load every model (one at a time: Paddle's start-up is not meant to run concurrently) and start its worker."""
        # paddle sets up process-wide state at import; do it here, on the main thread, before any worker runs
        import paddle.inference  # noqa: F401

        workers = []
        for spec in specs:
            started = time.perf_counter()
            progress(f"loading model '{spec.name}' from {spec.path} ...")
            predictor = load_predictor(spec)
            worker = ModelWorker(spec, predictor)
            worker.start()  # warms the model up on its own thread; one model at a time
            workers.append(worker)
            progress(f"  {spec.name}: {predictor.task.task_type} task {predictor.task.name}, "
                     f"loaded and warmed up in {time.perf_counter() - started:.1f} s")  # fmt: skip
            recorded = recorded_max_seq_length(predictor)
            if recorded is not None and recorded != predictor.max_seq_length:
                progress(f"  {spec.name}: max_seq_length {predictor.max_seq_length} from the config, not the "
                         f"{recorded} the model was exported with")  # fmt: skip
        return cls(workers)

    @property
    def ready(self) -> bool:
        return all(worker.alive for worker in self.workers.values())

    def get(self, name: str) -> ModelWorker:
        worker = self.workers.get(name)
        if worker is None:
            raise RequestError(404, f"unknown model '{name}' (served: {', '.join(self.workers)})")
        return worker

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


# -- requests ---------------------------------------------------------------------------------------------------


def count_characters(value: Any) -> int:
    """Characters of all strings in one text, whatever its shape (string, pair, {question, context})."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(count_characters(item) for item in value)
    if isinstance(value, Mapping):
        return sum(count_characters(item) for item in value.values())
    return 0


def parse_predict_request(payload: Any, task: Any, limits: ServingLimits) -> list:
    """The texts of a decoded predict request, checked against the limits and by the task's own input rules."""
    from ernie3.tasks import RecordError

    if not isinstance(payload, dict):
        raise RequestError(422, 'the request body must be a JSON object: {"texts": [...]}')
    unknown = sorted(set(payload) - {"texts"})
    if unknown:
        raise RequestError(422, f"unknown field '{unknown[0]}' (a request holds only 'texts')")
    if "texts" not in payload:
        raise RequestError(422, "missing field 'texts'")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"field 'texts' must be a list, got {type(texts).__name__}")
    if not texts:
        raise RequestError(422, "field 'texts' is empty")
    if len(texts) > limits.max_texts_per_request:
        raise RequestError(422, f"{len(texts)} texts in one request; at most {limits.max_texts_per_request} are allowed")
    total = 0
    for position, text in enumerate(texts):
        try:
            task.example_from_text(text)  # its shape and content (invisible-only, lone surrogates)
        except RecordError as exc:
            raise RequestError(422, f"texts[{position}]: {exc}") from None
        characters = count_characters(text)
        if characters > limits.max_text_chars:
            raise RequestError(
                422, f"texts[{position}] has {characters} characters; at most {limits.max_text_chars} are allowed"
            )
        total += characters
    if total > limits.max_request_chars:
        raise RequestError(413, f"the texts of this request hold {total} characters; at most "
                                f"{limits.max_request_chars} are allowed per request: send them in several")  # fmt: skip
    return texts


async def read_body(request: Request, max_bytes: int, timeout_s: Optional[float] = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`, and with 408 (closing the
    connection) when it has not all arrived within `timeout_s`."""
    from starlette.requests import ClientDisconnect

    too_large = RequestError(413, f"request body larger than {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s",
                           headers={"Connection": "close"}) from None  # fmt: skip
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected while sending the body") from None
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(400, 'empty request body; send JSON: {"texts": [...]}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RequestError(400, f"malformed JSON: {reason}") from None


# -- the app ----------------------------------------------------------------------------------------------------


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: an error message may echo a client's lone surrogate (in a field name, say), which
    UTF-8 cannot carry; such a body is sent with ASCII escapes instead of failing as a plain-text 500."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class ServiceMiddleware:
    """Around every request: the API key check (every path but /health), and, for any exception a handler lets
    escape, a JSON 500 that names no internals (the log has the traceback under the request id the body carries).
    Answering here, rather than in Starlette's error middleware (which re-raises), keeps the connection open."""

    def __init__(self, app: Any, api_key: Optional[str] = None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    def authorized(self, scope: Mapping[str, Any]) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.expected is not None and scope["path"] != "/health" and not self.authorized(scope):
            response = SafeJSONResponse({"error": "missing or wrong API key: send the header 'Authorization: Bearer "
                                                  "<key>'"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            await response(scope, receive, send)
            return
        started = False

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            request_id = new_request_id()
            logger.exception("request id %s (%s %s) failed", request_id, scope.get("method"), scope.get("path"))
            if started:  # too late for an answer; uvicorn closes the connection
                raise
            error = InternalError(request_id)
            await SafeJSONResponse(error.body(), status_code=500)(scope, receive, send)


def create_app(registry: ModelRegistry, server: Optional[ServerSettings] = None, api_key: Optional[str] = None) -> FastAPI:
    """The FastAPI app over loaded models; stopping the app stops their workers. `server` gives the body read
    timeout; with `api_key`, every endpoint but /health requires it."""
    server = server or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.stop()

    app = FastAPI(title="ERNIE 3.0 serving", lifespan=lifespan, default_response_class=SafeJSONResponse)
    app.add_middleware(ServiceMiddleware, api_key=api_key)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return SafeJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # unknown paths and methods answer in the same {"error": ...} shape as everything else
        return SafeJSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/health")
    async def health() -> dict:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Every model is loaded and its worker running: what a load balancer should check."""
        models = {name: worker.alive for name, worker in registry.workers.items()}
        status = 200 if all(models.values()) else 503
        return SafeJSONResponse({"ready": status == 200, "models": models}, status_code=status)

    @app.get("/models")
    async def models() -> dict:
        return {"models": [worker.describe() for worker in registry.workers.values()]}

    @app.get("/models/{name}")
    async def model(name: str) -> dict:
        return registry.get(name).describe()

    @app.post("/models/{name}/predict")
    async def predict(name: str, request: Request) -> JSONResponse:
        """{"texts": [...]} → {"results": [...]}, one result per text, as Predictor.predict_texts gives them."""
        worker = registry.get(name)
        payload = decode_json(await read_body(request, worker.limits.max_body_bytes, server.read_timeout_s))
        texts = parse_predict_request(payload, worker.task, worker.limits)
        return SafeJSONResponse({"results": await worker.predict(texts)})

    return app


LINGER_S = 2.0  # how long a connection closed on a client error still drains input (see _close_lingering)


def read_timeout_protocol(read_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline for request headers, which uvicorn itself does not have: a connection
    that has not sent a request's complete headers `read_timeout_s` after connecting, or after the first byte of its
    next request, is answered 408 and closed. (Idle keep-alive connections are closed by uvicorn's own
    timeout_keep_alive; the body has its own deadline in read_body.)"""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    def closing_response(status: str, message: str) -> bytes:
        """A whole JSON error response, for when no request has been parsed (so h11 cannot build one)."""
        body = json.dumps({"error": message}).encode()
        head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body

    timeout_response = closing_response("408 Request Timeout", f"request headers did not arrive within {read_timeout_s:g} s")

    class ReadTimeoutH11Protocol(H11Protocol):
        _read_timer: Optional[asyncio.TimerHandle] = None

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._draining:
                return
            if self._read_timer is None and self._between_requests():
                self._arm()  # the first byte of a new request
            super().data_received(data)
            if not self._between_requests():
                self._disarm()  # its headers are in: the app reads the body, with its own deadline

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            super().connection_lost(exc)

        _draining = False

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers malformed HTTP (bad request line, headers over h11's size limit) in plain text
            message = "malformed HTTP request (a bad request line or header, or oversized headers)"
            self.transport.write(closing_response("400 Bad Request", message))
            self._close_lingering()

        def _close_lingering(self) -> None:
            """Close after the answer without resetting: closing a socket with unread input sends a reset that can
            destroy the answer before the client reads it, so stop writing, drain input briefly, then close."""
            self._draining = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.transport.is_closing() or not self._between_requests():
                return
            if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:  # nothing answered yet
                self.transport.write(timeout_response)
            self._close_lingering()

    return ReadTimeoutH11Protocol


def resolve_api_key(server: ServerSettings) -> Optional[str]:
    """The key clients must send: `api_key`, or the value of the environment variable `api_key_env` names."""
    if server.api_key and server.api_key_env:
        raise UserError("server: give 'api_key' or 'api_key_env', not both")
    if server.api_key_env:
        key = os.environ.get(server.api_key_env, "")
        if not key.strip():
            raise UserError(f"server: 'api_key_env' names {server.api_key_env}, which is not set (or empty) in the "
                            "environment")  # fmt: skip
        return key.strip()
    return server.api_key


def is_loopback_host(host: str) -> bool:
    """Whether every address `host` means is a loopback one (an unresolvable host counts as not loopback)."""
    import ipaddress

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening address, taken before models load: a port in use fails at once, and port 0 picks a free one."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host: cannot resolve {host!r} ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    # listening already: a client that connects between the "serving ... on URL" line and uvicorn's start waits in
    # the backlog instead of being refused
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML serving config (see deploy/serving/README.md)")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one (overrides server.port)")
    parser.add_argument("--reuse_port", action="store_true", help="share the port with other replicas (Linux)")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's native logs (graph passes)")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)  # native pass logs and library INFO lines only with --verbose

    config = load_config(args.config)
    overrides = {"host": args.host, "port": args.port, "reuse_port": args.reuse_port or None}
    server = _fill_dataclass(ServerSettings, "command line", {k: v for k, v in overrides.items() if v is not None}, config.server)
    api_key = resolve_api_key(server)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from ernie3.memory import check_memory_budget

    for line in check_memory_budget(config.models, server.max_memory_mb):  # before anything is loaded
        progress(line)
    sock = bind_socket(server.host, server.port, server.reuse_port)
    if api_key is None and not is_loopback_host(server.host):
        progress(f"warning: listening on {server.host}, beyond this machine, without an API key: anyone who reaches "
                 "the port can use the models (set server.api_key_env)")  # fmt: skip
    registry = ModelRegistry.load(config.models, progress)
    import uvicorn

    app = create_app(registry, server, api_key)
    uvicorn_config = uvicorn.Config(
        app, log_level=server.log_level, access_log=server.access_log, lifespan="on",
        http=read_timeout_protocol(server.read_timeout_s), timeout_keep_alive=server.keep_alive_s,
    )  # fmt: skip
    # tests and scripts read this line to find the port (with --port 0)
    progress(f"serving {len(registry.workers)} model(s) ({', '.join(registry.workers)}) on {url_of(sock)}")
    try:
        uvicorn.Server(uvicorn_config).run(sockets=[sock])
    finally:
        registry.stop()


if __name__ == "__main__":
    run_cli(main)
