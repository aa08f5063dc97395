"""Load test of a served model from this machine (loopback only): N concurrent clients, bounded in requests and
time; reports throughput and p50/p90/p99 latency.

    python deploy/serving/load_test.py --model tnews --concurrency 16 --requests 500 --duration 30
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

import requests

from ernie3.cli.client import (DEFAULT_URL, add_api_key_argument, auth_headers, error_of, pick_model,
                               read_input_file, served_task)  # fmt: skip
from ernie3.errors import UserError, run_cli
from ernie3.timing import latency_percentiles

# Bounds that keep a load test from turning into a flood.
MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 256


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
    #: wall time of each answered request, from sending to the whole answer
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def summary(self) -> dict:
        done = len(self.latencies_s)
        latencies = self.latencies_s or [0.0]
        return {
            "concurrency": self.concurrency,
            "texts_per_request": self.texts_per_request,
            "requests": done,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(done / self.seconds, 2) if self.seconds else 0.0,
            "texts_per_s": round(done * self.texts_per_request / self.seconds, 2) if self.seconds else 0.0,
            **{key: round(value, 2) for key, value in latency_percentiles(latencies, prefix="").items()},
            "max_ms": round(max(latencies) * 1000, 2),
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
                    failure = None if response.status_code == 200 else f"HTTP {response.status_code}: {error_of(response)}"
                except requests.RequestException as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                elapsed_s = time.perf_counter() - sent
                with lock:
                    if failure is None:
                        result.latencies_s.append(elapsed_s)
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
                    done, errors = len(result.latencies_s), result.errors
                elapsed = now - started
                progress(f"  {elapsed:5.1f} s: {done} requests answered ({done / elapsed:.1f}/s), {errors} errors")
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Optional[Sequence[str]] = None) -> None:
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


if __name__ == "__main__":
    run_cli(main)
