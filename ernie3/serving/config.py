"""The serving config (deploy/serving/config.yml): server settings, per-model batching and request limits, and the
Predictor options of each model, read from YAML and checked before any model loads. Both services (the FastAPI one
and Ray Serve, ernie3/serving/ray.py) read the same file."""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ernie3.errors import UserError

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    #: passed to the Predictor as keyword arguments (backend, device, precision, num_threads, batch_size, ...);
    #: batch_size defaults to limits.max_batch_size
    predictor_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ServingConfig:
    server: ServerSettings
    models: tuple[ModelSpec, ...]


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: settings that take a number of seconds or milliseconds (the other numbers are whole counts), with their
#: largest value: a timeout beyond a day is a typo, and asyncio's timers overflow on huge values
FLOAT_LIMITS = {"max_wait_ms": 60_000.0, "request_timeout_s": 86_400.0, "read_timeout_s": 86_400.0,
                "keep_alive_s": 86_400.0}  # fmt: skip
#: 0 is meaningful: max_wait_ms 0 (batches hold what queued while the model was busy), max_memory_mb 0 (no limit)
ZERO_ALLOWED = {"max_wait_ms", "max_memory_mb"}


def _checked_value(where: str, key: str, value: Any, expected: Any) -> Any:
    """`value` converted to the type of `expected` (a default value), or a UserError naming the key."""
    if isinstance(expected, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(expected, (int, float)):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        lowest = 0 if key in ZERO_ALLOWED else 1
        if key in FLOAT_LIMITS:
            # NaN passes every comparison (`read_timeout_s: .nan` would fail every connection): finite first
            in_range = is_number and math.isfinite(value) and value >= 0 and (value > 0 or key in ZERO_ALLOWED)
            if not in_range or value > FLOAT_LIMITS[key]:
                bound = ">= 0" if key in ZERO_ALLOWED else "> 0"
                raise UserError(f"{where}: '{key}' must be a number {bound} (finite, at most {FLOAT_LIMITS[key]:g}), "
                                f"got {value!r}")  # fmt: skip
            return float(value)
        if key == "port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise UserError(f"{where}: 'port' must be a port number (0-65535; 0: any free port), got {value!r}")
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            kind = "an integer >= 0 (0: no limit)" if lowest == 0 else "a positive integer"
            raise UserError(f"{where}: '{key}' must be {kind}, got {value!r}")
        return value
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def fill_settings(cls: Any, where: str, values: Mapping[str, Any], base: Any = None) -> Any:
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
    from ernie3.fast_tokenizer import TOKENIZER_CHOICES

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
        elif key == "tokenizer" and value not in TOKENIZER_CHOICES:
            raise UserError(f"{where}: 'tokenizer' must be one of {', '.join(TOKENIZER_CHOICES)}, got {value!r}")
        elif key == "task_options" and (not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value)):
            # checked against the model's task when it loads (the config does not know the task)
            raise UserError(f"{where}: 'task_options' must be a mapping of the task's decoding options to values, "
                            f"got {value!r}")  # fmt: skip
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
    # `ray:` holds the Ray Serve replicas (ernie3/serving/ray.py reads it), so one config serves both services
    unknown = sorted(set(raw) - {"server", "defaults", "models", "ray"})
    if unknown:
        raise UserError(f"unknown config section '{unknown[0]}' (known: server, defaults, models, ray)")
    sections = {}
    for section in ("server", "defaults"):
        value = raw.get(section) or {}
        if not isinstance(value, Mapping):
            raise UserError(f"config section '{section}' must be a mapping")
        sections[section] = value
    server = fill_settings(ServerSettings, "server", sections["server"])
    if server.log_level not in LOG_LEVELS:
        raise UserError(f"server: 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {server.log_level!r}")
    defaults = fill_settings(ServingLimits, "defaults", sections["defaults"])

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
        limits = fill_settings(ServingLimits, f"{where} ({name})", {k: v for k, v in rest.items() if k in limit_keys}, defaults)
        options = check_predictor_options(f"{where} ({name})", {k: v for k, v in rest.items() if k not in limit_keys})
        # a batch holds at most max_batch_size texts: the Predictor's shapes (and the memory plan, read from the same
        # options) stop there unless batch_size says otherwise, rather than at the Predictor's own default of 32
        options.setdefault("batch_size", limits.max_batch_size)
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


def with_overrides(server: ServerSettings, **values: Any) -> ServerSettings:
    """`server` with command-line values (None: not given) in place of the config's, checked like the config's."""
    return fill_settings(ServerSettings, "command line", {k: v for k, v in values.items() if v is not None}, server)
