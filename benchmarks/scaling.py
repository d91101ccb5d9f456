"""Meta-training throughput at 1 and N processes (torchrun, gloo on CPU / NCCL on GPU).

Runs the real command line, ``python -m fewgen train`` and
``torchrun --standalone --nproc_per_node N -m fewgen train``, on the same config and the same
global meta-batch, and prints tasks/s and steps/s measured from the runs' ``metrics.jsonl``
(the first logged interval, start-up and warm-up, is left out), as a Markdown table with the
commands that produced it.

    PYTHONPATH=src python benchmarks/scaling.py                       # 1 and 2 processes, CPU
    PYTHONPATH=src python benchmarks/scaling.py --procs 1,2,4 --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"


def default_data() -> str:
    return f"omniglot:{OMNIGLOT}" if any(OMNIGLOT.glob("*.zip")) else "glyphs"


def command(procs: int, args: argparse.Namespace, out: Path) -> list[str]:
    launch = ([sys.executable, "-m", "fewgen"] if procs == 1 else
              [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m", "fewgen"])
    return [*launch, "train", "--data", args.data, "--out", str(out), "--steps", str(args.steps), "--quiet",
            "--device", args.device, "--set", f"train.meta_batch={args.meta_batch}",
            "--set", f"train.log_every={args.steps // 5}", "--set", f"train.val_every={10 * args.steps}",
            "--set", f"train.ckpt_every={10 * args.steps}", *sum((["--set", s] for s in args.set), [])]


def measure(procs: int, threads: int, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"p{procs}t{threads}"
    cmd = command(procs, args, out)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    logs = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    first, last = logs[0], logs[-1]  # rate between the first and the last log: warm-up excluded
    steps_per_s = (last["step"] - first["step"]) / (last["time"] - first["time"])
    return {"procs": procs, "threads": threads, "steps_per_s": steps_per_s,
            "tasks_per_s": steps_per_s * args.meta_batch, "wall_s": wall, "cmd": display(cmd, threads)}


def display(cmd: list[str], threads: int) -> str:
    """The command as a user would type it."""
    cmd = ["torchrun", *cmd[3:]] if cmd[2] == "torch.distributed.run" else ["python", *cmd[1:]]
    cmd[cmd.index("--out") + 1] = "runs/scaling"  # not the temporary folder the benchmark used
    return f"OMP_NUM_THREADS={threads} " + shlex.join(cmd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=default_data(), help="data spec (default: the local Omniglot archives)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--meta-batch", type=int, default=16, help="global meta-batch (tasks per step)")
    p.add_argument("--procs", default="1,2", help="process counts to measure")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], help="extra config overrides, e.g. model.hidden=16")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="fewgen-scaling-") as tmp:
        for n in [int(x) for x in args.procs.split(",")]:
            runs.append(measure(n, args.threads, args, Path(tmp)))
            if n == 1 and args.device == "cpu" and args.threads == 1 and max(map(int, args.procs.split(","))) > 1:
                # The fair CPU baseline: one process using as many threads as the widest run uses cores.
                runs.append(measure(1, max(map(int, args.procs.split(","))), args, Path(tmp)))
    base = runs[0]["tasks_per_s"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"meta-training throughput, data {args.data}, global meta-batch {args.meta_batch}, {args.steps} steps, "
          f"device {args.device}, {os.cpu_count()} CPUs (load average {load:.1f} at the end)\n")
    print("| processes | threads/process | steps/s | tasks/s | vs 1 process, 1 thread |")
    print("|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['procs']} | {r['threads']} | {r['steps_per_s']:.2f} | {r['tasks_per_s']:.1f} | "
              f"{r['tasks_per_s'] / base:.2f}x |")
    print("\ncommands:")
    for r in runs:
        print(f"  {r['cmd']}")


if __name__ == "__main__":
    main()
