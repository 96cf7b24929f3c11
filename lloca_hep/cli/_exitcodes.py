"""Exit codes of every ``lloca-hep`` command, and how exceptions and signals map onto them.

* 0 (:data:`EXIT_OK`): success.
* 1 (:data:`EXIT_FAILURE`): a runtime failure that is not the user's input.
* 2 (:data:`EXIT_BAD_INPUT`): bad input or usage: a missing, unreadable or unsafe file, a bad
  branch, option or model file (the message names it and the problem).
* 128 + N: stopped by signal N: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP (how
  batch systems stop jobs). Partial outputs are removed before the command exits.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = [
    "BAD_INPUT_ERRORS",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "Terminated",
    "exit_code_of_interrupt",
    "guard",
    "run_command",
    "signals_as_exceptions",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
#: Exit code of a command stopped by signal N is ``EXIT_SIGNAL_BASE + N`` (shell convention).
EXIT_SIGNAL_BASE = 128
#: Signals that stop a command cleanly, as Ctrl-C (SIGINT) does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: Exceptions that mean "the input (files, options, model file) is wrong": exit code 2.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes LLoCaInputError, OutputError, TaggerFileError, CheckpointError
    KeyError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

log = logging.getLogger("lloca_hep")


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives (see
    :func:`signals_as_exceptions`); like Ctrl-C it unwinds every ``with`` block and ``finally``,
    so temporary files are removed."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"terminated by {signal.Signals(signum).name}")


def exit_code_of_interrupt(exc: KeyboardInterrupt) -> int:
    """128 + the signal number (SIGINT for a plain KeyboardInterrupt)."""
    return EXIT_SIGNAL_BASE + int(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    After the first such signal the stop signals are ignored, so that the clean-up the
    exception triggers is not itself interrupted. Handlers are restored on exit.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a command's exceptions into one log line and an exit code (2 bad input, 1 failure).

    Interrupts (:class:`KeyboardInterrupt`, :class:`Terminated`) pass through to the caller.
    ``-v`` shows the traceback at debug level.
    """

    @functools.wraps(func)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyboardInterrupt:
            raise
        except BAD_INPUT_ERRORS as exc:
            log.error("%s", exc)
            log.debug("details", exc_info=True)
            return EXIT_BAD_INPUT
        except Exception as exc:
            log.error("%s failed: %s: %s", args.command, type(exc).__name__, exc)
            log.debug("details", exc_info=True)
            return EXIT_FAILURE

    return wrapped


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the subcommand ``args.func`` parsed by ``parser``: logging set up (``-v`` for debug),
    SIGTERM/SIGHUP handled like Ctrl-C, the exit code returned. Used by every entry point
    (``lloca-hep``, ``python -m lloca_hep.training``, ``python -m lloca_hep.generate``)."""
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    command = getattr(args, "command", None) or parser.prog
    try:
        with signals_as_exceptions():
            return int(func(args))
    except KeyboardInterrupt as exc:
        log.error("%s: %s; partial outputs were removed", command,
                  exc if str(exc) else "interrupted")
        return exit_code_of_interrupt(exc)
