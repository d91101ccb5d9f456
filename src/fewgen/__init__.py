"""fewgen: meta-generation — learn a new distribution from a few examples and sample from it.

The small public API::

    from fewgen import Config, load_tasks, train, load, adapt, sample_images
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import FewgenError  # noqa: E402


def __getattr__(name: str):  # lazy: `import fewgen` stays fast for the CLI's --help
    if name == "load_tasks":
        from .tasks.spec import load_tasks

        return load_tasks
    if name == "train":
        from .training import train

        return train
    if name == "load":
        from .checkpoint import load

        return load
    raise AttributeError(name)


__all__ = ["Config", "FewgenError", "load_config", "load_tasks", "train", "load", "__version__"]
