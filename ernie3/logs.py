"""Quiet by default: the native libraries' chatter stays out of the user's terminal unless asked for.

Paddle Inference's IR passes print dozens of lines per model load (`---    quantized 0 fused_conv2d ops`, ...)
straight to the process's stderr from C++, past `Config.disable_glog_info()` and glog's level flags; paddle2onnx
and Polygraphy print to stdout. The only lever that reaches them is the file descriptors themselves, so native
calls that chatter run inside `native_output_captured()`, which sends fd 1 and 2 to a temporary file and shows
what was captured only with `--verbose` / ERNIE3_VERBOSE=1 (or in the error when the call fails).

Paddle's glog INFO lines (`New Executor is Running`, `Hardware support for BFLOAT16 is enabled`, ...) come from
anywhere in paddle, also outside those calls; glog reads its level from GLOG_minloglevel once, when paddle's library
loads, so `quiet_native_logs()` sets it before the first `import paddle` (ernie3/__init__.py) and `--verbose` takes
it back when paddle is not loaded yet (the entry points parse their flags before importing paddle).

Training and compress runs (`configure_run_logging`) keep the Python libraries' INFO/DEBUG dumps (paddlenlp's
argument dump, per-step lines, paddle's PTQ progress) out of the terminal too: every record goes to the run's log
file (OUTPUT/ernie3.log, `attach_run_log`), the terminal shows warnings and errors only, each warning once
(`The old way to load inference model is deprecated` is logged per calibration). `--verbose` / `--log_level info`
bring the INFO lines back to the terminal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional

VERBOSE_ENV = "ERNIE3_VERBOSE"
#: glog's level: 0 INFO, 1 WARNING (warnings and errors still shown)
GLOG_LEVEL_ENV = "GLOG_minloglevel"
#: characters of captured native output kept for an error message when the call fails
SHOWN_ON_FAILURE = 2000

_lock = threading.Lock()
_log = logging.getLogger("ernie3.native")
#: whether GLOG_minloglevel is this module's setting (a level the user set is theirs and stays)
_glog_quieted = False


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_native_logs() -> None:
    """Before paddle loads: glog's INFO lines off, unless verbose or the user chose a glog level."""
    global _glog_quieted
    if verbose() or GLOG_LEVEL_ENV in os.environ or "paddle" in sys.modules:
        return
    os.environ[GLOG_LEVEL_ENV] = "1"
    _glog_quieted = True


def set_verbose(enabled: bool) -> None:
    """`--verbose` of an entry point: native logs and library INFO lines are shown."""
    global _glog_quieted
    if enabled:
        os.environ[VERBOSE_ENV] = "1"
        if _glog_quieted:  # takes effect if paddle loads after this (and in child processes)
            os.environ.pop(GLOG_LEVEL_ENV, None)
            _glog_quieted = False
    quiet_library_loggers()


def quiet_library_loggers() -> None:
    """paddlenlp announces every tokenizer load at INFO; inference tools show warnings and errors only."""
    if verbose() or _run_log.configured:  # a run's log file wants every level: its terminal handler filters
        return
    if "paddlenlp" not in sys.modules:
        # not imported for this (a paddle-free predictor never imports it): its INFO lines are dropped if it loads
        # later (its import sets the logger's level, not its filters)
        logging.getLogger("PaddleNLP").addFilter(_quiet_paddlenlp)
        return
    from paddlenlp.utils.log import logger

    logger.set_level("WARNING")


def _quiet_paddlenlp(record: logging.LogRecord) -> bool:
    """paddlenlp's records from WARNING up, unless verbose or a run's log wants them all."""
    return record.levelno >= logging.WARNING or verbose() or _run_log.configured


def library_logger() -> logging.Logger:
    """Where library code logs: paddlenlp's logger once paddlenlp is loaded (a run's log adopts it, its level
    follows `quiet_library_loggers`), else ernie3's own on stderr (warnings, INFO when verbose), so that a process
    that runs no paddle (an OpenVINO / ONNX Runtime predictor) does not import paddlenlp to log a line."""
    if "paddlenlp" in sys.modules:
        from paddlenlp.utils.log import logger

        return logger
    own = logging.getLogger("ernie3")
    if not own.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)8s] - %(message)s"))
        own.addHandler(handler)
        own.propagate = False
    own.setLevel(logging.INFO if verbose() else logging.WARNING)
    return own


# -- the log of a training / compress run ------------------------------------------------------------------------
#: what `--log_level` accepts (HF/Trainer users pass it out of habit), lowest first
LOG_LEVELS = ("debug", "info", "warning", "error")
#: loggers of the libraries whose own stderr handlers the run's log takes over (paddle's get_logger, paddleslim)
LIBRARY_LOGGERS = ("PaddleNLP", "paddle", "paddleslim", "py.warnings")
_FILE_FORMAT = logging.Formatter("[%(asctime)s] [%(levelname)8s] %(name)s - %(message)s")


def _warning_key(record: logging.LogRecord) -> tuple[str, str]:
    """A warning's identity for `_Once`: its first sentence (the rest often names the file of the moment)."""
    message = record.getMessage().strip()
    return record.name, message.split(". ", 1)[0].splitlines()[0] if message else ""


class _Once(logging.Filter):
    """Terminal handlers: a warning the run repeats (per model load, per calibration) is shown the first time only."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.levelno >= logging.ERROR:
            return True
        key = _warning_key(record)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class _RunLogHandler(logging.Handler):
    """Every record of the run, kept in memory until the output dir is checked (a refused run writes nothing
    there), then appended to OUTPUT/ernie3.log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(_FILE_FORMAT)
        self.pending: list[str] = []
        self.stream = None
        self.path: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a library's bad format string must not end the run
            return
        if self.stream is None:
            self.pending.append(line)
            del self.pending[:-5000]  # bounded: a long run before attach keeps its last lines
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def attach(self, path: str, header: str) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = open(path, "a", encoding="utf-8")
            self.path = path
            self.stream.write(header + "\n" + "".join(line + "\n" for line in self.pending))
            self.stream.flush()
            self.pending = []
        finally:
            self.release()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        super().close()


class _RunLogState:
    configured = False
    terminal_level = logging.WARNING
    once = _Once()
    handler: Optional[_RunLogHandler] = None
    #: whether ERNIE3_VERBOSE is this module's doing (a run's --verbose), to be taken back by a later quiet run
    set_verbose_env = False


_run_log = _RunLogState()


def terminal_level(log_level: Optional[str], verbose_flag: bool) -> int:
    """The terminal's threshold: --log_level if given, else INFO with --verbose / ERNIE3_VERBOSE, else WARNING."""
    if log_level is not None:
        name = str(log_level).strip().lower()
        if name not in LOG_LEVELS:
            from ernie3.errors import UserError

            raise UserError(f"--log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        return getattr(logging, name.upper())
    return logging.INFO if verbose_flag or verbose() else logging.WARNING


def configure_run_logging(log_level: Optional[str] = None, verbose_flag: bool = False) -> None:
    """A training/compress run: library records all to the run's log (once attached), the terminal only from
    `terminal_level` up, each warning once. Safe to call again (the full parse re-applies config.yml's choice)."""
    if _run_log.set_verbose_env:  # an earlier run of this process set ERNIE3_VERBOSE: not this run's choice
        os.environ.pop(VERBOSE_ENV, None)
        _run_log.set_verbose_env = False
    level = terminal_level(log_level, verbose_flag)
    if level <= logging.INFO:
        if not verbose():
            _run_log.set_verbose_env = True
        set_verbose(True)  # native logs (glog, IR passes) back as well
    _run_log.configured = True
    _run_log.terminal_level = level
    if _run_log.handler is None:
        _run_log.handler = _RunLogHandler()
    logging.captureWarnings(True)  # library UserWarnings (paddle's to_static, tokenizer overflow) are records too
    warnings_logger = logging.getLogger("py.warnings")
    if not any(getattr(h, "_ernie3_terminal", False) for h in warnings_logger.handlers):
        terminal = logging.StreamHandler()
        terminal._ernie3_terminal = True
        warnings_logger.addHandler(terminal)
    warnings_logger.propagate = False
    # only an INFO terminal shows Python warnings: they name library internals the user cannot act on
    for handler in warnings_logger.handlers:
        if getattr(handler, "_ernie3_terminal", False):
            handler.setLevel(logging.WARNING if level <= logging.INFO else logging.ERROR)
    from paddlenlp.utils.log import logger

    logger.logger.setLevel(logging.DEBUG)
    adopt_library_loggers()
    if not isinstance(logging.getLoggerClass(), type) or not issubclass(logging.getLoggerClass(), _AdoptingLogger):
        logging.setLoggerClass(_AdoptingLogger)  # loggers paddle creates later (PTQ's) join the run's log too


def begin_run_log(log_level: Optional[str] = None, verbose_flag: bool = False) -> None:
    """A new run in this process: its records are held until its own log file is attached (not the last run's),
    and its warnings are shown once each, whatever earlier runs of the process showed."""
    configure_run_logging(log_level, verbose_flag)
    _run_log.once.seen.clear()
    handler = _run_log.handler
    handler.acquire()
    try:
        if handler.stream is not None:
            handler.stream.close()
        handler.stream, handler.path, handler.pending = None, None, []
    finally:
        handler.release()


def _adopt(logger: logging.Logger) -> None:
    handler = _run_log.handler
    for existing in logger.handlers:
        if isinstance(existing, logging.StreamHandler) and not isinstance(existing, (logging.FileHandler, _RunLogHandler)):
            if not getattr(existing, "_ernie3_terminal", False):  # (py.warnings' own level is set above)
                existing.setLevel(_run_log.terminal_level)
            if _run_log.once not in existing.filters:
                existing.addFilter(_run_log.once)
    if handler is not None and handler not in logger.handlers:
        logging.Logger.addHandler(logger, handler)


def _is_library_logger(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in LIBRARY_LOGGERS)


def adopt_library_loggers() -> None:
    """Route the libraries' loggers that exist now through the run's log (their terminal handlers filtered)."""
    if not _run_log.configured:
        return
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and _is_library_logger(name) and (logger.handlers or not logger.propagate):
            _adopt(logger)


class _AdoptingLogger(logging.Logger):
    """paddle's `get_logger` adds a stderr handler to each new module logger; a run adopts it at once."""

    def addHandler(self, hdlr: logging.Handler) -> None:
        super().addHandler(hdlr)
        if _run_log.configured and _is_library_logger(self.name) and not isinstance(hdlr, _RunLogHandler):
            _adopt(self)


def attach_run_log(path: str, argv: Optional[list[str]] = None) -> str:
    """Start writing the run's log at `path` (appended, one header per run), with what was logged so far."""
    if _run_log.handler is None:
        configure_run_logging()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    command = " ".join(argv if argv is not None else sys.argv)
    _run_log.handler.attach(path, f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} {command}")
    adopt_library_loggers()
    return path


def run_log_path() -> Optional[str]:
    """Where this run's library log goes (None before `attach_run_log`)."""
    return _run_log.handler.path if _run_log.handler is not None else None


@contextlib.contextmanager
def native_output_captured(what: str = "native library") -> Iterator[None]:
    """Run a block whose C/C++ code writes to fd 1/2; keep its output out of the terminal unless verbose.

    If the block raises, the captured tail is logged so that the cause is not lost.
    """
    if verbose():
        yield
        return
    with _lock:  # the descriptors are process-wide: one capture at a time
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 1)
            os.dup2(capture.fileno(), 2)
            try:
                yield
            except BaseException:
                _restore(saved)
                capture.seek(0)
                tail = capture.read().decode("utf-8", "replace")[-SHOWN_ON_FAILURE:].strip()
                if tail:
                    _log.warning("%s output before the failure:\n%s", what, tail)
                raise
            else:
                _restore(saved)


def _restore(saved: list[int]) -> None:
    for fd, copy in zip((1, 2), saved):
        try:
            os.dup2(copy, fd)
        finally:
            os.close(copy)
