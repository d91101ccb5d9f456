"""``fewgen serve``: personalise a generator in the browser (a Gradio Blocks app, extra ``fewgen[serve]``).

The library half of the server, importable and testable without Gradio:

- :class:`Limits`: what one request may send and ask for (files, bytes, pixels, samples, steps);
- :class:`Registry`: every checkpoint loaded once; requests borrow a *replica* of its model whose
  parameters share the loaded tensors (read-only), because ``torch.func.functional_call`` swaps a
  module's parameters in place and two threads must never do that on one module;
- :func:`decode_images` / :func:`decode_lines`: a request's uploads (name, bytes) -> the support
  tensor, judged by decoding (never by extension) and never written anywhere under a client's name;
- :func:`personalise_images` / :func:`personalise_text`: adapt, sample, score the support and
  pack the adapted checkpoint (the folder ``fewgen adapt`` writes) as a zip, in a per-request
  temporary folder that is removed before they return.

:func:`build_app` lays the page out on top of these; Gradio's queue runs requests
(``default_concurrency_limit`` of them at once). A :class:`FewgenError` becomes a readable
message on the page; anything else is logged on the server and the page says so.
"""

from __future__ import annotations

import io
import queue
import tempfile
import time
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from .config import finite_number
from .errors import DataError, FewgenError

Upload = tuple[str, bytes]  # (the client's file name, used only in messages; the file's bytes)
Progress = Callable[[float, str], None]  # (fraction done, what is happening)

# The image samplers the page offers, keyword -> choices (the first is not the default: the
# checkpoint's eval config gives that). Each is passed to fewgen.sample.sample_images by name, so
# a family's new sampling option (e.g. a diffusion guidance scale) is one entry here.
IMAGE_SAMPLERS: dict[str, tuple[str, ...]] = {"latent": ("fusion", "prior")}


@dataclass(frozen=True)
class Limits:
    """What one request may send and ask for."""

    max_files: int = 64  # images per support (after unpacking a zip)
    max_bytes: int = 16 * 2**20  # all uploads of a request together (a zip: its unpacked members)
    max_pixels: int = 4096 * 4096  # per image, checked before decoding (decompression bombs)
    max_samples: int = 256
    max_steps: int = 100  # fine-tuning steps
    max_lines: int = 64  # text support lines


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class Served:
    """One loaded checkpoint and a pool of model replicas that share its parameters."""

    name: str
    checkpoint: Any  # fewgen.checkpoint.Checkpoint (its model is the pool's source; never called)
    replicas: "queue.Queue[Any]" = field(repr=False)

    @property
    def modality(self) -> str:
        return self.checkpoint.model.modality

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        """The checkpoint with a model replica nobody else is using (waits for one)."""
        model = self.replicas.get()
        try:
            yield replace(self.checkpoint, model=model)
        finally:
            self.replicas.put(model)


def replica(model: torch.nn.Module) -> torch.nn.Module:
    """A module of the same family whose parameters and buffers *are* ``model``'s tensors."""
    from .models import model_from_dict

    with torch.random.fork_rng(devices=[]):  # the fresh init is overwritten; keep the global stream
        twin = model_from_dict(model.family, model.config_dict())
    twin.load_state_dict(model.state_dict(), assign=True)
    return twin.eval()


class Registry:
    """The checkpoints a server offers, each loaded once, by display name."""

    def __init__(self, paths: Sequence[str | Path], replicas: int = 1):
        from .checkpoint import load

        if not paths:
            raise FewgenError("give at least one checkpoint folder")
        self.served: dict[str, Served] = {}
        for p in paths:
            ck = load(p)
            if ck.model.modality not in ("image", "text"):
                raise FewgenError(f"{p}: serving '{ck.model.modality}' models is not supported")
            ck.model.eval().requires_grad_(False)
            name, i = Path(p).resolve().name, 2
            while name in self.served:
                name, i = f"{Path(p).resolve().name} ({i})", i + 1
            pool: queue.Queue = queue.Queue()
            for _ in range(max(1, replicas)):
                pool.put(replica(ck.model))
            self.served[name] = Served(name, ck, pool)

    def names(self) -> list[str]:
        return list(self.served)

    def get(self, name: str) -> Served:
        if name not in self.served:
            raise FewgenError(f"no checkpoint named {name!r}; choose one of the list")
        return self.served[name]

    def describe(self, name: str) -> str:
        """One line about a checkpoint: modality, family, algorithm, whether it is adapted."""
        ck = self.get(name).checkpoint
        algo = ck.info.get("algo", ck.config.train.algo)
        adapted = ", already adapted" if ck.info.get("adapted") else ""
        return f"{ck.model.modality} model ({ck.model.family}, {algo}{adapted}) from {ck.config.data.spec}"


# ----------------------------------------------------------------------------- uploads
def expand_uploads(uploads: Sequence[Upload], limits: Limits) -> list[Upload]:
    """The request's files with zips replaced by their members (read in memory, never extracted),
    within the count and total-size limits. Sizes are counted as read, so a zip whose headers lie
    about its members' sizes cannot slip past ``max_bytes``."""
    out: list[Upload] = []
    total = 0

    def add(name: str, data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > limits.max_bytes:
            raise DataError(f"uploads are over the limit of {limits.max_bytes / 2**20:.3g} MiB in all")
        out.append((name, data))
        if len(out) > limits.max_files:
            raise DataError(f"too many images: at most {limits.max_files} per request")

    for name, data in uploads:
        if not zipfile.is_zipfile(io.BytesIO(data)):
            add(name, data)
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    if info.is_dir() or Path(info.filename).name.startswith("."):  # folders, __MACOSX/._x
                        continue
                    with zf.open(info) as f:
                        add(f"{name}:{info.filename}", f.read(limits.max_bytes - total + 1))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as e:
            raise DataError(f"{name}: not a readable zip ({e})") from None
    if not out:
        raise DataError("no images: upload a few image files, or one zip of them")
    return out


def decode_images(uploads: Sequence[Upload], cfg: Any, limits: Limits, channels: int = 1) -> Tensor:
    """Uploaded images (and zips of them) -> the support (K, C, S, S), prepared like the model's
    training data (``cfg``: its DataConfig; ``channels``: the model's, 1 grey or 3 colour). Each file is judged by decoding it with Pillow,
    after its pixel count is checked against ``limits.max_pixels``."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .tasks.images import read_image

    arrays = []
    for name, data in expand_uploads(uploads, limits):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's bomb warning: the limit below decides
                with Image.open(io.BytesIO(data)) as img:  # reads the header only
                    w, h = img.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise DataError(f"{name}: not a readable image") from None
        if w * h > limits.max_pixels:
            raise DataError(f"{name}: image is too large ({w}x{h} pixels; the limit is {limits.max_pixels})")
        arrays.append(read_image(data, cfg.image_size, cfg.binarize, name, channels))
    return torch.from_numpy(np.stack(arrays))


def decode_lines(text: str, max_len: int, limits: Limits) -> Tensor:
    """Pasted text, one example a line (blank lines skipped) -> byte ids (K, max_len)."""
    from .models.bytes import encode_batch
    from .support import require_examples

    if len(text) > limits.max_bytes:
        raise DataError(f"the text is over the limit of {limits.max_bytes / 2**20:.3g} MiB")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    require_examples(len(lines), "the pasted text")
    if len(lines) > limits.max_lines:
        raise DataError(f"too many lines: at most {limits.max_lines} examples per request")
    try:
        return encode_batch(lines, max_len)
    except ValueError as e:
        raise DataError(f"support: {e}") from None


# ----------------------------------------------------------------------------- requests
@dataclass
class Result:
    """What one request produced."""

    support: Tensor  # (K, *X)
    samples: Tensor | list[str]  # images (n, C, S, S) in [0, 1], or n strings
    score: float  # images: support NLL in nats per image; text: support bits per character
    adapt_s: float
    sample_s: float
    score_s: float
    checkpoint_zip: bytes  # the adapted checkpoint folder, zipped


def check_request(n: int, steps: int, limits: Limits) -> None:
    """The request's numbers are within the limits (DataError otherwise)."""
    if not 1 <= n <= limits.max_samples:
        raise DataError(f"number of samples must be in 1..{limits.max_samples}, got {n}")
    if not 0 <= steps <= limits.max_steps:
        raise DataError(f"fine-tuning steps must be in 0..{limits.max_steps}, got {steps}")


def personalise_images(served: Served, uploads: Sequence[Upload], n: int = 32, seed: int = 0, steps: int = 0,
                       sampling: dict[str, Any] | None = None, limits: Limits = Limits(),
                       progress: Progress | None = None) -> Result:
    """Adapt an image checkpoint to the uploaded support, draw n samples, score the support.

    ``sampling`` holds keywords of :func:`fewgen.sample.sample_images` (see ``IMAGE_SAMPLERS``;
    default: the checkpoint's eval config). The score is the *in-sample* NLL of the support under
    the model adapted to it (nats per image, IWAE with ``eval.importance_samples``): how well the
    adapted model explains its shots, not a held-out figure.
    """
    from .sample import sample_images

    if served.modality != "image":
        raise DataError(f"{served.name} is a {served.modality} model: paste text instead")
    check_request(n, steps, limits)
    opts = {"latent": served.checkpoint.config.eval.latent, **(sampling or {})}
    for key, value in opts.items():
        if key not in IMAGE_SAMPLERS or value not in IMAGE_SAMPLERS[key]:
            raise DataError(f"sampler option {key}={value!r} is not offered")
    support = decode_images(uploads, served.checkpoint.config.data, limits,
                            served.checkpoint.model.channels)  # (K, C, S, S)
    return _personalise(served, support, n, seed, steps, lambda a: sample_images(a, n, seed, **opts)[0], progress)


def personalise_text(served: Served, text: str, n: int = 20, seed: int = 0, steps: int = 0,
                     temperature: float = 1.0, top_p: float = 1.0, limits: Limits = Limits(),
                     progress: Progress | None = None) -> Result:
    """Adapt a text checkpoint to the pasted lines, generate n lines, score the support in bits
    per character (in-sample: under the model adapted to those very lines)."""
    from .sample import sample_text, text_guidance

    if served.modality != "text":
        raise DataError(f"{served.name} is an {served.modality} model: upload images instead")
    check_request(n, steps, limits)
    temperature, top_p = finite_number(temperature, "temperature"), finite_number(top_p, "top-p")
    if temperature < 0:
        raise DataError("temperature must be non-negative (0 = greedy)")
    if not 0 < top_p <= 1:
        raise DataError(f"top-p must be in (0, 1], got {top_p}")
    support = decode_lines(text, served.checkpoint.model.max_len, limits)  # (K, L)
    guidance = text_guidance(served.checkpoint.model, served.checkpoint.config.eval)
    return _personalise(served, support, n, seed, steps,
                        lambda a: sample_text(a, n, seed, temperature, top_p, guidance)[0], progress)


def _personalise(served: Served, support: Tensor, n: int, seed: int, steps: int,
                 draw: Callable[[Any], Tensor | list[str]], progress: Progress | None) -> Result:
    """Adapt to ``support`` (K, *X) with a borrowed model replica, draw, score, pack the zip."""
    from .adaptation import adapted_nll, adapter_for_checkpoint

    say = progress or (lambda frac, what: None)
    mask = torch.ones(1, len(support), dtype=torch.bool)
    with served.borrow() as ck:
        say(0.05, f"adapting to {len(support)} examples" + (f" ({steps} fine-tuning steps)" if steps else ""))
        t0 = time.perf_counter()
        step = (lambda s: say(0.05 + 0.5 * s / steps, f"fine-tuning: step {s} of {steps}")) if steps else None
        a = adapter_for_checkpoint(ck, seed=seed)(support[None], mask, steps, step).task(0)  # T = 1
        t1 = time.perf_counter()
        say(0.6, "sampling")
        samples = draw(a)
        t2 = time.perf_counter()
        say(0.8, "scoring the support")
        score = _support_score(ck, a, support, seed, adapted_nll)
        t3 = time.perf_counter()
        say(0.9, "packing the adapted checkpoint")
        info = {"from": str(ck.path), "steps": steps, "lr": ck.config.train.inner_lr, "shots": len(support),
                "algo": ck.info.get("algo", ck.config.train.algo), "seed": seed, "support": "uploaded (fewgen serve)"}
        packed = _zipped_adapted(ck, a, info)
    return Result(support, samples, score, t1 - t0, t2 - t1, t3 - t2, packed)


def _support_score(ck: Any, a: Any, support: Tensor, seed: int, adapted_nll: Callable) -> float:
    """Images: mean NLL of the support in nats per image; text: its bits per character."""
    ev = ck.config.eval
    nats = adapted_nll(a, support[None], ev.importance_samples, ev.chunk, torch.Generator().manual_seed(seed))
    if ck.model.modality == "text":
        from .metrics.text import bits_per_char

        return float(bits_per_char(nats, support[None])[0])
    return float(nats.mean())


def _zipped_adapted(ck: Any, a: Any, info: dict[str, Any]) -> bytes:
    """The folder ``fewgen adapt`` would write, zipped in memory (the folder itself lives in a
    temporary directory that is removed before this returns)."""
    from .adaptation import save_adapted

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="fewgen-serve-") as tmp:
        folder = save_adapted(ck, a, Path(tmp) / "adapted", info)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    zf.write(f, Path("adapted") / f.relative_to(folder))
    return buf.getvalue()


# ----------------------------------------------------------------------------- the page
INSTALL_HINT = "fewgen serve needs Gradio: pip install 'fewgen[serve]'"


class Downloads:
    """The zips offered for download: a server-owned folder keeping the newest ``keep`` of them
    (Gradio copies each into its own cache, cleaned by ``delete_cache``); removed at exit."""

    def __init__(self, keep: int = 16):
        import atexit
        import shutil

        self.dir = Path(tempfile.mkdtemp(prefix="fewgen-serve-downloads-"))
        self.keep = keep
        atexit.register(shutil.rmtree, self.dir, ignore_errors=True)

    def put(self, data: bytes) -> Path:
        import uuid

        path = self.dir / f"adapted-{uuid.uuid4().hex[:12]}.zip"
        path.write_bytes(data)
        for old in sorted(self.dir.glob("*.zip"), key=lambda f: f.stat().st_mtime)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def read_uploaded(paths: Sequence[str] | None, upload_root: str | Path, limits: Limits) -> list[Upload]:
    """Gradio's stored uploads -> (name, bytes). Only files inside Gradio's upload folder are read
    (a path a client made up is refused), and their sizes are checked before reading."""
    root = Path(upload_root).resolve()
    files = [Path(p).resolve() for p in (paths or [])]
    if any(not f.is_relative_to(root) or not f.is_file() for f in files):
        raise DataError("an upload is missing; upload the files again")
    if sum(f.stat().st_size for f in files) > limits.max_bytes:
        raise DataError(f"uploads are over the limit of {limits.max_bytes / 2**20:.3g} MiB in all")
    return [(f.name, f.read_bytes()) for f in files]


def stats_line(r: Result, modality: str) -> str:
    """The figures shown under the result."""
    score = (f"support NLL {r.score:.1f} nats/image" if modality == "image"
             else f"support {r.score:.3f} bits/char") + " (in-sample: under the model adapted to it)"
    return (f"{len(r.support)} examples · {score} · adaptation {1000 * r.adapt_s:.0f} ms · "
            f"sampling {1000 * r.sample_s:.0f} ms · scoring {1000 * r.score_s:.0f} ms")


def guarded(fn: Callable[..., tuple], blank: tuple) -> Callable[..., tuple]:
    """``fn`` with its failures shown on the page: ``blank`` outputs plus the message (last)."""
    import functools
    import logging

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> tuple:
        try:
            return fn(*args, **kwargs)
        except FewgenError as e:
            return (*blank, f"**Error:** {e}")
        except Exception:  # noqa: BLE001 - the server keeps serving; the trace goes to its log
            logging.getLogger("fewgen.serve").exception("request failed")
            return (*blank, "**Error:** the server could not handle this request (the trace is in its log)")

    return run


def whole(value: Any, what: str) -> int:
    """A page's number field as an integer: finite and whole (a one-line error otherwise)."""
    number = finite_number(value, what)
    if number != int(number):
        raise DataError(f"{what} must be a whole number, got {number:g}")
    return int(number)


def page_handlers(registry: Registry, limits: Limits, downloads: Downloads) -> tuple[Callable, ...]:
    """The page's three event handlers: image request, text request, checkpoint chosen."""
    import gradio as gr
    from gradio.utils import get_upload_folder

    from .pictures import image_grid, support_and_samples

    def images(name, paths, n, seed, steps, *sampler_values, progress=gr.Progress()):
        served = registry.get(name)
        uploads = read_uploaded(paths, get_upload_folder(), limits)
        sampling = dict(zip(IMAGE_SAMPLERS, sampler_values))
        r = personalise_images(served, uploads, whole(n, "n"), whole(seed, "seed"), whole(steps, "steps"), sampling,
                               limits, lambda f, what: progress(f, desc=what))
        grid = image_grid(support_and_samples(r.support, r.samples), gap_after=[0])
        gallery = [image_grid([x[None]], scale=3, pad=0) for x in r.samples]
        return grid, gallery, stats_line(r, "image"), str(downloads.put(r.checkpoint_zip)), ""

    def text(name, lines, n, seed, steps, temperature, top_p, progress=gr.Progress()):
        r = personalise_text(registry.get(name), lines or "", whole(n, "n"), whole(seed, "seed"), whole(steps, "steps"),
                             temperature, top_p, limits, lambda f, what: progress(f, desc=what))
        return "\n".join(r.samples), stats_line(r, "text"), str(downloads.put(r.checkpoint_zip)), ""

    def chosen(name):
        served = registry.get(name)
        ev = served.checkpoint.config.eval
        return (registry.describe(name), gr.Column(visible=served.modality == "image"),
                gr.Column(visible=served.modality == "text"), *(getattr(ev, k) for k in IMAGE_SAMPLERS))

    return images, text, chosen


def build_app(registry: Registry, limits: Limits = Limits()) -> Any:
    """The Gradio Blocks page over ``registry``: pick a checkpoint, give its support, generate."""
    import gradio as gr

    images, text, chosen = page_handlers(registry, limits, Downloads())
    names = registry.names()
    first = registry.get(names[0])
    with gr.Blocks(title="fewgen serve", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown("## fewgen — personalise a generator from a few examples")
        choice = gr.Dropdown(names, value=names[0], label="checkpoint", elem_id="checkpoint")
        about = gr.Markdown(registry.describe(names[0]))
        with gr.Column(visible=first.modality == "image") as image_box:
            files = gr.File(file_count="multiple", type="filepath", elem_id="upload",
                            label=f"support: a few images, or one zip of them (at most {limits.max_files})")
            with gr.Row():
                n_img = gr.Slider(1, limits.max_samples, 32, step=1, label="samples", elem_id="n-images")
                seed_img = gr.Number(0, precision=0, label="seed")
                steps_img = gr.Slider(0, limits.max_steps, 0, step=1, label="fine-tuning steps")
                samplers = [gr.Dropdown(list(c), value=getattr(first.checkpoint.config.eval, k), label=f"sampler ({k})")
                            for k, c in IMAGE_SAMPLERS.items()]
            go_img = gr.Button("Generate", variant="primary", elem_id="generate-images")
            gr.Markdown("support (first row) and samples")  # a label over the image would hide the support row
            grid = gr.Image(type="pil", show_label=False, elem_id="grid", interactive=False)
            gallery = gr.Gallery(label="samples", columns=8, elem_id="samples", interactive=False)
        with gr.Column(visible=first.modality == "text") as text_box:
            lines_in = gr.Textbox(lines=8, label="support: one example a line", elem_id="support-text")
            with gr.Row():
                n_txt = gr.Slider(1, limits.max_samples, 20, step=1, label="samples", elem_id="n-text")
                seed_txt = gr.Number(0, precision=0, label="seed")
                steps_txt = gr.Slider(0, limits.max_steps, 0, step=1, label="fine-tuning steps")
                temperature = gr.Slider(0, 2, 1.0, step=0.05, label="temperature")
                top_p = gr.Slider(0.05, 1, 1.0, step=0.05, label="top-p")
            go_txt = gr.Button("Generate", variant="primary", elem_id="generate-text")
            lines_out = gr.Textbox(lines=12, label="generated", elem_id="generated", interactive=False)
        message = gr.Markdown(elem_id="message")
        stats = gr.Markdown(elem_id="stats")
        download = gr.File(label="adapted checkpoint (zip; the folder fewgen adapt writes)", elem_id="download",
                           interactive=False)
        choice.change(chosen, choice, [about, image_box, text_box, *samplers])
        go_img.click(guarded(images, (None, None, "", None)), [choice, files, n_img, seed_img, steps_img, *samplers],
                     [grid, gallery, stats, download, message])
        go_txt.click(guarded(text, ("", "", None)), [choice, lines_in, n_txt, seed_txt, steps_txt, temperature, top_p],
                     [lines_out, stats, download, message])
    return app


def serve(paths: Sequence[str | Path], host: str = "127.0.0.1", port: int = 7860, concurrency: int = 1,
          limits: Limits = Limits(), block: bool = True) -> Any:
    """Load the checkpoints and serve the page (``block=False`` returns the running app, for tests).

    ``concurrency`` requests run at once (Gradio's ``default_concurrency_limit``); each checkpoint
    gets that many model replicas, so they never share a module. Others wait in the queue.
    """
    from importlib.util import find_spec

    if find_spec("gradio") is None:
        raise FewgenError(INSTALL_HINT)
    registry = Registry(paths, replicas=concurrency)  # bad checkpoints fail before Gradio is imported (seconds)
    app = build_app(registry, limits)
    app.queue(default_concurrency_limit=concurrency)
    app.launch(server_name=host, server_port=port, max_file_size=limits.max_bytes, prevent_thread_lock=not block,
               show_error=False, quiet=not block)
    return app
