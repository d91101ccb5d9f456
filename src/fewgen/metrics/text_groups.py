"""Per-task text figures grouped by script, so a mean over tasks cannot hide one script.

A held-out split of languages is mostly Latin and Cyrillic with a few others; a model that is
good on Latin and poor on everything else still has a good mean. Each task's *script* is the
dominant Unicode script of its strings (:func:`fewgen.metrics.text_fidelity.dominant_script`:
LATIN, CYRILLIC, ARABIC, CJK, ...), computed once per task; every per-task figure is then
also reported as a mean over the tasks of each script.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping

from ..tasks.base import TaskSet
from .text_fidelity import dominant_script


def task_scripts(ts: TaskSet) -> dict[str, str]:
    """The dominant script of every task's strings: ``{task name: script}``."""
    from ..models.bytes import decode_batch

    return {name: dominant_script(decode_batch(ts.examples(i))) for i, name in enumerate(ts.names)}


def group_means(per_task: Mapping[str, float | None | Mapping[str, Any]], group_of: Mapping[str, str]
                ) -> dict[str, dict[str, Any]]:
    """Mean of per-task figures within each group: ``{task: value}`` or ``{task: {figure: value}}``
    and ``{task: group}`` -> ``{group: {"tasks": n, figure: mean}}``.

    A plain value is the figure ``"value"``. Non-numbers are skipped and so are missing and
    non-finite values (a figure's mean is over the tasks that have it; None if none has). Groups
    come largest first, then by name; a task missing from ``group_of`` is in group ``"UNKNOWN"``.
    """
    members: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for task, figures in per_task.items():
        members[group_of.get(task, "UNKNOWN")].append(figures if isinstance(figures, Mapping) else {"value": figures})
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(members, key=lambda g: (-len(members[g]), g)):
        rows = members[group]
        keys = dict.fromkeys(k for r in rows for k, v in r.items() if _is_number(v) or v is None)
        out[group] = {"tasks": len(rows)}
        for key in keys:
            vals = [float(r[key]) for r in rows if _is_number(r.get(key)) and math.isfinite(r[key])]
            out[group][key] = sum(vals) / len(vals) if vals else None
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def format_groups(groups: Mapping[str, Mapping[str, Any]], key: str, digits: int = 2) -> str:
    """One line of a figure per group: ``"LATIN (6 tasks) 4.05  CYRILLIC (1) 4.30"``."""
    parts = []
    for i, (group, g) in enumerate(groups.items()):
        v = g.get(key)
        unit = (" tasks" if g["tasks"] != 1 else " task") if i == 0 else ""  # named once, on the first
        parts.append(f"{group} ({g['tasks']}{unit}) " + ("-" if v is None else f"{v:.{digits}f}"))
    return "  ".join(parts)
