"""What a task is: named example sets, deterministic splits and seeded episode sampling.

A *task* is one distribution (an Omniglot character, a glyph across fonts, a language's
words). A :class:`TaskSet` holds every task's examples in one tensor (``data``) with
offsets, so an episode of T tasks is gathered with one indexing op, not a Python loop.
Episode sampling is a pure function of ``(seed, index)``: reproducible and infinite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import DataError
from ..noise import ShardGenerator, task_randn  # noqa: F401 (re-exported: episode noise belongs with episodes)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Task:
    """One task: a K-shot support set and a query set drawn from the same distribution."""

    name: str
    support: Tensor  # (K, *X)
    query: Tensor  # (Q, *X)


@dataclass(frozen=True)
class Episode:
    """A meta-batch of T tasks, vectorised. Support and query sizes may differ per task
    (``support_mask``, ``query_mask``); a missing query's slot holds another example of its
    task, so every slot is a valid input and query losses average over present queries only."""

    support: Tensor  # (T, K, *X)
    support_mask: Tensor  # (T, K) bool, True where a shot is present
    query: Tensor  # (T, Q, *X)
    names: tuple[str, ...]
    query_mask: Tensor | None = None  # (T, Q) bool, True where a query is present; None: all are

    def __post_init__(self) -> None:
        if self.query_mask is None:  # frozen: fill the default once, so readers never see None
            object.__setattr__(self, "query_mask", torch.ones(self.query.shape[:2], dtype=torch.bool,
                                                              device=self.query.device))

    @property
    def num_tasks(self) -> int:
        return self.support.shape[0]

    def to(self, device: torch.device | str) -> "Episode":
        return Episode(self.support.to(device), self.support_mask.to(device), self.query.to(device), self.names,
                       self.query_mask.to(device))

    def task(self, i: int) -> Task:
        """The i-th task with only its present shots and queries."""
        return Task(self.names[i], self.support[i][self.support_mask[i]], self.query[i][self.query_mask[i]])


def episode_generator(seed: int, index: int) -> torch.Generator:
    """The generator of episode ``index`` of stream ``seed`` (a pure function of both)."""
    # Mix with a large odd constant so nearby (seed, index) pairs give unrelated streams.
    return torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) % (2**63))


def shard_generator(seed: int, index: int, tasks: Tensor, total: int) -> ShardGenerator:
    """:func:`episode_generator` ``(seed, index)`` for the shard ``tasks`` of a meta-batch of ``total``."""
    return ShardGenerator(episode_generator(seed, index).initial_seed(), tasks, total)


@dataclass
class TaskSet:
    """All tasks of a source: ``data[offsets[i]:offsets[i+1]]`` are the examples of task i.

    ``groups[i]`` is the grouping key used for splits (alphabet, Unicode script, language),
    so that held-out tasks come from groups never seen in meta-training.
    """

    names: list[str]
    groups: list[str]
    data: Tensor  # (N_total, *X)
    offsets: Tensor  # (n_tasks + 1,) int64
    modality: str  # "image" | "text" | "toy"
    source: str = ""
    meta: dict = field(default_factory=dict)  # modality-specific facts (e.g. a tokenizer's pad id)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.groups) or len(self.names) + 1 != len(self.offsets):
            raise ValueError("TaskSet: names, groups and offsets disagree")
        if len(set(self.names)) != len(self.names):
            raise ValueError("TaskSet: task names must be unique")

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self.names)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def counts(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def examples(self, i: int) -> Tensor:
        """All examples of task i, ``(n_i, *X)``."""
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"no task named '{name}' in {self.source or 'this data'}") from None

    @staticmethod
    def from_lists(
        names: Sequence[str], groups: Sequence[str], examples: Sequence[Tensor], modality: str,
        source: str = "", meta: dict | None = None,
    ) -> "TaskSet":
        """Build from one tensor of examples per task."""
        if not examples:
            raise DataError(f"{source or 'data'}: no tasks found")
        counts = torch.tensor([len(e) for e in examples], dtype=torch.long)
        offsets = torch.zeros(len(examples) + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        return TaskSet(list(names), list(groups), torch.cat(list(examples)), offsets, modality, source, meta or {})

    def subset(self, indices: Sequence[int]) -> "TaskSet":
        """The tasks at ``indices`` (in that order), sharing nothing mutable with self."""
        idx = list(indices)
        return TaskSet.from_lists(
            [self.names[i] for i in idx], [self.groups[i] for i in idx],
            [self.examples(i) for i in idx] if idx else [], self.modality, self.source, dict(self.meta),
        ) if idx else TaskSet([], [], self.data[:0], torch.zeros(1, dtype=torch.long), self.modality, self.source, dict(self.meta))

    def seeded_subset(self, n: int, seed: int) -> "TaskSet":
        """At most ``n`` tasks drawn without replacement by ``seed``, in their original order
        (all tasks when ``n`` is 0 or not smaller): the same held-out tasks for every method."""
        if not n or len(self) <= n:
            return self
        return self.subset(sorted(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].tolist()))

    def with_min_examples(self, n: int) -> "TaskSet":
        """Only the tasks with at least n examples."""
        return self.subset([i for i, c in enumerate(self.counts.tolist()) if c >= n])

    # ------------------------------------------------------------------ splits
    def split(self, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
              split_file: str | Path = "") -> dict[str, "TaskSet"]:
        """Deterministic meta-train / meta-val / meta-test splits, disjoint by group.

        Groups (alphabets, scripts, languages) are shuffled with ``seed``; meta-val and then
        meta-test take whole groups until they hold their fraction of the tasks (at least one
        group each when there are three or more groups); the rest is meta-train. A
        ``split_file`` (JSON ``{"train": [...], "val": [...], "test": [...]}`` of group or task
        names) overrides this. A source may carry its own split (``meta["split"]``, the same
        JSON form: ``words`` holds out languages of the training scripts); ``split_file``
        ``"random"`` ignores it and splits by ``fractions``.
        """
        if split_file and split_file != "random":
            return self._split_from_file(Path(split_file))
        if not split_file and "split" in self.meta:
            return self._split_from_lists(self.meta["split"], f"{self.source or 'data'}'s own split")
        uniq = sorted(set(self.groups))
        order = torch.randperm(len(uniq), generator=torch.Generator().manual_seed(seed)).tolist()
        shuffled = [uniq[i] for i in order]
        per_group = {g: 0 for g in uniq}
        for g in self.groups:
            per_group[g] += 1
        total = len(self.groups)
        assign: dict[str, str] = {}
        pos = 0
        for split, frac in (("val", fractions[1]), ("test", fractions[2])):
            target, got = frac * total, 0
            # Leave at least one group for meta-train; take whole groups until the target is met.
            while frac > 0 and pos < len(shuffled) - 1:
                g = shuffled[pos]
                if got > 0 and got + per_group[g] / 2 > target:
                    break
                assign[g] = split
                got += per_group[g]
                pos += 1
                if got >= target:
                    break
        for g in shuffled[pos:]:
            assign[g] = "train"
        return {s: self.subset([i for i, g in enumerate(self.groups) if assign[g] == s]) for s in SPLITS}

    def _split_from_file(self, path: Path) -> dict[str, "TaskSet"]:
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: split file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: split file is not valid JSON ({e})") from None
        if not isinstance(spec, dict) or not set(spec) <= set(SPLITS):
            raise DataError(f"{path}: split file must be a JSON object with keys among {', '.join(SPLITS)}")
        return self._split_from_lists(spec, str(path))

    def _split_from_lists(self, spec: dict[str, Sequence[str]], origin: str) -> dict[str, "TaskSet"]:
        """The splits named by ``{"train": [...], ...}`` lists of task or group names (``origin``
        names them in errors); a task in no list is in no split."""
        out = {}
        for s in SPLITS:
            wanted = set(spec.get(s, []))
            out[s] = self.subset([i for i, (n, g) in enumerate(zip(self.names, self.groups)) if n in wanted or g in wanted])
        seen: set[str] = set()
        for s in SPLITS:
            overlap = seen & set(out[s].names)
            if overlap:
                raise DataError(f"{origin}: task '{sorted(overlap)[0]}' is in more than one split")
            seen |= set(out[s].names)
        return out

    # ------------------------------------------------------------------ episodes
    def sample_task_ids(self, num_tasks: int, generator: torch.Generator) -> Tensor:
        """Distinct task indices when possible, else with replacement; a mixture of sources
        (:mod:`fewgen.tasks.mix`) first draws each task's source by weight."""
        if "mix_weights" in self.meta and len(self):
            from .mix import mixture_task_ids

            return mixture_task_ids(self, num_tasks, generator)
        if num_tasks <= len(self):
            return torch.randperm(len(self), generator=generator)[:num_tasks]
        return torch.randint(len(self), (num_tasks,), generator=generator)

    def gather(self, task_ids: Tensor, num_examples: int, generator: torch.Generator) -> Tensor:
        """``num_examples`` distinct examples of each task, vectorised: ``(T, n, *X)``."""
        return self.gather_up_to(task_ids, num_examples, generator, num_examples)[0]

    def gather_up_to(self, task_ids: Tensor, num_examples: int, generator: torch.Generator, min_examples: int
                     ) -> tuple[Tensor, Tensor]:
        """Up to ``num_examples`` distinct examples of each task (at least ``min_examples``):
        ``(T, n, *X)`` and how many of each row are real, ``(T,)``; the slots past a task's
        count repeat its first drawn example. A task with fewer than ``min_examples`` is a DataError.
        """
        counts = self.counts[task_ids]
        if int(counts.min()) < min_examples:
            bad = int(task_ids[counts.argmin()])
            raise DataError(
                f"task '{self.names[bad]}' of {self.source or 'the data'} has {int(counts.min())} examples; "
                f"{min_examples} are needed (shots + queries)"
            )
        width = int(counts.max())
        keys = torch.rand(len(task_ids), width, generator=generator)
        keys = keys.masked_fill(torch.arange(width) >= counts[:, None], 2.0)  # padding sorts last
        pos = keys.argsort(dim=1)[:, :num_examples]  # (T, min(n, width))
        taken = counts.clamp(max=num_examples)
        if int(taken.min()) < num_examples:  # short tasks: their extra slots repeat a real example
            pos = torch.cat([pos, pos.new_zeros(len(task_ids), num_examples - pos.shape[1])], 1)
            pos = torch.where(torch.arange(num_examples) < taken[:, None], pos, pos[:, :1])
        return self.data[self.offsets[task_ids][:, None] + pos], taken

    def sample_episode(self, seed: int, index: int, num_tasks: int, shots: int, queries: int,
                       min_shots: int | None = None, min_queries: int | None = None) -> Episode:
        """Episode ``index`` of stream ``seed``: T tasks, up to K shots each, Q queries each.

        With ``min_shots`` < ``shots`` each task's support size is drawn uniformly in
        ``[min_shots, shots]`` (the rest of its K slots are masked), so one model learns to
        generate from any number of shots, zero (unconditional) included. With ``min_queries``
        < ``queries`` a task with fewer than K + Q examples gets the queries it has (at least
        ``min_queries``; ``query_mask`` marks them); tasks with K + Q examples draw exactly as
        without it, so such episodes do not change.
        """
        if len(self) == 0:
            raise DataError(f"{self.source or 'data'}: this split has no tasks")
        g = episode_generator(seed, index)
        ids = self.sample_task_ids(num_tasks, g)
        need = shots + (queries if min_queries is None else min_queries)
        x, taken = self.gather_up_to(ids, shots + queries, g, need)  # (T, K+Q, *X), (T,)
        lo = shots if min_shots is None else min_shots
        k = torch.randint(lo, shots + 1, (len(ids),), generator=g)
        mask = torch.arange(shots)[None, :] < k[:, None]
        query_mask = torch.arange(queries)[None, :] < (taken - shots)[:, None]  # (T, Q)
        return Episode(x[:, :shots], mask, x[:, shots:], tuple(self.names[i] for i in ids.tolist()), query_mask)


def stack_tasks(tasks: Sequence[Task]) -> Episode:
    """Stack tasks of equal support and query sizes into an :class:`Episode`."""
    sup = torch.stack([t.support for t in tasks])
    return Episode(sup, torch.ones(sup.shape[:2], dtype=torch.bool), torch.stack([t.query for t in tasks]),
                   tuple(t.name for t in tasks))


Augment = Callable[[Episode, torch.Generator], Episode]
