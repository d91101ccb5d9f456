"""The domain feature network behind FID, KID, fidelity, diversity and memorisation.

Inception-v3 features know nothing of handwritten characters or font glyphs, so fewgen trains
its own: a small convolutional *prototypical network* (Snell, Swersky & Zemel, "Prototypical
Networks for Few-shot Learning", NeurIPS 2017), trained episodically on the meta-train tasks
(N-way K-shot: the mean embedding of each class's shots is its prototype; queries are
classified by a softmax over negative squared Euclidean distances to the prototypes). Its
embedding space is one where Euclidean distance separates *tasks* it has never seen, which
is what the sample-quality metrics of :mod:`fewgen.metrics.quality` need.

The network is Snell et al.'s Conv-4 with GroupNorm in place of BatchNorm (no state shared
across tasks; DESIGN rule 1) and stride-2 convolutions in place of max-pooling, built from the
shared :func:`fewgen.models.nn.conv_block`; a global mean pool gives a ``width``-dimensional
feature whatever the image size.

It is stored like a checkpoint: a folder with ``config.json`` (constructor arguments, how it
was trained, versions, the SHA-256 of the weights) and ``model.safetensors``, both written
atomically; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .checkpoint import CONFIG_FILE, MODEL_FILE, atomic_write, sha256_of
from .errors import CheckpointError, DataError
from .models.nn import conv_block
from .progress import Progress
from .tasks.base import TaskSet, episode_generator
from .tasks.augment import flip, rotate90
from .metrics.quality import embed  # noqa: F401 (re-exported: the features of this network)

FORMAT = "fewgen-feature-net"
FORMAT_VERSION = 1


class FeatureNet(nn.Module):
    """Conv-4 embedding ``(B, C, S, S) -> (B, width)`` (Snell et al. 2017, GroupNorm variant).

    Images are floats in ``[0, 1]`` with ink = 1 (what :mod:`fewgen.tasks.images` produces);
    ``uint8`` images in ``[0, 255]`` are rescaled. ``num_features`` is the feature size, the
    attribute torchmetrics' FID/KID read from a custom feature module. ``info`` holds how the
    net was trained (stored in ``config.json``, not in the weights).
    """

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64, depth: int = 4,
                 groups: int = 8) -> None:
        super().__init__()
        # Each stride-2 block halves the side; stop before it would reach zero.
        depth = max(1, min(depth, int(math.log2(image_size))))
        self.kwargs = {"channels": channels, "image_size": image_size, "width": width, "depth": depth,
                       "groups": groups}
        self.body = nn.Sequential(*[conv_block(channels if i == 0 else width, width, 2, groups) for i in range(depth)])
        self.num_features = width
        self.info: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if x.dim() != 4 or x.shape[1] != self.kwargs["channels"]:
            raise ValueError(f"FeatureNet: expected images (B, {self.kwargs['channels']}, S, S), got {tuple(x.shape)}")
        h = self.body(x.to(self.body[0][0].weight.dtype))  # (B, width, s, s)
        return h.mean((-2, -1))  # (B, width)


# ----------------------------------------------------------------------------- training
def proto_loss(net: FeatureNet, support: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Prototypical-network loss of one episode: support ``(N, K, C, S, S)``, query ``(N, Q, C, S, S)``.

    Returns the mean cross-entropy of classifying each query among the N prototypes (logits =
    negative squared Euclidean distance, Snell et al. 2017, eq. 2) and the query accuracy.
    """
    n, k, q = support.shape[0], support.shape[1], query.shape[1]
    protos = net(support.flatten(0, 1)).view(n, k, -1).mean(1)  # (N, D)
    fq = net(query.flatten(0, 1))  # (N*Q, D)
    logits = -(fq[:, None, :] - protos[None]).pow(2).sum(-1)  # (N*Q, N)
    labels = torch.arange(n, device=fq.device).repeat_interleave(q)
    return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).float().mean()


def train_feature_net(taskset: TaskSet, steps: int = 300, ways: int = 20, shots: int = 5, queries: int = 5,
                      seed: int = 0, progress: bool = False, *, width: int = 64, depth: int = 4,
                      lr: float = 3e-3, augment: bool = True, device: str | torch.device = "cpu") -> FeatureNet:
    """Train a :class:`FeatureNet` episodically on ``taskset`` (the meta-train tasks).

    Episode ``i`` is ``taskset.sample_episode(seed, i, ways, shots, queries)``: ``ways``
    distinct tasks (fewer if the set has fewer) with ``shots + queries`` examples each; tasks
    with fewer examples are left out. With ``augment`` each task of an episode is rotated by a
    multiple of 90 degrees and maybe flipped (:func:`fewgen.tasks.augment.rotate90`, :func:`~fewgen.tasks.augment.flip`), so a
    transformed character is a new class: 8x the classes, which narrows the gap between
    meta-train and held-out accuracy on small data sets. Adam at ``lr``; the init is seeded by
    ``seed`` without touching the global random state. Returns the net in eval mode on ``device`` with
    ``net.info`` recording the settings and the mean loss / accuracy of the last 10% of episodes.
    """
    if taskset.modality != "image":
        raise DataError(f"{taskset.source or 'data'}: the feature extractor needs image tasks, got {taskset.modality}")
    ts = taskset.with_min_examples(shots + queries)
    ways = min(ways, len(ts))
    if ways < 2:
        raise DataError(f"{taskset.source or 'data'}: training the feature extractor needs at least two tasks "
                        f"with {shots + queries} examples (shots + queries)")
    channels, size = ts.example_shape[0], ts.example_shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(channels, size, width, depth).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    tail = max(1, steps // 10)
    losses, accs = [], []
    bar = Progress(steps, 0, "feature net", enabled=progress, unit="episode", leave=False)
    for i in range(steps):
        ep = ts.sample_episode(seed, i, ways, shots, queries)
        if augment:
            g = episode_generator(seed + 1, i)
            ep = flip(rotate90(ep, g), g)
        ep = ep.to(device)
        loss, acc = proto_loss(net, ep.support, ep.query)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        accs.append(float(acc))
        bar.show(loss=f"{losses[-1]:.3f}", acc=f"{accs[-1]:.2f}")
        bar.update()
    bar.close()
    net.eval()
    net.info = {"source": taskset.source, "tasks": len(ts), "steps": steps, "ways": ways, "shots": shots,
                "queries": queries, "seed": seed, "lr": lr, "augment": augment,
                "final_loss": sum(losses[-tail:]) / tail if losses else None,
                "final_accuracy": sum(accs[-tail:]) / tail if accs else None}
    return net


# ----------------------------------------------------------------------------- storage
def save_feature_net(path: str | Path, net: FeatureNet) -> Path:
    """Write ``net`` as a folder: ``model.safetensors`` then ``config.json`` (with its hash), atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    atomic_write(path / MODEL_FILE, lambda p: save_file(state, str(p)))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kwargs": net.kwargs, "info": net.info,
            "versions": {"torch": torch.__version__}, "sha256": {MODEL_FILE: sha256_of(path / MODEL_FILE)}}
    atomic_write(path / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2), encoding="utf-8"))
    return path


def load_feature_net(path: str | Path, device: str | torch.device = "cpu") -> FeatureNet:
    """Rebuild a :class:`FeatureNet` from its folder (eval mode); :class:`CheckpointError` if
    the folder is missing, of another format, or its weights are damaged."""
    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        weights = path / MODEL_FILE
        hashes = meta.get("sha256") if isinstance(meta, dict) else None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: not a fewgen feature extractor of format version {FORMAT_VERSION}")
        if not isinstance(hashes, dict) or hashes.get(MODEL_FILE) != sha256_of(weights):
            raise CheckpointError(f"{weights}: integrity check failed (SHA-256 differs from {CONFIG_FILE})")
        net = FeatureNet(**meta["kwargs"])
        net.load_state_dict(load_file(str(weights)), strict=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no feature extractor here ({Path(e.filename or path).name} missing)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError, AttributeError) as e:
        raise CheckpointError(f"{path}: unreadable feature extractor ({type(e).__name__})") from None
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(f"{path}: weights do not match the feature extractor described in "
                              f"{CONFIG_FILE} ({type(e).__name__})") from None
    net.info = meta["info"] if isinstance(meta.get("info"), dict) else {}
    return net.to(device).eval()


def data_fingerprint(taskset: TaskSet) -> str:
    """SHA-256 of a task set's names, offsets and examples: a cached net is reused only for the same data."""
    h = hashlib.sha256()
    h.update("\n".join(taskset.names).encode("utf-8"))
    h.update(taskset.offsets.numpy().tobytes())
    h.update(str(tuple(taskset.data.shape)).encode())
    h.update(taskset.data.contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_net_for(taskset: TaskSet, cache_path: str | Path, steps: int = 300, ways: int = 20, shots: int = 5,
                    queries: int = 5, seed: int = 0, progress: bool = False, *, width: int = 64, depth: int = 4,
                    lr: float = 3e-3, augment: bool = True, device: str | torch.device = "cpu") -> FeatureNet:
    """The feature extractor of ``taskset`` (the meta-train tasks), trained once and cached.

    ``cache_path`` is the net's folder. Its ``config.json`` records a key (the data's
    fingerprint and every training setting); a stored net whose key matches is loaded, anything
    else (absent, damaged, other data or settings) is retrained and overwritten.
    """
    key = {"data": data_fingerprint(taskset), "steps": steps, "ways": ways, "shots": shots, "queries": queries,
           "seed": seed, "width": width, "depth": depth, "lr": lr, "augment": augment}
    try:
        net = load_feature_net(cache_path, device)
        if net.info.get("key") == key:
            return net
    except CheckpointError:
        pass
    net = train_feature_net(taskset, steps, ways, shots, queries, seed, progress, width=width, depth=depth,
                            lr=lr, augment=augment, device=device)
    net.info["key"] = key
    save_feature_net(cache_path, net)
    return net
