"""fewgen: meta-generation — learn a new distribution from a few examples and sample from it.

The small public API::

    from fewgen import Config, load_tasks, train, load, adapt, sample_images, sample_text

``train(cfg, out)`` meta-trains and writes a checkpoint folder; ``load(path)`` rebuilds it;
``adapt(model, support)`` adapts to T tasks' supports (T, K, *X) (one forward pass, or
fine-tuning with ``steps``); ``sample_images`` / ``sample_text`` draw from the adapted
generator. ``adapter_for_checkpoint(ck)`` and ``adapt_checkpoint`` adapt the way the
checkpoint's algorithm was meta-trained to (what ``fewgen eval`` and ``fewgen adapt`` use).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import FewgenError  # noqa: E402

# name -> the module that defines it; imported on first use, so `import fewgen` stays fast for
# the CLI's --help (torch is not imported until something needs it)
_LAZY = {
    "load_tasks": "tasks.spec", "train": "training", "load": "checkpoint", "adapt": "adaptation",
    "adapt_checkpoint": "adaptation", "adapter_for_checkpoint": "adaptation", "sample_images": "sample",
    "sample_text": "sample", "build_model": "models",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fewgen' has no attribute '{name}'")
    from importlib import import_module

    return getattr(import_module(f".{_LAZY[name]}", __name__), name)


__all__ = ["Config", "FewgenError", "load_config", *_LAZY, "__version__"]
