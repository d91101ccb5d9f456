"""Progress of a long loop: a tqdm bar on a terminal, a plain line now and then in a log file.

tqdm redraws its bar with carriage returns several times a second: on a terminal that is one
line that moves; in a log file (CI, ``nohup``, a redirected stderr) it is thousands of updates
run together. Where the stream is not a terminal (nor a notebook, where tqdm draws a widget),
:class:`Progress` prints one plain line every ``every`` seconds instead, and one at the end,
with the figures the bar shows::

    train maml: step 120/2000 (6%), loss 4.66, best_val 4.85, 2.31 steps/s, 1.20kB/s, ETA 13:33

The byte rate is there when the caller counts bytes (text data: the UTF-8 bytes per step).
"""

from __future__ import annotations

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
    shown on ``stream`` (default stderr) while ``enabled``."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None, every: float = PLAIN_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.step, self.desc, self.every, self.clock = total, initial, desc, every, clock
        self.plain = enabled and not interactive(self.stream)
        self.bar = None if self.plain else tqdm(total=total, initial=initial, disable=not enabled, desc=desc,
                                                dynamic_ncols=True, file=self.stream)
        self.figures: dict[str, str] = {}
        self.units = 0  # bytes counted so far
        self.mark = (clock(), initial, 0)  # (time, step, units) where the current rate window starts

    def update(self, units: int = 0) -> None:
        """One step done, that processed ``units`` bytes (0 where the caller does not count)."""
        self.step += 1
        self.units += units
        if self.bar is not None:
            self.bar.update(1)
        elif self.plain and self.clock() - self.mark[0] >= self.every:
            self._print()

    def show(self, **figures: str) -> None:
        """The latest figures (``loss=...``, ``best_val=...``): the bar's postfix, the next line's fields."""
        self.figures.update(figures)
        if self.bar is not None and not self.bar.disable:
            shown = dict(self.figures)
            if self.units:
                shown["throughput"] = self._rates()[1]
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

    def _rates(self) -> tuple[float, str]:
        """Steps per second and bytes per second since the window's start; starts a new window."""
        now, (t, step, units) = self.clock(), self.mark
        dt = max(now - t, 1e-9)
        self.mark = (now, self.step, self.units)
        return (self.step - step) / dt, std_tqdm.format_sizeof((self.units - units) / dt) + "B/s"

    def _print(self) -> None:
        rate, byte_rate = self._rates()
        done = f"step {self.step}" if self.total is None else \
            f"step {self.step}/{self.total} ({100 * self.step // max(self.total, 1)}%)"
        fields = [done, *(f"{k} {v}" for k, v in self.figures.items()), f"{rate:.3g} steps/s"]
        if self.units:
            fields.append(byte_rate)
        if self.total is not None:
            left = self.total - self.step
            fields.append(f"ETA {std_tqdm.format_interval(left / rate) if rate > 0 else '?'}")
        print(f"{self.desc}: " + ", ".join(fields), file=self.stream, flush=True)
