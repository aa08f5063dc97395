"""One kind of error for things the user can fix, and the CLI wrapper that prints it as one line."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable, NoReturn


class UserError(Exception):
    """Bad input or an environment problem the user can fix; printed as one line, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up a command does on Ctrl-C (staging dirs, partial models)
    runs on `kill` too."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; turn `UserError` into `error: ...` on stderr and exit status 2; Ctrl-C and SIGTERM
    unwind the command (its clean-up runs) and exit 130 / 143."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main()
    except UserError as exc:
        fail(str(exc))
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def command_moved(old_module: str, new_command: str) -> NoReturn:
    """What a module that used to be run as `python -m <module>` does now: say where the command went, exit 2
    (exiting 0 having done nothing would look like success to a script)."""
    fail(f"`python -m {old_module}` is no longer a command: run `{new_command}` (or `python -m ernie3.cli "
         f"{new_command.split()[1]} ...`; `ernie3 --help` lists every command)")
