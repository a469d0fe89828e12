"""Orchestration — Ctrl-C: an interrupt always ends a command with exit code 130 and one line.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be, and
some of those places lose it:

* a finaliser (``__del__``, a weakref callback) run by the garbage collector, which cannot
  propagate it: Python prints "Exception ignored in …" and carries on, so the command finishes
  with exit 0 (regex's ``Group.__del__`` while transformers compiles its patterns at import);
* library code that turns it into another error: transformers' lazy imports report a module whose
  import was cut short as a ModuleNotFoundError, which would end the command with a traceback;
* code that runs before the CLI's ``try`` (the imports of building the parser).

:func:`catching_interrupts` (entered first thing by :func:`tawin.cli.main`) records every SIGINT,
delivers one that a finaliser swallowed again once the finaliser has returned, and lets the CLI
treat whatever the command ended with as the interrupt. :func:`deferred_interrupts` holds an
interrupt back while a few file moves must finish together (see :class:`~tawin.run.folder.RunFolder`).
Nothing here imports more than the standard library, so it is in place before the heavy imports.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_CODE = 130
"""The shell's code for a command ended by SIGINT (128 + 2)."""

MESSAGE = "tawin: interrupted; rerun the same command to resume from the last checkpoint."

REDELIVERY_DELAY_S = 0.05
"""How long after a finaliser swallowed an interrupt it is raised again (the finaliser has returned by then)."""


class _State:
    active = False
    """A command is running under :func:`catching_interrupts`."""
    received = False
    """A SIGINT arrived during the command."""
    deferring = 0
    """Depth of the :func:`deferred_interrupts` sections being run."""
    held = False
    """An interrupt arrived inside such a section and is raised when it ends."""


_state = _State()
_switch = threading.Lock()
"""Held while a redelivery is requested and while a command ends, so none is requested after it."""


def _on_sigint(signum, frame) -> None:
    _state.received = True
    if _state.deferring:
        _state.held = True
        return
    raise KeyboardInterrupt


def _redeliver() -> None:
    with _switch:
        if _state.active:
            _thread.interrupt_main(signal.SIGINT)  # runs _on_sigint in the main thread, as a real SIGINT would


def _on_unraisable(unraisable, previous_hook) -> None:
    if not (_state.active and issubclass(unraisable.exc_type, KeyboardInterrupt)):
        previous_hook(unraisable)
        return
    # A finaliser swallowed the interrupt: no "Exception ignored" message, and the interrupt comes
    # back from a timer thread once the finaliser has returned. A second Ctrl-C meanwhile only
    # needs recording, and must not break this hook.
    with deferred_interrupts(raise_held=False):
        timer = threading.Timer(REDELIVERY_DELAY_S, _redeliver)
        timer.daemon = True
        timer.start()


def interrupt_received() -> bool:
    """Whether a SIGINT arrived since the command started (even one a library swallowed)."""
    return _state.received


def report_interrupt() -> int:
    """Print the one line of an interrupted command on stderr; returns its exit code. A further
    Ctrl-C from here on (or one delivered again) is only recorded: the command is ending anyway."""
    _state.deferring += 1
    # A KeyboardInterrupt that left code run by exec() (dataclass and namedtuple creation at import)
    # marks CPython to kill itself with SIGINT at exit, even though it was caught; each exec() clears
    # that mark, so the process exits with the code main returns.
    exec("")
    print(MESSAGE, file=sys.stderr, flush=True)
    return EXIT_CODE


def raise_if_interrupted() -> None:
    """A safe point: stop here if an interrupt arrived but was swallowed on the way."""
    if _state.active and _state.received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def catching_interrupts() -> Iterator[None]:
    """Record SIGINTs (and re-raise those that finalisers swallow) for the duration of a command.

    Without effect outside the main thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_handler = signal.signal(signal.SIGINT, _on_sigint)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _on_unraisable(unraisable, previous_hook)
    _state.active, _state.received, _state.deferring, _state.held = True, False, 0, False
    try:
        yield
    finally:
        with _switch:
            _state.active = False
            _state.deferring += 1
        sys.unraisablehook = previous_hook
        # signal.signal first runs a SIGINT still pending (one delivered again just now) with
        # _on_sigint, which only records it, rather than with the handler it restores.
        signal.signal(signal.SIGINT, previous_handler)
        _state.deferring = 0


@contextlib.contextmanager
def deferred_interrupts(raise_held: bool = True) -> Iterator[None]:
    """Run the block to its end even when Ctrl-C arrives; the interrupt is raised right after it
    (`raise_held`), or only recorded. Keep such blocks short: they cannot be interrupted."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if raise_held and _state.held and not _state.deferring:
        _state.held = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT held back by the kernel in this block (and delivered after it); processes started
    inside inherit the block, so Ctrl-C reaches only this one, which stops them itself."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
