"""Clients of the serving API: a one-off prediction client (any task type: the served model's task reads its own
input flags), and the HTTP helpers the load test shares (ernie3/cli/load_test.py).

    python deploy/serving/client_seq_cls.py --url http://127.0.0.1:8000 "球队赢得冠军" "新款手机发布"
    python deploy/serving/client_token_cls.py "张三在北京大学工作"
    python deploy/serving/client_qa.py --question "张三在哪里工作？" --context "张三在北京大学工作。"
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional, Sequence

import requests

from ernie3.errors import UserError, run_cli
from ernie3.tasks.long_text import long_task_type

DEFAULT_URL = "http://127.0.0.1:8000"
#: where clients find the server's API key when --api_key is not given (a flag shows in `ps`; the environment does not)
API_KEY_ENV = "ERNIE3_API_KEY"


def error_of(response: Any) -> str:
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
    try:
        response = requests.get(url, timeout=timeout, headers=auth_headers(api_key))
    except requests.RequestException as exc:
        raise UserError(f"cannot reach {url} ({type(exc).__name__}); is the server running?") from None
    if response.status_code != 200:
        raise UserError(f"GET {url}: HTTP {response.status_code}: {error_of(response)}")
    return response.json()


def predict(base_url: str, model: str, texts: Sequence[Any], session: Any = None, timeout: float = 60.0,
            api_key: Optional[str] = None) -> list[dict]:  # fmt: skip
    """POST /models/{model}/predict; a refused request becomes a UserError with the server's message."""
    url = f"{base_url.rstrip('/')}/models/{model}/predict"
    try:
        response = (session or requests).post(url, json={"texts": list(texts)}, timeout=timeout,
                                              headers=auth_headers(api_key))  # fmt: skip
    except requests.RequestException as exc:
        raise UserError(f"cannot reach {url} ({type(exc).__name__}); is the server running?") from None
    if response.status_code != 200:
        raise UserError(f"{model}: HTTP {response.status_code}: {error_of(response)}")
    return response.json()["results"]


def serves_type(model: dict, task_type: str) -> bool:
    """Whether a GET /models entry takes `task_type`'s inputs: a model of that type, or its long-text variant
    (`<name>_long`, which reads the same raw inputs in windows)."""
    return model["task_type"] in (task_type, long_task_type(task_type))


def pick_model(base_url: str, name: Optional[str], task_type: Optional[str] = None, api_key: Optional[str] = None) -> dict:
    """GET /models entry of the model to ask: `name`, or the server's only model (of `task_type`, if given)."""
    models = get_json(f"{base_url.rstrip('/')}/models", api_key=api_key)["models"]
    if name is not None:
        match = next((m for m in models if m["name"] == name), None)
        if match is None:
            raise UserError(f"--model: the server has no model '{name}' (served: {', '.join(m['name'] for m in models)})")
        if task_type is not None and not serves_type(match, task_type):
            raise UserError(f"--model: '{name}' is a {match['task_type']} model, not {task_type}")
        return match
    candidates = [m for m in models if task_type is None or serves_type(m, task_type)]
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


def main(task_type: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> None:
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


if __name__ == "__main__":
    run_cli(main)
