"""Device and precision choices shared by every stage.

torch is imported inside the functions that use it: the CLI reads these Literals while it builds
its parser, before it has chosen the OpenMP settings that must be in place when torch loads.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]


OPENMP_SETTINGS = {"GOMP_SPINCOUNT": "5000"}
"""How long an idle OpenMP worker spins before it sleeps, for every tawin command: 5,000 spins
(tens of microseconds) instead of libgomp's 300,000. A worker that spins long keeps its core busy
between ops; beside another busy process, every small op of decoding or of an RL step then waits
for a worker whose core the other process holds. Measured beside one busy process on 2 cores
(`benchmarks/load_speed.py`, `benchmarks/results/load_speed.json`): libgomp's default 7.3×
slower evaluation and 14× slower RL steps; 5,000 spins 2.1× and 2.3×, at the default's idle speed
(within 4%); sleeping at once (`OMP_WAIT_POLICY=PASSIVE`) 1.5× and 1.2× but 27% and 58% slower
when the machine is idle. torch's Linux wheels use libgomp; other OpenMP runtimes ignore it."""


def use_openmp_settings() -> None:
    """Put :data:`OPENMP_SETTINGS` in the environment unless the user set an OpenMP wait variable.

    libgomp reads them once, when torch loads it: call this before anything imports torch."""
    if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        os.environ.update(OPENMP_SETTINGS)


def pick_device(device: Device = "auto") -> torch.device:
    """The torch device of a `device` setting; a ConfigError when `cuda` is asked for and torch finds none."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        from tawin.errors import ConfigError

        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else "torch finds no CUDA GPU (check the driver and CUDA_VISIBLE_DEVICES)"
        )
        raise ConfigError(f"device=cuda, but {why}; use device=auto (CUDA when present, else CPU) or device=cpu.")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: Precision, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast where chosen; float32 master weights stay untouched."""
    if not bf16:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`torch.compile` the training forward when asked (mostly worth it on GPUs).

    The compiled wrapper shares the module's parameters, so checkpoints are saved from the plain
    module with unchanged keys; decoding keeps the plain module, whose cache-carrying calls
    change shape every step. `dynamic=True` because batch and prompt widths vary.
    """
    if not enabled:
        return module
    import torch

    return torch.compile(module, dynamic=True)


def quiet_libraries() -> None:
    """Silence library chatter (FutureWarnings, Hugging Face info logs and load bars) in the CLI and its workers."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*requires_grad=True to a scalar.*")
    if "transformers" not in sys.modules:
        # Read when transformers loads: importing it here would cost `tawin --help` a second.
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


PLAIN_PROGRESS_SECONDS = 10.0
"""Off a terminal, a progress line comes at most this often (see :class:`PlainProgress`)."""
PLAIN_PROGRESS_SHARE = 0.1
"""… and only once the loop has advanced this share of its total since the last line."""


def on_terminal(stream=None) -> bool:
    """Whether `stream` (default: stderr, where progress goes) is a terminal, where a bar can redraw in place."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(
    total: int | None, desc: str, unit: str = "step", enabled: bool = True, initial: int = 0, unit_scale: bool = False
):
    """The progress display of every loop, drawn on stderr; call ``update(n)``, ``set_postfix(...)``, ``close()``.

    On a terminal: a tqdm bar redrawn in place. Elsewhere (a log file, CI, ``nohup``): a
    :class:`PlainProgress`, whose plain lines a log can keep. Not `enabled` (``--no-progress``,
    processes other than the main one): a disabled tqdm, which shows nothing.
    """
    if enabled and not on_terminal():
        return PlainProgress(total, desc, unit, initial, unit_scale)
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, disable=not enabled, leave=False
    )


class PlainProgress:
    """Progress as plain lines, for a stderr that is no terminal: no carriage returns, few lines.

    A line (``"<desc>: <unit> n/total (p%) [elapsed, ETA] <postfix>"``) comes once both
    :data:`PLAIN_PROGRESS_SECONDS` have passed and :data:`PLAIN_PROGRESS_SHARE` of the total has
    been done since the last one, so a loop writes at most about 1/share lines however long it
    runs, and a loop shorter than that many seconds writes none; ``close()`` adds the final count
    when a line was written. Has the part of tqdm's interface that tawin's loops use.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "step", initial: int = 0, unit_scale: bool = False):
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = self.first = self.shown = initial
        self.started = self.last = time.monotonic()
        self.postfix, self.printed = "", False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= PLAIN_PROGRESS_SECONDS and self.n - self.shown >= PLAIN_PROGRESS_SHARE * (
            self.total or 0
        ):
            self._line(now)

    def set_postfix(self, **values) -> None:
        self.postfix = "  ".join(f"{name} {value}" for name, value in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.printed and self.n != self.shown:
            self._line(time.monotonic())

    @staticmethod
    def write(text: str, file=None) -> None:
        """A message between progress lines (tqdm.write's signature)."""
        print(text, file=file or sys.stdout, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        done = f"{self._count(self.n)}/{self._count(self.total)}" if self.total else self._count(self.n)
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        eta = ""
        if self.total and self.n > self.first:
            eta = f", ETA {_clock(elapsed / (self.n - self.first) * max(0, self.total - self.n))}"
        postfix = f"  {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.unit} {done}{share} [{_clock(elapsed)}{eta}]{postfix}", file=sys.stderr, flush=True)
        self.shown, self.last, self.printed = self.n, now, True

    def _count(self, n: int | float) -> str:
        if not self.unit_scale:
            return f"{n:g}" if isinstance(n, float) else str(n)
        from tqdm import tqdm

        return tqdm.format_sizeof(n)


def _clock(seconds: float) -> str:
    """ "42s", "12m05s", "3h07m"."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress(iterable, total: int, desc: str, bar: bool, log=None, unit: str = "batch", every_s: float = 30.0):
    """`iterable` with a progress display (`bar`; see :func:`progress_bar`), or else with a log line
    every `every_s` seconds.

    Without a bar (``--no-progress``), `log` (default: print) receives
    ``"<desc>: <unit> i/total [elapsed, ETA]"`` at most every `every_s` seconds, and once more at
    the end when a line was printed; ``log=False`` is silence (e.g. on non-main processes).
    """
    if bar:
        display = progress_bar(total, desc, unit)
        try:
            for item in iterable:
                yield item
                display.update(1)
        finally:
            display.close()
        return
    say = (lambda text: print(text, flush=True)) if log is None else log
    started = last = time.time()
    printed = False
    for done, item in enumerate(iterable, start=1):
        yield item
        now = time.time()
        if say is not False and (now - last >= every_s or (printed and done == total)):
            elapsed = now - started
            eta = elapsed / done * (total - done)
            say(f"{desc}: {unit} {done}/{total} [{elapsed:.0f}s, ETA {eta:.0f}s]")
            last, printed = now, True
