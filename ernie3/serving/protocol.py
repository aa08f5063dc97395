"""The HTTP API's request rules, shared by both services: the errors a request is answered with, reading a body
within its size and time bounds, decoding it, and checking a predict request against a model's limits and its
task's own input rules (what a text is, is the task definition's business: ernie3/tasks)."""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Mapping, Optional

from starlette.requests import ClientDisconnect, Request

from ernie3.serving.config import ServingLimits

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
        # decoded here, not by json.loads, which would also take UTF-16 and UTF-32 bodies (the API is UTF-8 only;
        # a UTF-8 BOM is still UTF-8)
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the request body is not UTF-8 ({exc.reason} at byte {exc.start}); "
                                "send JSON encoded as UTF-8") from None  # fmt: skip
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RequestError(400, f"malformed JSON: {reason}") from None


