"""Progress of a long loop: a tqdm bar on a terminal, a plain line now and then in a log file.

tqdm redraws its bar with carriage returns several times a second: on a terminal that is one
line that moves; in a log file (CI, ``nohup``, a redirected stderr) it is thousands of updates
run together. Where the stream is not a terminal (nor a notebook, where tqdm draws a widget),
:class:`Progress` prints one plain line every ``every`` seconds instead, and one at the end,
with the figures the bar shows::

    train maml: step 120/2000 (6%), loss 4.66, best_val 4.85, 2.31 steps/s, 1.20kB/s, ETA 13:33
    eval K=5 steps=0: episode 40/120 (33%), 12.5 episodes/s, ETA 00:06

The byte rate is there when the caller counts bytes (text data: the UTF-8 bytes per step).
Every long loop of fewgen (training, evaluation, the feature network) goes through it.

A time budget (``train.max_seconds``) may end a loop before its step count: given one, the ETA
is the sooner of the two, marked ``(time budget)`` when the budget binds. A budget on the
``cpu`` clock (``train.clock``) counts this process's CPU seconds; its wall-time ETA is then
estimated from the CPU seconds spent per second so far, and the CPU seconds left are shown::

    train maml: step 300/1000000 (0%), loss 4.12, best_val -, 2.51 steps/s, ETA 19:40 (time budget)
    train maml: step 300/1000000 (0%), ..., ETA 09:50 (time budget: 19:40 CPU left)
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, TextIO

from tqdm import autonotebook
from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

PLAIN_EVERY = 30.0  # seconds between plain progress lines


def interactive(stream: TextIO) -> bool:
    """True on a terminal, or in a notebook (where tqdm.auto draws a widget, not carriage returns)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) or autonotebook.tqdm is not std_tqdm


class Progress:
    """Steps ``initial .. total`` of a loop (``total`` None: open-ended, e.g. a time budget),
    shown on ``stream`` (default stderr) while ``enabled``. ``unit`` names a step (``episode``:
    ``episode 40/120``, ``episodes/s``); ``leave`` keeps the terminal bar once closed.
    ``budget``: the seconds left of a time budget, on its own clock (``budget_clock``: ``wall``
    or ``cpu``, this process's CPU seconds); the ETA is then the budget's when it ends first."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None, every: float = PLAIN_EVERY,
                 clock: Callable[[], float] = time.monotonic, *, unit: str = "step", leave: bool = True,
                 budget: Callable[[], float] | None = None, budget_clock: str = "wall") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.step, self.desc, self.every, self.clock = total, initial, desc, every, clock
        self.unit, self.budget, self.budget_clock = unit, budget, budget_clock
        self.plain = enabled and not interactive(self.stream)
        self.bar = None if self.plain else tqdm(total=total, initial=initial, disable=not enabled, desc=desc,
                                                unit=unit, leave=leave, dynamic_ncols=True, file=self.stream)
        self.figures: dict[str, str] = {}
        self.units = 0  # bytes counted so far
        # (time, step, units, budget seconds left) where the current rate window starts
        self.mark = (clock(), initial, 0, self._budget_left())

    def update(self, units: int = 0, *, n: int = 1) -> None:
        """``n`` steps done, that processed ``units`` bytes (0 where the caller does not count)."""
        self.step += n
        self.units += units
        if self.bar is not None:
            self.bar.update(n)
        elif self.plain and self.clock() - self.mark[0] >= self.every:
            self._print()

    def show(self, **figures: str) -> None:
        """The latest figures (``loss=...``, ``best_val=...``): the bar's postfix, the next line's fields."""
        self.figures.update(figures)
        if self.bar is not None and not self.bar.disable:
            shown = dict(self.figures)
            if self.units:
                shown["throughput"] = self._rates()[1]
            if self.budget is not None:
                shown["budget"] = f"{_interval(self._budget_left())}{' CPU' if self.budget_clock == 'cpu' else ''} left"
            self.bar.set_postfix(shown)

    def write(self, message: str) -> None:
        """A message on stdout that does not break the bar."""
        tqdm.write(message)

    def close(self) -> None:
        """The last line (plain mode, if steps were done since the last one); the bar's end."""
        if self.plain and self.step > self.mark[1]:
            self._print()
        if self.bar is not None:
            self.bar.close()

    def _budget_left(self) -> float:
        """Seconds left of the time budget on its clock (0 without a budget, or once it is spent)."""
        return max(self.budget(), 0.0) if self.budget is not None else 0.0

    def _rates(self) -> tuple[float, str, float]:
        """Since the window's start: steps per second, bytes per second, and budget seconds spent
        per second; starts a new window."""
        now, left, (t, step, units, left_then) = self.clock(), self._budget_left(), self.mark
        dt = max(now - t, 1e-9)
        self.mark = (now, self.step, self.units, left)
        return (self.step - step) / dt, std_tqdm.format_sizeof((self.units - units) / dt) + "B/s", (left_then - left) / dt

    def _eta(self, rate: float, spending: float) -> str | None:
        """The ETA field at ``rate`` steps per second, with the budget spent at ``spending`` of its
        seconds per second: the sooner end of the two, marked ``(time budget)`` when it is the
        budget's (a ``cpu`` budget also shows its CPU seconds left). None when neither ends the loop."""
        by_steps = None if self.total is None else (self.total - self.step) / rate if rate > 0 else math.inf
        if self.budget is None:
            return None if by_steps is None else f"ETA {_interval(by_steps)}"
        left = self._budget_left()
        by_budget = left / spending if spending > 0 else 0.0 if left == 0 else math.inf
        cpu = f"{_interval(left)} CPU left" if self.budget_clock == "cpu" else ""
        if by_steps is not None and by_steps <= by_budget:
            return f"ETA {_interval(by_steps)}" + (f" (budget: {cpu})" if cpu else "")
        return f"ETA {_interval(by_budget)} (time budget{': ' + cpu if cpu else ''})"

    def _print(self) -> None:
        rate, byte_rate, spending = self._rates()
        done = f"{self.unit} {self.step}" if self.total is None else \
            f"{self.unit} {self.step}/{self.total} ({100 * self.step // max(self.total, 1)}%)"
        speed = f"{rate:.3g}" if rate < 1000 else f"{rate:.0f}"  # 12900, not 1.29e+04
        fields = [done, *(f"{k} {v}" for k, v in self.figures.items()), f"{speed} {self.unit}s/s"]
        if self.units:
            fields.append(byte_rate)
        eta = self._eta(rate, spending)
        if eta is not None:
            fields.append(eta)
        print(f"{self.desc}: " + ", ".join(fields), file=self.stream, flush=True)


def _interval(seconds: float) -> str:
    """``13:33`` / ``1:02:03``; ``?`` for an unknown (infinite) time."""
    return std_tqdm.format_interval(seconds) if math.isfinite(seconds) else "?"
