"""Progress: a tqdm bar on a terminal; plain lines every N seconds elsewhere (issue 17)."""

from __future__ import annotations

import io
import re

from fewgen.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LINE = re.compile(r"^train maml: step (\d+)/10 \(\d+%\), loss ([\d.]+|-), best_val ([\d.]+|-), ([\d.]+) steps/s"
                  r"(, [\d.]+[kM]?B/s)?, ETA (\S+)$")


def run(stream, clock: Clock, units: int = 0) -> None:
    p = Progress(10, 0, "train maml", stream=stream, every=30.0, clock=clock)
    for step in range(1, 11):
        clock.t += 8.0  # 8 s a step: a line at steps 4 and 8 (30 s since the last), and one at the end
        p.update(units)
        if step % 2 == 0:
            p.show(loss=f"{4 + 1 / step:.2f}", best_val="-" if step < 4 else "4.10")
    p.close()


def test_a_log_file_gets_a_plain_line_every_n_seconds_and_at_the_end():
    s = io.StringIO()
    run(s, Clock(), units=700)
    lines = s.getvalue().splitlines()
    assert "\r" not in s.getvalue() and len(lines) == 3, s.getvalue()
    m = [LINE.match(x) for x in lines]
    assert all(m), lines
    assert [int(x.group(1)) for x in m] == [4, 8, 10]
    assert m[0].group(2) == "4.50" and m[0].group(3) == "-" and float(m[0].group(4)) == 0.125  # as shown at step 2
    assert m[0].group(5) == ", 87.5B/s" and m[0].group(6) == "00:48"  # 700 bytes / 8 s; 6 steps at 8 s each
    assert m[2].group(6) == "00:00"


def test_no_bytes_no_byte_rate_and_disabled_is_silent():
    s = io.StringIO()
    run(s, Clock())
    assert "B/s" not in s.getvalue() and len(s.getvalue().splitlines()) == 3
    quiet = io.StringIO()
    p = Progress(10, 0, "x", enabled=False, stream=quiet, every=0.0)
    p.update()
    p.show(loss="1")
    p.close()
    assert quiet.getvalue() == ""


def test_a_terminal_gets_the_tqdm_bar():
    s = Terminal()
    run(s, Clock(), units=700)
    assert "\r" in s.getvalue() and "10/10" in s.getvalue() and "throughput=" in s.getvalue()
    assert not any(LINE.match(x) for x in s.getvalue().splitlines())
