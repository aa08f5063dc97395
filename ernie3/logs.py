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
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from typing import Iterator

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
    if verbose():
        return
    from paddlenlp.utils.log import logger

    logger.set_level("WARNING")


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
