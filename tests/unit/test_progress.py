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


EVAL_LINE = re.compile(r"^eval K=5 steps=0: episode (\d+)/40 \(\d+%\), ([\d.]+) episodes/s, ETA (\S+)$")


def test_evaluation_in_a_log_file_gets_plain_episode_lines():
    """Evaluation's use (``n`` episodes per batch, no bar left behind): plain lines, no redraws."""
    s, clock = io.StringIO(), Clock()
    p = Progress(40, 0, "eval K=5 steps=0", stream=s, every=30.0, clock=clock, unit="episode", leave=False)
    for _ in range(5):
        clock.t += 20.0  # a batch of 8 episodes every 20 s: a line after 40 s (16 episodes), 80 s, and at the end
        p.update(n=8)
    p.close()
    assert "\r" not in s.getvalue()
    m = [EVAL_LINE.match(x) for x in s.getvalue().splitlines()]
    assert all(m), s.getvalue()
    assert [int(x.group(1)) for x in m] == [16, 32, 40]
    assert float(m[0].group(2)) == 0.4 and m[0].group(3) == "01:00"  # 24 episodes left at 0.4/s



def test_the_feature_net_prints_plain_lines_in_a_log_file(image_folder, capsys):
    from fewgen.config import DataConfig
    from fewgen.feature_net import train_feature_net
    from fewgen.tasks.spec import load_tasks

    ts = load_tasks(f"folder:{image_folder}", DataConfig(image_size=16))
    train_feature_net(ts, steps=3, ways=2, shots=1, queries=1, width=8, depth=1, progress=True)
    err = capsys.readouterr().err  # capsys's stderr is no terminal
    assert "\r" not in err
    assert re.fullmatch(r"feature net: episode 3/3 \(100%\), loss [\d.]+, acc [\d.]+, [\d.]+ episodes/s, ETA 00:00\n",
                        err), err


def budget_run(clock_name: str, cpu_per_second: float) -> list[str]:
    """1000 steps at 1 step/s under a 100 s budget that is spent at ``cpu_per_second`` budget
    seconds per wall second: a line every 30 s until the budget ends the loop."""
    s, clock = io.StringIO(), Clock()
    used = Clock()
    p = Progress(1000, 0, "train maml", stream=s, every=30.0, clock=clock,
                 budget=lambda: 100.0 - used.t, budget_clock=clock_name)
    while used.t < 100.0:
        clock.t += 1.0
        used.t += cpu_per_second
        p.update()
    p.close()
    return s.getvalue().splitlines()


def test_a_binding_time_budget_gives_the_eta():
    lines = budget_run("wall", 1.0)
    assert [x.split(", ")[-1] for x in lines] == ["ETA 01:10 (time budget)", "ETA 00:40 (time budget)",
                                                  "ETA 00:10 (time budget)", "ETA 00:00 (time budget)"]
    assert lines[0].startswith("train maml: step 30/1000 (3%), 1 steps/s, ")  # not the 16:10 the steps would take


def test_a_cpu_budget_shows_its_cpu_seconds_left_and_a_wall_eta_at_the_cpu_rate():
    lines = budget_run("cpu", 2.0)  # two CPU seconds per second (two busy threads): 50 s of wall time
    assert [x.split(", ")[-1] for x in lines] == ["ETA 00:20 (time budget: 00:40 CPU left)", "ETA 00:00 (time budget: 00:00 CPU left)"]


def test_a_budget_that_does_not_bind_leaves_the_steps_eta():
    s, clock = io.StringIO(), Clock()
    p = Progress(40, 0, "train maml", stream=s, every=30.0, clock=clock, budget=lambda: 3600.0 - clock.t)
    for _ in range(30):
        clock.t += 1.0
        p.update()
    cpu = Progress(40, 0, "x", stream=s, every=30.0, clock=clock, budget=lambda: 3600.0, budget_clock="cpu")
    clock.t += 30.0
    cpu.update(n=30)
    assert [x.split(", ")[-1] for x in s.getvalue().splitlines()] == ["ETA 00:10", "ETA 00:10 (budget: 1:00:00 CPU left)"]
