"""The run directory: ``${output_root}/${run_name}`` holds one run, which a re-run resumes.

Layout: ``config.yaml`` (the resolved config of the run), ``checkpoints/stepN`` (olmo-core
checkpoints), ``metrics.jsonl``. Re-running the same command resumes from the
latest checkpoint; a finished run is reported, not retrained; a command whose model, data or
schedule differ from the saved run is refused before anything is written (``fresh=true`` moves the
old run aside, nothing is deleted).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf.errors import OmegaConfBaseException

from olmotrain.chinchilla import Checkpoint
from olmotrain.config.compose import (
    LEGACY_DERIVED,
    from_dict,
    load_run_config,
    save_run_config,
    to_dict,
)
from olmotrain.config.naming import EXECUTION_KEYS
from olmotrain.config.schema import RunConfig
from olmotrain.errors import UserError
from olmotrain.metrics import METRICS_LOG, step_metrics_file
from olmotrain.model.checkpoint import checkpoint_problem, checkpoint_steps
from olmotrain.paths import move_aside, write_atomically
from olmotrain.plan import Plan, derive_plan, load_plan, save_plan
from olmotrain.train.lock import LOCK_FILES, Holder, RunLock

log = logging.getLogger("olmotrain")

LEGACY_PLAN_KEYS = ("max_steps", "batch_size_tokens", "duration_tokens", "warmup_tokens", "lr")
LEGACY_PLAN_KEYS += ("micro_batch_instances", "checkpoints", "period_ends", "num_params")
"""What an older olmotrain froze under ``derived:`` in a run's config.yaml and a plan reads back."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in EXECUTION_KEYS:
            continue
        out.update(_flatten(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every training-relevant setting that differs.

    Only settings count: what follows from them is the plan's. (Run dirs of olmotrain before
    ``plan.json`` froze those numbers in their config under ``derived:``; they are ignored.)
    """
    a, b = _flatten(saved), _flatten(new)
    keys = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    settings = [k for k in keys if not k.startswith(f"{LEGACY_DERIVED}.")]
    return [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}" for k in settings]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class RunDir:
    """A run directory and what it already holds."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def plan(self) -> Plan:
        """The run's plan: its ``plan.json``; else (a run dir written before plans were saved, or
        a plan.json that no longer reads) derived again from its ``config.yaml``, with the numbers
        an older olmotrain froze there (``derived:``) kept: they are what the run trained with.
        Raises ``UserError`` when the config does not read either."""
        try:
            if (plan := load_plan(self.path)) is not None:
                return plan
        except UserError as exc:
            log.warning("olmotrain: %s; deriving the plan from config.yaml instead", exc)
        plan = derive_plan(load_run_config(self.config_path))
        frozen = (yaml.safe_load(self.config_path.read_text()) or {}).get(LEGACY_DERIVED) or {}
        kept = {k: frozen[k] for k in LEGACY_PLAN_KEYS if k in frozen}
        if "checkpoints" in kept:
            kept["checkpoints"] = [Checkpoint(**ck) for ck in kept["checkpoints"]]
        return dataclasses.replace(plan, **kept)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl`` (read it with :func:`olmotrain.metrics.read_metrics_log`)."""
        return self.path / METRICS_LOG

    def wandb_id(self) -> str:
        """This run's W&B run id, made once and kept in ``wandb_id`` (a fresh run gets a new one)."""
        path = self.path / "wandb_id"
        if not path.exists():
            import uuid

            write_atomically(path, uuid.uuid4().hex[:16])
        return path.read_text().strip()

    def latest_step(self) -> int | None:
        """Step of the latest complete checkpoint, if any."""
        steps = checkpoint_steps(self.checkpoints) if self.checkpoints.exists() else []
        return steps[-1] if steps else None

    def broken_checkpoints(self) -> tuple[list[tuple[int, str]], int | None]:
        """``([(step, problem)...], resumable step)``: the checkpoints newer than the newest one
        that can be resumed (:func:`checkpoint_problem`), and that one's step."""
        broken = []
        steps = checkpoint_steps(self.checkpoints) if self.checkpoints.exists() else []
        for step in reversed(steps):
            problem = checkpoint_problem(self.checkpoints / f"step{step}")
            if problem is None:
                return broken, step
            broken.append((step, problem))
        return broken, None

    def resume_step(self) -> int | None:
        """The step a (re-)run resumes from: the newest checkpoint that can be resumed. Raises
        ``UserError`` when there are checkpoints but none can: never a silent restart at 0."""
        return self._resumable(*self.broken_checkpoints())

    def _resumable(self, broken: list[tuple[int, str]], step: int | None) -> int | None:
        if broken and step is None:
            newest, problem = broken[0]
            raise UserError(
                f"no checkpoint of {self.path} can be resumed ({len(broken)} checkpoint(s); the "
                f"newest, step{newest}: {problem}); move {self.checkpoints} aside to start over, "
                "or pass fresh=true"
            )
        return step

    def set_aside(self, step: int, why: str) -> Path:
        """Rename checkpoint ``stepN`` to ``stepN.<why>-<time>`` (out of olmo-core's sight;
        nothing is deleted); the new path."""
        return move_aside(self.checkpoints / f"step{step}", why)

    def set_aside_broken_checkpoints(self) -> int | None:
        """Before resuming (rank 0): set aside the checkpoints that cannot be resumed, one line
        each; the step resumed from."""
        broken, step = self.broken_checkpoints()
        self._resumable(broken, step)
        for bad, problem in broken:
            aside = self.set_aside(bad, "broken")
            log.warning(
                "olmotrain: checkpoint step%d cannot be resumed (%s); moved to %s, resuming from %s",
                bad, problem, aside.name, f"step{step}" if step is not None else "the start",
            )  # fmt: skip
        return step

    @property
    def tokenizer_dir(self) -> Path:
        """Where olmo-core's HF converter looks for a checkpoint's tokenizer
        (``<checkpoint>/../tokenizer``): a copy of the run's tokenizer.json lives here."""
        return self.checkpoints / "tokenizer"

    def save_tokenizer(self, path: str | None) -> None:
        """Copy the run's local ``tokenizer.json`` to :attr:`tokenizer_dir` (once; rank 0 calls)."""
        if not path or not Path(path).is_file():
            return
        target = self.tokenizer_dir / "tokenizer.json"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, Path(path).read_text())

    @property
    def data_files_path(self) -> Path:
        """``{token file: sha256}`` of the files the run started training on."""
        return self.path / "data_files.json"

    def record_data_files(self, hashes: dict[str, str]) -> None:
        """Remember the run's token files (once: a resumed run keeps what it started with)."""
        if hashes and not self.data_files_path.exists():
            write_atomically(self.data_files_path, json.dumps(hashes, indent=1) + "\n")

    def check_data_files(self, hashes: dict[str, str]) -> None:
        """A resumed run trains on the token files it started with: one line for the first one
        changed (same name, other content), gone or new since (a run dir without a record, made
        before olmotrain kept one, passes)."""
        try:
            saved = json.loads(self.data_files_path.read_text())
        except (OSError, ValueError):
            return
        changed = (
            [(p, "changed since this run started training on it (other content)")
             for p, sha in saved.items() if p in hashes and hashes[p] != sha]
            + [(p, "is no longer among the run's data files") for p in saved if p not in hashes]
            + [(p, "was added to the run's data since it started") for p in hashes if p not in saved]
        )  # fmt: skip
        if changed:
            path, what = changed[0]
            raise UserError(
                f"token file {path} {what}; resuming would train on other data: "
                f"restore the files, or pass fresh=true to move {self.path.name} aside and start over"
            )

    def check(self, config: RunConfig, fresh: bool = False) -> bool:
        """Whether this dir can hold ``config``'s run: new, or the same run again. Writes nothing.

        Raises ``UserError`` when it holds a different run, unless ``fresh``; returns ``True``
        when that old run must first be moved aside.
        """
        if self.config_path.exists():
            try:
                saved = yaml.safe_load(self.config_path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise UserError(
                    f"{self.config_path} is not readable YAML ({exc.__class__.__name__}); move the run dir aside or pass fresh=true"
                ) from exc
            diffs = config_differences(_with_defaults(saved), to_dict(config))
            if diffs and not fresh:
                more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
                raise UserError(
                    f"{self.path} holds a different run ({'; '.join(diffs[:3])}{more}); "
                    f"use another run_name=..., or fresh=true to move it aside and start over"
                )
            return bool(diffs)
        held = self.path.exists() and any(p.name not in LOCK_FILES for p in self.path.iterdir())
        if held and not fresh:
            raise UserError(
                f"{self.path} exists and is not an olmotrain run dir; choose another run_name=... or output_root=..."
            )
        return False

    def claim(
        self, config: RunConfig, plan: Plan, fresh: bool = False, holder: Holder | None = None
    ) -> RunLock:
        """Take this dir's owner lock (:mod:`olmotrain.train.lock`), then make it hold ``config``'s
        run (see :meth:`check`) and its ``plan`` (``plan.json``); ``fresh`` renames a dir holding a different run to
        ``<name>.replaced-<time>`` first (nothing is deleted). The caller releases the lock."""
        holder = holder or Holder.this_process()
        lock = RunLock(self.path)
        lock.acquire(holder)  # refused here, before anything of the run is written
        try:
            if self.check(config, fresh):  # checked again: now nobody else can change it
                lock.release()
                move_aside(self.path, "replaced")
                lock.acquire(holder)
            # The same run may come back with other devices or log settings: record the latest,
            # which is also what launched ranks read.
            save_run_config(config, self.config_path)
            save_plan(plan, self.path)
        except BaseException:
            lock.release()
            raise
        return lock


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the keys the schema gained since it was written, at their defaults
    (so a run dir made by an older olmotrain is the same run); as saved when it does not load."""
    try:
        return to_dict(from_dict(saved))
    except (OmegaConfBaseException, TypeError, ValueError):
        return saved


@dataclass
class RunCheckpoint:
    """One complete checkpoint of a run (``RUN/checkpoints/stepN``) and the run's config."""

    run: RunDir
    step: int
    config: RunConfig

    @property
    def path(self) -> Path:
        return self.run.checkpoints / f"step{self.step}"

    @property
    def metrics_path(self) -> Path:
        """The checkpoint's ``metrics_step{N}.json``."""
        return self.run.checkpoints / step_metrics_file(self.step)


def find_checkpoint(path: Path, step: int | None = None) -> RunCheckpoint:
    """The checkpoint that a run dir (at ``step``, default: its latest complete checkpoint) or
    ``RUN_DIR/checkpoints/stepN`` names, as evaluate, export and generate take it; one clear
    ``UserError`` for anything else, before any model is loaded."""
    path = path.resolve()
    named = re.fullmatch(r"step(\d+)", path.name)
    if named and path.parent.name == "checkpoints":
        if step is not None and step != int(named.group(1)):
            raise UserError(f"{path} is the checkpoint of step {named.group(1)}, not --step {step}")
        run, step = RunDir(path.parent.parent), int(named.group(1))
    else:
        run = RunDir(path)
    if not run.path.is_dir():
        raise UserError(f"{path} is not a run dir or a checkpoint (RUN_DIR/checkpoints/stepN)")
    if not run.config_path.exists():
        raise UserError(f"{run.path} holds no config.yaml: not an olmotrain run dir")
    steps = checkpoint_steps(run.checkpoints) if run.checkpoints.is_dir() else []
    if not steps:
        raise UserError(f"{run.path} has no complete checkpoint yet; train it first")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        shown = ", ".join(map(str, steps[-12:]))
        raise UserError(f"{run.path} has no checkpoint at step {step}; it has steps {shown}")
    return RunCheckpoint(run, step, load_run_config(run.config_path))
