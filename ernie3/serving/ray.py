"""Serving replicas on Ray Serve: the HTTP API of the FastAPI service (ernie3/serving), each model a Ray Serve
deployment.

    python deploy/serving/serve_ray.py --config deploy/serving/config.yml [--address auto]

The same config file as the FastAPI service, plus an optional `ray:` section (replicas, autoscaling bounds, CPUs per
replica; see deploy/serving/README.md). Requests are parsed and validated by the FastAPI service's own functions
(ernie3/serving/protocol.py) in an ingress deployment, so every 4xx answer is the same; each model's replicas batch
requests with Ray Serve's `@serve.batch` (in place of the FastAPI service's worker thread) and run the project's
Predictor, so every result is the same too.
"""
# no `from __future__ import annotations`: FastAPI reads the route annotations (Request) of the ingress class,
# which Ray pickles by value, keeping only the globals its code names, so string annotations would not resolve
import asyncio
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from ernie3.errors import UserError
from ernie3.serving.config import ModelSpec, ServingConfig, parse_config, read_config_file
from ernie3.serving.models import BatchStats, check_first_predictions, describe_model, load_predictor
from ernie3.serving.protocol import RequestError, decode_json, parse_predict_request, read_body

APP_NAME = "ernie3"


# -- the `ray:` section of the serving config ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaSettings:
    """How one model's deployment scales; the section's top level gives the defaults, `models: {name: ...}` overrides."""

    #: fixed replica count (when no autoscaling bounds are given)
    num_replicas: int = 1
    #: autoscaling: Ray Serve keeps between min_replicas and max_replicas, aiming at target_ongoing_requests each
    min_replicas: Optional[int] = None
    max_replicas: Optional[int] = None
    target_ongoing_requests: float = 2.0
    #: CPUs Ray reserves per replica (match the model's num_threads)
    num_cpus: float = 1.0

    @property
    def autoscaling(self) -> Optional[dict]:
        if self.min_replicas is None and self.max_replicas is None:
            return None
        return {"min_replicas": self.min_replicas if self.min_replicas is not None else 1,
                "max_replicas": self.max_replicas if self.max_replicas is not None else max(1, self.min_replicas or 1),
                "target_ongoing_requests": self.target_ongoing_requests}  # fmt: skip


@dataclass(frozen=True)
class RaySection:
    #: join this Ray cluster ("auto", "ray://head:10001"); None: start a local Ray
    address: Optional[str] = None
    defaults: ReplicaSettings = field(default_factory=ReplicaSettings)
    models: Mapping[str, ReplicaSettings] = field(default_factory=dict)

    def replicas_of(self, name: str) -> ReplicaSettings:
        return self.models.get(name, self.defaults)


def _replica_settings(where: str, values: Mapping[str, Any], base: ReplicaSettings) -> ReplicaSettings:
    known = {f.name for f in dataclasses.fields(ReplicaSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown setting '{unknown[0]}' (known: {', '.join(sorted(known))})")
    checked = {}
    for key, value in values.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("num_cpus", "target_ongoing_requests"):
            # NaN passes `<= 0`; inf CPUs per replica would never be scheduled
            if not is_number or not math.isfinite(value) or value <= 0:
                raise UserError(f"{where}: '{key}' must be a number > 0 (finite), got {value!r}")
            checked[key] = float(value)
        else:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "min_replicas" else 1):
                raise UserError(f"{where}: '{key}' must be a positive integer, got {value!r}")
            checked[key] = value
    settings = dataclasses.replace(base, **checked)
    if settings.min_replicas is not None and settings.max_replicas is not None and settings.min_replicas > settings.max_replicas:
        raise UserError(f"{where}: min_replicas {settings.min_replicas} is above max_replicas {settings.max_replicas}")
    return settings


def parse_ray_section(raw: Any, model_names: Sequence[str]) -> RaySection:
    """The optional `ray:` section: `address`, replica settings (defaults) and per-model overrides under `models`."""
    if raw is None:
        return RaySection()
    if not isinstance(raw, Mapping):
        raise UserError("config section 'ray' must be a mapping")
    address = raw.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        raise UserError(f"ray: 'address' must be a non-empty string, got {address!r}")
    overrides = raw.get("models") or {}
    if not isinstance(overrides, Mapping):
        raise UserError("ray: 'models' must map model names to replica settings")
    defaults = _replica_settings("ray", {k: v for k, v in raw.items() if k not in ("address", "models")}, ReplicaSettings())
    models = {}
    for name, values in overrides.items():
        if name not in model_names:
            raise UserError(f"ray.models: '{name}' is not a served model (served: {', '.join(model_names)})")
        if not isinstance(values, Mapping):
            raise UserError(f"ray.models.{name}: expected a mapping of replica settings")
        models[name] = _replica_settings(f"ray.models.{name}", values, defaults)
    return RaySection(address, defaults, models)


def load_ray_config(path: str) -> tuple[ServingConfig, RaySection]:
    """A serving config with its `ray:` section (which the FastAPI service leaves alone)."""
    raw = read_config_file(path)
    try:
        ray_raw = raw.pop("ray", None) if isinstance(raw, dict) else None
        config = parse_config(raw, os.path.dirname(os.path.abspath(path)))
        return config, parse_ray_section(ray_raw, [spec.name for spec in config.models])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


# -- deployments ---------------------------------------------------------------------------------------------------


def _request_size(items: list) -> int:
    """Texts in a batch of requests for `@serve.batch`; a lone request always fits (as in the FastAPI service, a
    request larger than max_batch_size runs alone rather than failing)."""
    return 1 if len(items) == 1 else sum(len(texts) for texts in items)


class ModelReplica:
    """One replica of one model: its Predictor, fed batches of requests by Ray Serve."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.predictor = load_predictor(spec)
        # fail at deployment, not on every request; the shape buckets warm up on the thread that runs batches
        check_first_predictions(spec.name, self.predictor)
        self.stats = BatchStats()
        self.predict_batch.set_max_batch_size(spec.limits.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(spec.limits.max_wait_ms / 1000)

    async def predict(self, texts: list) -> list[dict]:
        return await self.predict_batch(texts)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=_request_size)
    async def predict_batch(self, requests: list[list]) -> list[list[dict]]:
        texts = [text for texts in requests for text in texts]
        started = time.perf_counter()
        try:
            results = self.predictor.predict_texts(texts)
        except Exception:
            self.stats.record(len(requests), len(texts), time.perf_counter() - started, failed=True)
            raise
        self.stats.record(len(requests), len(texts), time.perf_counter() - started, failed=False)
        answers, offset = [], 0
        for texts_of_request in requests:
            answers.append(results[offset : offset + len(texts_of_request)])
            offset += len(texts_of_request)
        return answers

    def describe(self) -> dict:
        """What GET /models tells about this model (statistics are this replica's)."""
        return describe_model(self.spec, self.predictor, self.stats.snapshot(), ready=True)


def build_app(config: ServingConfig, ray_section: RaySection) -> Any:
    """The Ray Serve application: an ingress with the FastAPI service's routes and validation, one deployment per model."""
    from ray.serve.exceptions import BackPressureError

    from ernie3.export import task_of_model_dir

    app = FastAPI(title="ERNIE 3.0 serving (Ray Serve)")

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @serve.deployment(ray_actor_options={"num_cpus": 0})  # routing only; the models hold the CPUs
    @serve.ingress(app)
    class Gateway:
        def __init__(self, specs: Sequence[ModelSpec], handles: dict):
            self.specs = {spec.name: spec for spec in specs}
            self.handles = handles
            # validation needs only the task, read from the model directory (the model itself is in the replicas)
            self.tasks = {spec.name: task_of_model_dir(spec.path) for spec in specs}

        def spec_of(self, name: str) -> ModelSpec:
            if name not in self.specs:
                raise RequestError(404, f"unknown model '{name}' (served: {', '.join(self.specs)})")
            return self.specs[name]

        @app.get("/health")
        async def health(self) -> dict:
            return {"status": "ok"}

        @app.get("/ready")
        async def ready(self) -> JSONResponse:
            models = {}
            for name, handle in self.handles.items():
                try:
                    await asyncio.wait_for(handle.describe.remote(), 5.0)
                    models[name] = True
                except Exception:  # noqa: BLE001 (any failure means: not ready)
                    models[name] = False
            status = 200 if all(models.values()) else 503
            return JSONResponse({"ready": status == 200, "models": models}, status_code=status)

        @app.get("/models")
        async def models(self) -> dict:
            return {"models": [await self.handles[name].describe.remote() for name in self.specs]}

        @app.get("/models/{name}")
        async def model(self, name: str) -> dict:
            self.spec_of(name)
            return await self.handles[name].describe.remote()

        @app.post("/models/{name}/predict")
        async def predict(self, name: str, request: Request) -> JSONResponse:
            spec = self.spec_of(name)
            payload = decode_json(await read_body(request, spec.limits.max_body_bytes))
            texts = parse_predict_request(payload, self.tasks[name], spec.limits)
            try:
                results = await asyncio.wait_for(self.handles[name].predict.remote(texts), spec.limits.request_timeout_s)
            except asyncio.TimeoutError:
                raise RequestError(504, f"model '{name}' gave no answer within {spec.limits.request_timeout_s:g} s") from None
            except BackPressureError:
                raise RequestError(503, f"model '{name}' is busy ({spec.limits.max_queued_requests} requests "
                                        "queued); retry later") from None  # fmt: skip
            except Exception as exc:  # noqa: BLE001 (the replica's error, reported like the FastAPI service does)
                cause = getattr(exc, "cause", None) or exc
                raise RequestError(500, f"prediction failed: {type(cause).__name__}: {cause}") from None
            return JSONResponse({"results": results})

    handles = {}
    for spec in config.models:
        replicas = ray_section.replicas_of(spec.name)
        options: dict = {
            "name": f"model-{spec.name}",
            "ray_actor_options": {"num_cpus": replicas.num_cpus},
            # enough requests in flight per replica to fill a batch; beyond the queue bound, 503
            "max_ongoing_requests": max(2 * spec.limits.max_batch_size, 4),
            "max_queued_requests": spec.limits.max_queued_requests,
        }
        if replicas.autoscaling:
            options["autoscaling_config"] = replicas.autoscaling
        else:
            options["num_replicas"] = replicas.num_replicas
        handles[spec.name] = serve.deployment(ModelReplica).options(**options).bind(spec)
    return Gateway.bind(list(config.models), handles)


def cpus_needed(config: ServingConfig, ray_section: RaySection) -> int:
    """Logical CPUs a local Ray needs for every model at its largest replica count."""
    total = 0.0
    for spec in config.models:
        replicas = ray_section.replicas_of(spec.name)
        count = replicas.max_replicas or replicas.min_replicas or replicas.num_replicas
        total += count * replicas.num_cpus
    return max(1, int(total + 0.999))


def start(config: ServingConfig, ray_section: RaySection, host: str, port: int) -> Any:
    """Start Ray Serve's HTTP proxy on host:port and deploy the application; returns its handle."""
    from ernie3.ray_batch import start_ray

    start_ray(ray_section.address, cpus_needed(config, ray_section), flag="the Ray address (--address, ray.address)")
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(config, ray_section), name=APP_NAME, route_prefix="/")
