"""Progress output (tawin.runtime.progress_bar): a redrawn bar on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest
from tqdm import tqdm

from tawin import runtime
from tawin.runtime import PlainProgress, progress, progress_bar

LINE = re.compile(r"^(?P<desc>.+): step (?P<n>\d+)/(?P<total>\d+) \((?P<share>\d+)%\) \[[\dhms]+(, ETA [\dhms]+)?\]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_redrawn_bar_and_a_log_gets_plain_lines(monkeypatch):
    monkeypatch.setattr("sys.stderr", Terminal())
    assert isinstance(progress_bar(10, "sft"), tqdm)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_bar(10, "sft"), PlainProgress)
    disabled = progress_bar(10, "sft", enabled=False)  # --no-progress: nothing drawn anywhere
    assert isinstance(disabled, tqdm) and disabled.disable


def test_plain_lines_come_per_tenth_of_the_total_at_most(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "PLAIN_PROGRESS_SECONDS", 0.0)  # only the share rule holds lines back
    bar = progress_bar(1000, "rl", "step")
    bar.set_postfix(loss="0.123")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert [int(LINE.match(line)["n"]) for line in lines] == list(range(100, 1001, 100))
    assert lines[-1].startswith("rl: step 1000/1000 (100%) [0s, ETA 0s]") and lines[-1].endswith("loss 0.123")


def test_a_short_loop_writes_no_line_and_a_long_one_ends_with_its_count(monkeypatch, capsys):
    for _ in progress(range(50), 50, "sft valid", bar=True):  # well under PLAIN_PROGRESS_SECONDS
        pass
    assert capsys.readouterr().err == ""
    clock = iter(range(0, 10_000, 7))  # 7 s per update: the time rule, not the share rule, spaces the lines
    monkeypatch.setattr(runtime.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(runtime, "PLAIN_PROGRESS_SHARE", 0.0)
    bar = PlainProgress(20, "eval", "step")
    for _ in range(19):
        bar.update(1)
    bar.close()
    shown = [int(LINE.match(line)["n"]) for line in capsys.readouterr().err.splitlines()]
    assert shown == [2, 4, 6, 8, 10, 12, 14, 16, 18, 19]  # every other update (≥ 10 s apart), then the last count


@pytest.mark.parametrize("seconds, shown", [(42, "42s"), (725, "12m05s"), (11_220, "3h07m")])
def test_clock(seconds, shown):
    assert runtime._clock(seconds) == shown
