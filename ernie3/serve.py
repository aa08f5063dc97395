"""HTTP serving of exported models: a FastAPI app on uvicorn, with per-model request batching.

    python deploy/serving/serve.py --config deploy/serving/config.yml [--host 127.0.0.1] [--port 8000]

Every model of the YAML config is loaded once, at start-up, into its own worker thread; that thread owns the
model's Predictor (Paddle predictors are not thread-safe) and runs batches of texts gathered from requests that
arrive together. The event loop only parses and validates requests, so it keeps answering while models compute.
This module only adapts HTTP to `Predictor.predict_texts`: what a text is, and what a result holds, is the task
definition's business (ernie3/tasks).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ernie3.errors import UserError, run_cli

logger = logging.getLogger("uvicorn.error")  # runtime messages appear in uvicorn's log, in its format

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# -- configuration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingLimits:
    """Batching and request limits of one model; `defaults:` in the config, overridable per model."""

    #: texts run together in one batch at most (a single larger request still runs, alone)
    max_batch_size: int = 16
    #: how long the first request of a batch waits for others to join it; 0: a batch is what queued while the model
    #: ran the previous one (no added latency for a lone request, and as much throughput under load on CPU)
    max_wait_ms: float = 0.0
    #: requests waiting for a model at most; beyond that, requests are refused with 503
    max_queued_requests: int = 256
    max_texts_per_request: int = 64
    #: characters of one text at most (all strings of a text: both texts of a pair, question + context)
    max_text_chars: int = 2000
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
FLOAT_LIMITS = {"max_wait_ms", "request_timeout_s"}  # the other limits are positive integers
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


def parse_config(raw: Any, base_dir: str) -> ServingConfig:
    """A serving config from its parsed YAML; model paths are relative to `base_dir` (the config's folder)."""
    if not isinstance(raw, Mapping):
        raise UserError("the config must be a YAML mapping with 'server', 'defaults' and 'models' sections")
    unknown = sorted(set(raw) - {"server", "defaults", "models"})
    if unknown:
        raise UserError(f"unknown config section '{unknown[0]}' (known: server, defaults, models)")
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
        options = {k: v for k, v in rest.items() if k not in limit_keys}
        path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(entry["path"])))
        models.append(ModelSpec(name, path, limits, options))
    return ServingConfig(server, tuple(models))


def load_config(path: str) -> ServingConfig:
    import yaml

    if not os.path.isfile(path):
        raise UserError(f"--config: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return parse_config(raw, os.path.dirname(os.path.abspath(path)))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


# -- models and their batching workers --------------------------------------------------------------------------


def load_predictor(spec: ModelSpec) -> Any:
    """The one place the server builds a Predictor; any failure becomes one clear line naming the model."""
    from ernie3.predict import Predictor

    try:
        return Predictor(spec.path, **spec.predictor_options)
    except UserError as exc:
        raise UserError(f"model '{spec.name}' could not be loaded: {exc}") from None
    except Exception as exc:  # Paddle and the tokenizer raise many kinds; all mean this model cannot serve
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"model '{spec.name}' could not be loaded from {spec.path}: {reason[:300]}") from None


class RequestError(Exception):
    """A request the server refuses: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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
                "inference_seconds": round(self.inference_seconds, 4),
            }


@dataclass
class Job:
    """One request's texts, and the future (of the event loop that waits on it) that gets their results."""

    texts: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()  # queued to end a worker


def _settle(future: asyncio.Future, result: Any = None, error: Optional[BaseException] = None) -> None:
    """Runs on the event loop: a request that timed out has a cancelled future already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelWorker:
    """One model: its Predictor, owned by one thread that runs batches of queued requests."""

    def __init__(self, spec: ModelSpec, predictor: Any):
        self.spec = spec
        self.limits = spec.limits
        self.predictor = predictor
        self.task = predictor.task
        self.stats = BatchStats()
        self._jobs: queue.Queue = queue.Queue(maxsize=spec.limits.max_queued_requests)
        self._carried: Optional[Job] = None  # a job that did not fit into the previous batch
        self._thread = threading.Thread(target=self._serve, name=f"model-{spec.name}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the worker after the batches already queued; requests still waiting then are refused."""
        if not self._thread.is_alive():
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def describe(self) -> dict:
        """What GET /models tells about this model: task, where it came from, its limits and batch statistics."""
        return {
            "name": self.spec.name,
            **self.task.describe(),
            "path": self.spec.path,
            "max_seq_length": self.predictor.max_seq_length,
            "predictor_options": dict(self.spec.predictor_options),
            # what the Predictor chose where the config left it to defaults or "auto"
            "backend": self.predictor.backend_name,
            "device": self.predictor.device,
            "precision": self.predictor.precision,
            "limits": dataclasses.asdict(self.limits),
            "ready": self.alive,
            "queued_requests": self._jobs.qsize(),
            "stats": self.stats.snapshot(),
        }

    async def predict(self, texts: list) -> list[dict]:
        """Results of `texts` (already validated), computed by the worker thread together with other requests'."""
        if not self.alive:
            raise RequestError(503, f"model '{self.spec.name}' is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._jobs.put_nowait(Job(texts, future, loop))
        except queue.Full:
            raise RequestError(503, f"model '{self.spec.name}' is busy ({self.limits.max_queued_requests} requests "
                                    "queued); retry later") from None  # fmt: skip
        try:
            return await asyncio.wait_for(future, self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, f"model '{self.spec.name}' gave no answer within "
                                    f"{self.limits.request_timeout_s:g} s") from None  # fmt: skip

    # -- the worker thread ---------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._run_batch(batch)
        self._refuse_waiting("the server is shutting down")

    def _next_batch(self) -> Optional[list[Job]]:
        """The next batch of requests still waiting for an answer; None once the worker is asked to stop."""
        while True:
            batch = self._gather()
            if batch is None:
                return None
            # requests that timed out meanwhile need no work
            batch = [job for job in batch if not job.future.cancelled()]
            if batch:
                return batch

    def _gather(self) -> Optional[list[Job]]:
        """Blocks for a first request, then gathers others until the batch is full or `max_wait_ms` has passed."""
        first = self._carried if self._carried is not None else self._jobs.get()
        self._carried = None
        if first is _STOP:
            return None
        batch, size = [first], len(first.texts)
        deadline = time.monotonic() + self.limits.max_wait_ms / 1000
        while size < self.limits.max_batch_size:
            try:
                remaining = deadline - time.monotonic()
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or size + len(job.texts) > self.limits.max_batch_size:
                self._carried = job
                break
            batch.append(job)
            size += len(job.texts)
        return batch

    def _run_batch(self, batch: list[Job]) -> None:
        texts = [text for job in batch for text in job.texts]
        started = time.perf_counter()
        try:
            results = self.predictor.predict_texts(texts)
        except Exception as exc:  # noqa: BLE001 (reported to the requests, and logged)
            self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=True)
            if len(batch) > 1:
                # one request's texts may be what fails: run each alone so the others still get their results
                for job in batch:
                    self._run_batch([job])
                return
            logger.exception("model '%s': prediction failed", self.spec.name)
            error = RequestError(500, f"prediction failed: {type(exc).__name__}: {exc}")
            job = batch[0]
            job.loop.call_soon_threadsafe(_settle, job.future, None, error)
            return
        self.stats.record(len(batch), len(texts), time.perf_counter() - started, failed=False)
        offset = 0
        for job in batch:
            job_results = results[offset : offset + len(job.texts)]
            offset += len(job.texts)
            job.loop.call_soon_threadsafe(_settle, job.future, job_results)

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
            workers.append(ModelWorker(spec, predictor))
            progress(f"  {spec.name}: {predictor.task.task_type} task {predictor.task.name}, "
                     f"loaded in {time.perf_counter() - started:.1f} s")  # fmt: skip
        registry = cls(workers)
        for worker in workers:
            worker.start()
        return registry

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
    for position, text in enumerate(texts):
        try:
            task.example_from_text(text)
        except RecordError as exc:
            raise RequestError(422, f"texts[{position}]: {exc}") from None
        characters = count_characters(text)
        if characters > limits.max_text_chars:
            raise RequestError(
                422, f"texts[{position}] has {characters} characters; at most {limits.max_text_chars} are allowed"
            )
    return texts


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    too_large = RequestError(413, f"request body larger than {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(400, 'empty request body; send JSON: {"texts": [...]}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(400, f"malformed JSON: {exc}") from None


# -- the app ----------------------------------------------------------------------------------------------------


def create_app(registry: ModelRegistry) -> FastAPI:
    """The FastAPI app over loaded models; stopping the app stops their workers."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.stop()

    app = FastAPI(title="ERNIE 3.0 serving", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # unknown paths and methods answer in the same {"error": ...} shape as everything else
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/health")
    async def health() -> dict:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Every model is loaded and its worker running: what a load balancer should check."""
        models = {name: worker.alive for name, worker in registry.workers.items()}
        status = 200 if all(models.values()) else 503
        return JSONResponse({"ready": status == 200, "models": models}, status_code=status)

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
        payload = decode_json(await read_body(request, worker.limits.max_body_bytes))
        texts = parse_predict_request(payload, worker.task, worker.limits)
        return JSONResponse({"results": await worker.predict(texts)})

    return app


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
    args = parser.parse_args(argv)

    config = load_config(args.config)
    overrides = {"host": args.host, "port": args.port, "reuse_port": args.reuse_port or None}
    server = _fill_dataclass(ServerSettings, "command line", {k: v for k, v in overrides.items() if v is not None}, config.server)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from ernie3.memory import check_memory_budget

    for line in check_memory_budget(config.models, server.max_memory_mb):  # before anything is loaded
        progress(line)
    sock = bind_socket(server.host, server.port, server.reuse_port)
    registry = ModelRegistry.load(config.models, progress)
    import uvicorn

    app = create_app(registry)
    uvicorn_config = uvicorn.Config(app, log_level=server.log_level, access_log=server.access_log, lifespan="on")
    # tests and scripts read this line to find the port (with --port 0)
    progress(f"serving {len(registry.workers)} model(s) ({', '.join(registry.workers)}) on {url_of(sock)}")
    try:
        uvicorn.Server(uvicorn_config).run(sockets=[sock])
    finally:
        registry.stop()


if __name__ == "__main__":
    run_cli(main)
