"""The FastAPI app of the service: routes over the loaded models, every error answered as {"error": ...} (4xx for
what a client gets wrong; 500 with a request id that points into the log, never internals), and the API key check.
This module only adapts HTTP to `Predictor.predict_texts` through the models' workers."""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
from typing import Any, AsyncIterator, Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ernie3.serving.config import ServerSettings
from ernie3.serving.protocol import (InternalError, RequestError, decode_json, new_request_id, parse_predict_request,
                                     read_body)  # fmt: skip
from ernie3.serving.worker import ModelRegistry

logger = logging.getLogger("uvicorn.error")  # runtime messages appear in uvicorn's log, in its format


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


