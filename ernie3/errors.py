"""One kind of error for things the user can fix, and the CLI wrapper that prints it as one line."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """Bad input or an environment problem the user can fix; printed as one line, no traceback."""


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; turn `UserError` into `error: ...` on stderr and exit status 2."""
    try:
        main()
    except UserError as exc:
        fail(str(exc))
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
