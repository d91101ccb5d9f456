"""Speed of one MAML meta-training step of the image VAE: fewgen vs a plain loop, higher, learn2learn.

One step = sample noise, inner loop (1 SGD step on each task's 5-shot support loss), query loss
(15 queries per task), mean over a meta-batch of 16 tasks, backward, Adam step; second order
and first order. Implementations:

- ``fewgen``          fewgen.meta.maml as training runs it: tasks in chunks of ``train.task_chunk``
                      (default 8), backward per chunk, ``train.task_map=auto`` (a per-task loop
                      for first order on CPU, vmap otherwise)
- ``fewgen-vmap``     forced ``train.task_map=vmap``: ``torch.func.grad`` inner loop, ``vmap`` over a chunk's tasks
- ``fewgen-loop``     forced ``train.task_map=loop``: a chunk's tasks one by one, ordinary autograd
- ``...+film``        with ``train.adapt_params=film`` (the inner loop adapts per-unit scales and shifts,
                      MAML's default in training runs); ``loop+film`` is the plain loop doing the same
                      through :func:`fewgen.meta.inner.compose`. higher and learn2learn adapt module
                      parameters only: FiLM variables would need the model rewritten, so they have no film row
- ``fewgen-chunkN``   the same with N tasks per chunk (``fewgen-chunk2``: memory within 2x of the peers)
- ``fewgen-grouped``  (also ``fewgen-chunkN-grouped``) the VAE with torch's own ``nn.Conv2d`` /
                      ``nn.ConvTranspose2d`` instead of :mod:`fewgen.models.task_conv`'s: under
                      vmap, per-task weights then make grouped convolutions (the state before task_conv)
- ``fewgen+compile``  with ``train.compile`` (``torch.compile`` of the vmapped chunk, ``MAML.compiled_meta_loss``;
                      also ``fewgen-chunkN+compile``, ``fewgen-grouped+compile``)
- ``loop``            a plain per-task Python loop: ``functional_call`` + ``autograd.grad(create_graph=...)``
- ``higher``          ``higher.innerloop_ctx`` per task (Grefenstette et al. 2019)
- ``learn2learn``     ``learn2learn.algorithms.MAML`` ``clone()/adapt()`` per task (Arnold et al. 2020)

The peers are benchmark-only: never dependencies of fewgen. Install them into a separate venv
that sees the project's torch, e.g.::

    python3 -m venv /tmp/peervenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/peervenv/lib/python3.11/site-packages/project.pth
    /tmp/peervenv/bin/pip install --no-deps higher cython wheel setuptools
    # learn2learn 0.2 is source-only and its shipped C files fail on Python 3.11: regenerate them
    pip download --no-deps --no-binary :all: learn2learn==0.2.0 && tar xzf learn2learn-0.2.0.tar.gz
    cd learn2learn-0.2.0 && for f in $(find learn2learn -name '*.pyx'); do cython -3 $f -o ${f%.pyx}.c; done
    /tmp/peervenv/bin/pip wheel --no-deps --no-build-isolation . -w wheel && /tmp/peervenv/bin/pip install --no-deps wheel/*.whl

Only learn2learn's MAML module is imported (its package ``__init__`` wants gym/torchvision).
Every configuration runs in its own subprocess (fresh allocator, its own peak RSS), ``--repeats``
times; the table shows medians. Peak memory is the growth of the process's peak RSS
(``ru_maxrss``) over its RSS after building the model, so it counts the step's activations.

Efficiency: the run first measures the machine's matmul peak at the same thread count (the
best of a few 4096 x 4096 float32 ``torch.mm``) and counts one step's floating-point operations
once per order, on ``loop`` (``torch.utils.flop_counter.FlopCounterMode``: matrix products and
convolutions, forward and backward; elementwise work is not counted; every implementation does
the same arithmetic). The table gives each step's achieved GFLOP/s and its share of that peak,
and its CPU seconds per step (``time.process_time``: less sensitive than wall time to other load
on the machine, more sensitive to spinning threads).

    PYTHONPATH=src python benchmarks/meta_step_speed.py [--threads 1] [--repeats 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLS = ("fewgen", "fewgen-vmap", "fewgen-loop", "fewgen-chunk2", "loop", "higher", "learn2learn",
         "fewgen+film", "fewgen-vmap+film", "fewgen-loop+film", "loop+film")
# also: fewgen+compile, fewgen-chunkN[-grouped], fewgen-grouped
TASKS, SHOTS, QUERIES, INNER_LR = 16, 5, 15, 0.05


# ----------------------------------------------------------------------------- worker side
def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def import_l2l_maml():
    """learn2learn's MAML class without running its package ``__init__``."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("learn2learn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("learn2learn is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    for name, sub in (("learn2learn", root), ("learn2learn.algorithms", root / "algorithms")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(sub)]
        sys.modules[name] = pkg
    for name, file in (("learn2learn.utils", root / "utils" / "__init__.py"),
                       ("learn2learn.algorithms.base_learner", root / "algorithms" / "base_learner.py"),
                       ("learn2learn.algorithms.maml", root / "algorithms" / "maml.py")):
        s = importlib.util.spec_from_file_location(name, file)
        mod = importlib.util.module_from_spec(s)
        sys.modules[name] = mod
        s.loader.exec_module(mod)
    return sys.modules["learn2learn.algorithms.maml"].MAML


def torch_convs(model) -> None:
    """Give ``model``'s task convolutions back torch's own forward (``fewgen-*-grouped``)."""
    from torch import nn

    from fewgen.models.task_conv import TaskConv2d, TaskConvTranspose2d

    for mod in model.modules():
        if type(mod) is TaskConv2d:
            mod.__class__ = nn.Conv2d
        elif type(mod) is TaskConvTranspose2d:
            mod.__class__ = nn.ConvTranspose2d


def build_step(impl: str, first_order: bool):
    """A zero-argument function doing one meta-training step, the parameter count and the model."""
    import torch

    from fewgen.config import TrainConfig
    from fewgen.meta import get_algorithm
    from fewgen.models import call, params_of
    from fewgen.models.image_vae import ImageVAE
    from fewgen.tasks.base import Episode

    adapt = "film" if "+film" in impl else "all"
    impl = impl.replace("+film", "")
    torch.manual_seed(0)
    model = ImageVAE()  # the Omniglot default: 28x28, hidden 32, latent 32, context 128
    if "-grouped" in impl:
        torch_convs(model)
        impl = impl.replace("-grouped", "")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(TASKS, SHOTS + QUERIES, 1, 28, 28, generator=g) < 0.2).float()
    ep = Episode(x[:, :SHOTS], torch.ones(TASKS, SHOTS, dtype=torch.bool), x[:, SHOTS:], ("t",) * TASKS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    nparams = sum(p.numel() for p in model.parameters())

    def empty_ctx(fn, sup):  # the unconditional (empty-set) context, as fewgen.meta.inner.task_context
        return fn("context", sup[:, :1], torch.zeros(1, 1, dtype=torch.bool))

    def outer(loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if impl.startswith("fewgen"):
        import re

        m = re.search(r"-chunk(\d+)", impl)
        chunk = {"task_chunk": int(m.group(1))} if m else {}
        compiled = "+compile" in impl
        task_map = "loop" if "-loop" in impl else "vmap" if "-vmap" in impl else "auto"
        algo = get_algorithm(TrainConfig(algo="fomaml" if first_order else "maml", inner_steps=1, inner_lr=INNER_LR,
                                         compile=compiled, task_map=task_map, adapt_params=adapt, inner_select="last",
                                         **chunk))
        meta_loss = algo.compiled_meta_loss() if compiled else algo.meta_loss  # as fewgen.training does
        params = params_of(model)

        def step():
            outer(meta_loss(model, params, {}, ep, g))
        return step, nparams, model

    if impl == "loop":
        from fewgen.meta.inner import InnerConfig, adapt_variables, compose

        params = params_of(model)
        how = InnerConfig(adapt=adapt)  # all: v = the parameters; film: per-unit scales and shifts from identity

        def step():
            losses = []
            for t in range(TASKS):
                sup, qry = ep.support[t : t + 1], ep.query[t : t + 1]
                ns, nq = model.draw_noise(sup, g), model.draw_noise(qry, g)
                v = adapt_variables(model, params, how)
                v = v if adapt == "all" else {k: x.requires_grad_() for k, x in v.items()}
                f = lambda *a, p=compose(model, params, v, how): call(model, p, *a)  # noqa: E731
                inner = f("loss", sup, empty_ctx(f, sup), ns).mean()
                grads = torch.autograd.grad(inner, list(v.values()), create_graph=not first_order, allow_unused=True)
                v = {k: x if gr is None else x - INNER_LR * gr for (k, x), gr in zip(v.items(), grads)}
                f = lambda *a, p=compose(model, params, v, how): call(model, p, *a)  # noqa: E731
                losses.append(f("loss", qry, empty_ctx(f, qry), nq).mean())
            outer(torch.stack(losses).mean())
        return step, nparams, model

    if impl == "higher":
        import higher

        inner_opt = torch.optim.SGD(model.parameters(), lr=INNER_LR)

        def step():
            opt.zero_grad(set_to_none=True)
            for t in range(TASKS):
                sup, qry = ep.support[t : t + 1], ep.query[t : t + 1]
                ns, nq = model.draw_noise(sup, g), model.draw_noise(qry, g)
                # First order detaches the inner gradients; track_higher_grads=False would instead cut
                # the adapted weights from the model's own, so no parameter got a meta-gradient.
                with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False,
                                          track_higher_grads=True) as (fmodel, diffopt):
                    detach = (lambda grads: [None if gr is None else gr.detach() for gr in grads]) if first_order \
                        else None
                    diffopt.step(fmodel("loss", sup, empty_ctx(fmodel, sup), ns).mean(), grad_callback=detach)
                    (fmodel("loss", qry, empty_ctx(fmodel, qry), nq).mean() / TASKS).backward()
            opt.step()
        return step, nparams, model

    if impl == "learn2learn":
        MAML = import_l2l_maml()
        maml = MAML(model, lr=INNER_LR, first_order=first_order, allow_unused=True)

        def step():
            opt.zero_grad(set_to_none=True)
            for t in range(TASKS):
                sup, qry = ep.support[t : t + 1], ep.query[t : t + 1]
                ns, nq = model.draw_noise(sup, g), model.draw_noise(qry, g)
                learner = maml.clone()
                learner.adapt(learner("loss", sup, empty_ctx(learner, sup), ns).mean())
                (learner("loss", qry, empty_ctx(learner, qry), nq).mean() / TASKS).backward()
            opt.step()
        return step, nparams, model
    raise ValueError(impl)


def check_meta_gradient(impl: str, step, model) -> None:
    """Every row must be a real meta-step: one step moves most of the model's parameters (a row
    whose outer step changes nothing measures nothing)."""
    import torch

    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    step()
    moved = sum(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    if moved < len(params) // 2:
        raise SystemExit(f"{impl}: one step moved {moved} of {len(params)} parameters: not a meta-training step")


def worker(impl: str, order: str, steps: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    step, nparams, model = build_step(impl, first_order=order == "first")
    check_meta_gradient(impl, step, model)
    base = rss_mib()
    for _ in range(warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {"steps_per_s": steps / dt, "cpu_s": cpu / steps, "peak_mib": peak - base, "params": nparams}


def step_gflop(order: str, threads: int) -> dict:
    """The floating-point work of one step (GFLOP), counted on the plain per-task loop, whose
    kernels are all ordinary ones (``FlopCounterMode`` over-counts grouped convolutions'
    backward). Every implementation does this same arithmetic."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    step, _, _ = build_step("loop", first_order=order == "first")
    with FlopCounterMode(display=False) as counter:
        step()
    return {"gflop": counter.get_total_flops() / 1e9}


def matmul_peak(threads: int, n: int = 4096, repeats: int = 5) -> dict:
    """The machine's float32 matmul peak at ``threads`` threads: GFLOP/s of the fastest of
    ``repeats`` ``torch.mm`` of two n x n matrices (after one warm-up)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n**3 / best / 1e9}


# ----------------------------------------------------------------------------- driver side
def run_one(python: str, impl: str, order: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(args.threads)}
    warmup = args.warmup + (2 if "compile" in impl else 0)
    cmd = [python, __file__, "--worker", impl, order, "--steps", str(args.steps), "--warmup", str(warmup),
           "--threads", str(args.threads)]
    if impl == "matmul-peak":
        cmd = [python, __file__, "--peak", "--threads", str(args.threads)]
    elif impl == "flops":
        cmd = [python, __file__, "--flops", order, "--threads", str(args.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:160]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("IMPL", "ORDER"), help=argparse.SUPPRESS)
    ap.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--flops", metavar="ORDER", help=argparse.SUPPRESS)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--orders", default="second,first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="subprocesses per configuration (median taken)")
    ap.add_argument("--steps", type=int, default=4, help="timed meta-steps per subprocess")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--peer-python", default="/tmp/peervenv/bin/python",
                    help="python of the venv with higher / learn2learn (the project's own is used if absent)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup, args.threads)))
        return
    if args.peak:
        print(json.dumps(matmul_peak(args.threads)))
        return
    if args.flops:
        print(json.dumps(step_gflop(args.flops, args.threads)))
        return
    peak = run_one(sys.executable, "matmul-peak", "", args)
    peak_gflops = peak.get("gflops", float("nan"))
    print(f"  matmul peak {peak_gflops:.1f} GFLOP/s ({args.threads} threads)", file=sys.stderr, flush=True)

    peer_python = args.peer_python if Path(args.peer_python).exists() else sys.executable
    impls, orders = args.impls.split(","), args.orders.split(",")
    results: dict[str, dict[str, dict]] = {}
    gflop = {order: run_one(sys.executable, "flops", order, args).get("gflop", float("nan")) for order in orders}
    print(f"  GFLOP per step {gflop}", file=sys.stderr, flush=True)
    for order in orders:
        for impl in impls:
            python = peer_python if impl in ("higher", "learn2learn") else sys.executable
            runs = [run_one(python, impl, order, args) for _ in range(args.repeats)]
            ok = [r for r in runs if "error" not in r]
            if not ok:
                results.setdefault(order, {})[impl] = {"error": runs[0]["error"]}
            else:
                results.setdefault(order, {})[impl] = {
                    "steps_per_s": statistics.median(r["steps_per_s"] for r in ok),
                    "cpu_s": statistics.median(r["cpu_s"] for r in ok),
                    "gflop": gflop[order],
                    "peak_mib": statistics.median(r["peak_mib"] for r in ok),
                    "runs": [round(r["steps_per_s"], 3) for r in ok], "params": ok[0]["params"]}
            print(f"  {order:6s} {impl:15s} {results[order][impl]}", file=sys.stderr, flush=True)

    import torch

    nparams = next((r["params"] for o in results.values() for r in o.values() if "params" in r), 0)
    print(f"\nOne MAML meta-training step, image VAE ({nparams / 1e6:.2f}M params), meta-batch {TASKS}, "
          f"{SHOTS}-shot, {QUERIES} queries, 1 inner step; torch {torch.__version__}, {args.threads} threads, "
          f"median of {args.repeats} subprocesses x {args.steps} steps; matmul peak {peak_gflops:.1f} GFLOP/s "
          f"(float32 4096^2 mm, {args.threads} threads)\n")
    peers = [p for p in ("loop", "higher", "learn2learn")]
    head = ("| order | implementation | steps/s | CPU s/step | peak MiB | GFLOP/step | GFLOP/s (% of peak) | "
            + " | ".join(f"x {p}" for p in peers) + " |")
    print(head)
    print("|" + "---|" * (7 + len(peers)))
    for order, per in results.items():
        for impl, r in per.items():
            if "error" in r:
                print(f"| {order} | {impl} | unavailable: {r['error']} |" + " |" * (5 + len(peers)))
                continue
            ratios = []
            for p in peers:
                q = per.get(p, {})
                ratios.append(f"{r['steps_per_s'] / q['steps_per_s']:.2f}x / {r['peak_mib'] / max(q['peak_mib'], 1):.2f}x mem"
                              if "steps_per_s" in q else "-")
            rate = r["gflop"] * r["steps_per_s"]
            print(f"| {order} | {impl} | {r['steps_per_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_mib']:.0f} | "
                  f"{r['gflop']:.1f} | {rate:.1f} ({100 * rate / peak_gflops:.0f}%) | " + " | ".join(ratios) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_peak_gflops": peak_gflops, **results}, indent=2))


if __name__ == "__main__":
    main()
