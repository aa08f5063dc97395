"""Clients of the serving API (ernie3/serve.py): one-off predictions per task type, and a loopback load test.

    python deploy/serving/client_seq_cls.py --url http://127.0.0.1:8000 "球队赢得冠军" "新款手机发布"
    python deploy/serving/client_token_cls.py "张三在北京大学工作"
    python deploy/serving/client_qa.py --question "张三在哪里工作？" --context "张三在北京大学工作。"
    python deploy/serving/load_test.py --model tnews --concurrency 16 --requests 500 --duration 30
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

from ernie3.errors import UserError

DEFAULT_URL = "http://127.0.0.1:8000"
#: where clients find the server's API key when --api_key is not given (a flag shows in `ps`; the environment does not)
API_KEY_ENV = "ERNIE3_API_KEY"

# Bounds that keep a load test from turning into a flood.
MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 256


def _requests() -> Any:
    import requests

    return requests


def _error_of(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text.strip()[:200]


def auth_headers(api_key: Optional[str]) -> dict:
    """The Authorization header for a server that requires a key; `api_key` None: the one in $ERNIE3_API_KEY."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def add_api_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api_key", help=f"the server's API key, if it requires one (default: ${API_KEY_ENV})")


def get_json(url: str, timeout: float = 10.0, api_key: Optional[str] = None) -> Any:
    requests = _requests()
    try:
        response = requests.get(url, timeout=timeout, headers=auth_headers(api_key))
    except requests.RequestException as exc:
        raise UserError(f"cannot reach {url} ({type(exc).__name__}); is the server running?") from None
    if response.status_code != 200:
        raise UserError(f"GET {url}: HTTP {response.status_code}: {_error_of(response)}")
    return response.json()


def predict(base_url: str, model: str, texts: Sequence[Any], session: Any = None, timeout: float = 60.0,
            api_key: Optional[str] = None) -> list[dict]:  # fmt: skip
    """POST /models/{model}/predict; a refused request becomes a UserError with the server's message."""
    requests = _requests()
    url = f"{base_url.rstrip('/')}/models/{model}/predict"
    try:
        response = (session or requests).post(url, json={"texts": list(texts)}, timeout=timeout,
                                              headers=auth_headers(api_key))  # fmt: skip
    except requests.RequestException as exc:
        raise UserError(f"cannot reach {url} ({type(exc).__name__}); is the server running?") from None
    if response.status_code != 200:
        raise UserError(f"{model}: HTTP {response.status_code}: {_error_of(response)}")
    return response.json()["results"]


def pick_model(base_url: str, name: Optional[str], task_type: Optional[str] = None, api_key: Optional[str] = None) -> dict:
    """GET /models entry of the model to ask: `name`, or the server's only model (of `task_type`, if given)."""
    models = get_json(f"{base_url.rstrip('/')}/models", api_key=api_key)["models"]
    if name is not None:
        match = next((m for m in models if m["name"] == name), None)
        if match is None:
            raise UserError(f"--model: the server has no model '{name}' (served: {', '.join(m['name'] for m in models)})")
        if task_type is not None and match["task_type"] != task_type:
            raise UserError(f"--model: '{name}' is a {match['task_type']} model, not {task_type}")
        return match
    candidates = [m for m in models if task_type in (None, m["task_type"])]
    if len(candidates) != 1:
        kind = f"{task_type} " if task_type else ""
        found = f"several {kind}models ({', '.join(m['name'] for m in candidates)})" if candidates else f"no {kind}model"
        raise UserError(f"the server has {found}; choose one with --model")
    return candidates[0]


def read_input_file(path: str) -> list:
    """JSON lines, each one text exactly as the API takes it (a string, a pair, a {question, context} object)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [(number, line) for number, line in enumerate(handle, start=1) if line.strip()]
    except OSError as exc:
        raise UserError(f"--input_file: cannot read {path} ({exc.strerror})") from None
    texts = []
    for number, line in lines:
        try:
            texts.append(json.loads(line))
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not a JSON value ({exc})") from None
    if not texts:
        raise UserError(f"--input_file: {path} holds no texts")
    return texts


# -- one-off client ---------------------------------------------------------------------------------------------


def served_task(model: dict) -> Any:
    """The task definition of a served model (GET /models names it), which knows its raw inputs' shape."""
    from ernie3.tasks import get_task

    return get_task(model["task_name"])


def texts_from_args(args: argparse.Namespace, model: dict) -> list:
    """The request's texts, in the shape the served model's task takes: from --input_file, or from the positional
    texts and the input flags (--text_pair, --question/--context, ...), which the task reads itself."""
    from ernie3.tasks import RecordError, all_input_flags

    if args.input_file:
        return read_input_file(args.input_file)
    values = {flag: list(getattr(args, flag, None) or []) for flag in all_input_flags()}
    values["text"] = list(args.texts) + values["text"]
    task = served_task(model)
    try:
        texts = task.inputs_from_flags(values)
    except RecordError as exc:
        raise UserError(f"'{model['name']}': {exc}") from None
    if not texts:
        flags = " ".join("TEXT..." if flag == "text" else f"--{flag}" for flag in task.input_flags)
        raise UserError(f"'{model['name']}' needs inputs: give {flags} (or --input_file)")
    return texts


def client_main(task_type: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> None:
    """Send texts to a served model (of `task_type`, if given) and print one JSON line per text: its input and
    result."""
    from ernie3.tasks import all_input_flags

    kind = f"{task_type} " if task_type else ""
    parser = argparse.ArgumentParser(description=f"Ask a served {kind}model for predictions.")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server address (default {DEFAULT_URL})")
    parser.add_argument("--model", help=f"served model name (default: the server's only {kind}model)")
    parser.add_argument("--input_file", help="JSON lines, one text per line, in the API's shape")
    parser.add_argument("texts", nargs="*", help="texts to send (single-text tasks)")
    for flag, text in all_input_flags().items():
        parser.add_argument(f"--{flag}", action="append", help=text)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    add_api_key_argument(parser)
    args = parser.parse_args(argv)

    model = pick_model(args.url, args.model, task_type, args.api_key)
    texts = texts_from_args(args, model)
    results = predict(args.url, model["name"], texts, timeout=args.timeout, api_key=args.api_key)
    for text, result in zip(texts, results):
        print(json.dumps({"input": text, **result}, ensure_ascii=False))


# -- load test --------------------------------------------------------------------------------------------------


def check_loopback(url: str) -> None:
    """The load test only targets this machine: every address the host resolves to must be loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--url: expected http://HOST:PORT, got {url!r}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except socket.gaierror as exc:
        raise UserError(f"--url: cannot resolve {parts.hostname!r} ({exc.strerror})") from None
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if outside:
        where = "is" if parts.hostname == outside[0] else f"resolves to {outside[0]}, which is"
        raise UserError(f"--url: the load test only targets this machine; {parts.hostname} {where} not a loopback address")


@dataclass
class LoadTestResult:
    concurrency: int
    texts_per_request: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def summary(self) -> dict:
        import numpy as np

        done = len(self.latencies_ms)
        latencies = np.asarray(self.latencies_ms) if done else np.zeros(1)
        return {
            "concurrency": self.concurrency,
            "texts_per_request": self.texts_per_request,
            "requests": done,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(done / self.seconds, 2) if self.seconds else 0.0,
            "texts_per_s": round(done * self.texts_per_request / self.seconds, 2) if self.seconds else 0.0,
            **{f"p{q}_ms": round(float(np.percentile(latencies, q)), 2) for q in (50, 90, 99)},
            "max_ms": round(float(latencies.max()), 2),
            **({"first_error": self.first_error} if self.errors else {}),
        }


def run_load_test(
    base_url: str,
    model: str,
    inputs: Sequence[Any],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    texts_per_request: int = 1,
    progress_every_s: float = 5.0,
    progress: Any = None,
    api_key: Optional[str] = None,
) -> LoadTestResult:
    """`concurrency` clients, each sending its next request as soon as the last is answered, until `max_requests`
    requests were sent or `max_seconds` passed. Successful requests' latencies are kept; errors are counted."""
    requests = _requests()
    url = f"{base_url.rstrip('/')}/models/{model}/predict"
    lock = threading.Lock()
    issued = 0
    result = LoadTestResult(concurrency, texts_per_request, 0.0)
    started = time.perf_counter()
    deadline = started + max_seconds

    def next_request_number() -> Optional[int]:
        nonlocal issued
        with lock:
            if issued >= max_requests or time.perf_counter() >= deadline:
                return None
            issued += 1
            return issued - 1

    def client() -> None:
        with requests.Session() as session:  # keep-alive, as a real client would
            session.headers.update(auth_headers(api_key))
            while (number := next_request_number()) is not None:
                first = number * texts_per_request
                texts = [inputs[(first + k) % len(inputs)] for k in range(texts_per_request)]
                sent = time.perf_counter()
                try:
                    response = session.post(url, json={"texts": texts}, timeout=max(10.0, max_seconds))
                    failure = None if response.status_code == 200 else f"HTTP {response.status_code}: {_error_of(response)}"
                except requests.RequestException as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                elapsed_ms = (time.perf_counter() - sent) * 1000
                with lock:
                    if failure is None:
                        result.latencies_ms.append(elapsed_ms)
                    else:
                        result.errors += 1
                        result.first_error = result.first_error or failure

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    last_report = started
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
            now = time.perf_counter()
            if progress is not None and now - last_report >= progress_every_s:
                last_report = now
                with lock:
                    done, errors = len(result.latencies_ms), result.errors
                elapsed = now - started
                progress(f"  {elapsed:5.1f} s: {done} requests answered ({done / elapsed:.1f}/s), {errors} errors")
    result.seconds = time.perf_counter() - started
    return result


def load_test_main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Load-test a served model from this machine: N concurrent clients, bounded in requests and time; "
        "reports throughput and p50/p90/p99 latency."
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server address, loopback only (default {DEFAULT_URL})")
    parser.add_argument("--model", help="served model name (default: the server's only model)")
    parser.add_argument("--concurrency", type=int, default=1, help="clients sending requests at the same time")
    parser.add_argument("--requests", type=int, default=200, help=f"requests to send at most (<= {MAX_REQUESTS})")
    parser.add_argument("--duration", type=float, default=30.0, help=f"seconds to run at most (<= {MAX_DURATION_S:g})")
    parser.add_argument("--texts_per_request", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10, help="requests sent first and not counted")
    parser.add_argument("--input_file", help="JSON lines of texts (default: built-in inputs for the model's task type)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_api_key_argument(parser)
    args = parser.parse_args(argv)

    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UserError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if not 1 <= args.requests <= MAX_REQUESTS:
        raise UserError(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        raise UserError(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} seconds")
    if args.texts_per_request < 1 or args.warmup < 0:
        raise UserError("--texts_per_request must be positive and --warmup not negative")
    check_loopback(args.url)

    model = pick_model(args.url, args.model, api_key=args.api_key)
    inputs = read_input_file(args.input_file) if args.input_file else served_task(model).sample_inputs()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.warmup:
        run_load_test(args.url, model["name"], inputs, min(args.concurrency, args.warmup), args.warmup, args.duration,
                      args.texts_per_request, api_key=args.api_key)  # fmt: skip
    progress(f"load test: {model['name']} ({model['task_type']}), {args.concurrency} clients, "
             f"at most {args.requests} requests or {args.duration:g} s")  # fmt: skip
    result = run_load_test(args.url, model["name"], inputs, args.concurrency, args.requests, args.duration,
                           args.texts_per_request, progress=progress, api_key=args.api_key)  # fmt: skip
    summary = {"model": model["name"], **result.summary()}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        width = max(len(key) for key in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}")
    if result.errors:
        raise UserError(f"{result.errors} requests failed; first: {result.first_error}")
