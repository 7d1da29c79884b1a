"""Checkpoints as weights: which complete olmo-core checkpoints a folder holds, and
``train.init_from`` (start a run from another model's weights: anneal, continued pretraining).

``init_from`` takes an olmo-core checkpoint (``.../stepN`` of any run, or a run dir: its latest
complete checkpoint) or a Hugging Face OLMo-2/OLMo-3 directory. Shapes are compared with the
configured model from metadata only (the distributed checkpoint's, or the HF config's), so a
mismatch is one line naming the first differing tensor before anything is built or trained.
Loading is olmo-core's: ``load_model_and_optim_state`` (model only: a fresh optimizer) and
``load_hf_model``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmotrain.errors import UserError

EMBEDDING_KEYS = ("embeddings.weight", "lm_head.w_out.weight")
"""Rows of these are the (padded) vocabulary, which HF models keep unpadded."""


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """Steps of the complete olmo-core checkpoints under ``checkpoint_dir``, ascending."""
    from olmo_core.train.checkpoint import Checkpointer

    steps = []
    for p in checkpoint_dir.glob("step*"):
        m = re.fullmatch(r"step(\d+)", p.name)
        if m and Checkpointer.dir_is_checkpoint(p):
            steps.append(int(m.group(1)))
    return sorted(steps)


def checkpoint_problem(path: Path) -> str | None:
    """Why the olmo-core checkpoint ``path`` cannot be resumed, ``None`` when it is whole.

    olmo-core writes a checkpoint under ``stepN-tmp`` and renames it when done, so a crash mid-
    write leaves no ``stepN``; this catches what happens after: a file missing or cut short
    (against the sizes the distributed checkpoint's metadata records) or a trainer state that
    does not load. A flipped byte inside a shard of the right size is not detected.
    """
    import torch
    from olmo_core.train.checkpoint import Checkpointer
    from torch.distributed.checkpoint import FileSystemReader

    if not Checkpointer.dir_is_checkpoint(path):
        return "incomplete (no metadata)"
    try:
        meta = FileSystemReader(str(path / "model_and_optim")).read_metadata()
    except Exception as exc:  # noqa: BLE001 - any unreadable metadata means the same here
        return f"model_and_optim/.metadata does not load ({type(exc).__name__})"
    need: dict[str, int] = {}
    for info in (meta.storage_data or {}).values():
        end = info.offset + info.length
        need[info.relative_path] = max(need.get(info.relative_path, 0), end)
    for rel, size in sorted(need.items()):
        file = path / "model_and_optim" / rel
        if not file.is_file():
            return f"model_and_optim/{rel} is missing"
        if (have := file.stat().st_size) < size:
            return f"model_and_optim/{rel} is cut short ({have:,} of {size:,} bytes)"
    for state in sorted((path / "train").glob("rank*.pt")):
        try:
            torch.load(state, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            return f"train/{state.name} does not load ({type(exc).__name__})"
    return None


@dataclass(frozen=True)
class InitSource:
    """Where a run's initial weights come from."""

    kind: str
    """``olmo-core`` or ``hf``."""
    path: Path

    def describe(self) -> str:
        what = "olmo-core checkpoint" if self.kind == "olmo-core" else "Hugging Face model"
        return f"{what} {self.path}"


def init_source(path: str) -> InitSource:
    """Classify ``train.init_from``; one line for a path of neither format."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise UserError(f"train.init_from={path} does not exist")
    if (p / "model_and_optim").is_dir():
        return InitSource("olmo-core", p)
    if (p / "checkpoints").is_dir() and (steps := checkpoint_steps(p / "checkpoints")):
        return InitSource("olmo-core", p / "checkpoints" / f"step{steps[-1]}")
    if (p / "config.json").is_file() and any(p.glob("*.safetensors")):
        return InitSource("hf", p)
    raise UserError(
        f"train.init_from={path} is neither an olmo-core checkpoint (a dir with model_and_optim/, "
        "or a run dir with complete checkpoints) nor a Hugging Face model dir (config.json + "
        "*.safetensors)"
    )


def _source_shapes(source: InitSource) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of ``source`` under olmo-core's model keys, read from metadata only."""
    if source.kind == "olmo-core":
        from torch.distributed.checkpoint import FileSystemReader

        meta = FileSystemReader(str(source.path / "model_and_optim")).read_metadata()
        return {
            k[len("model.") :]: tuple(v.size)
            for k, v in meta.state_dict_metadata.items()
            if k.startswith("model.") and hasattr(v, "size")
        }
    import torch
    from olmo_core.nn.hf.convert import convert_state_from_hf
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        hf_config = AutoConfig.from_pretrained(source.path, local_files_only=True)
        with torch.device("meta"):
            hf = AutoModelForCausalLM.from_config(hf_config)
        state = convert_state_from_hf(hf_config, hf.state_dict(), model_type=hf_config.model_type)
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(
            f"train.init_from={source.path}: not an OLMo-2/OLMo-3 model olmo-core converts ({exc})"
        ) from exc
    return {k: tuple(v.shape) for k, v in state.items()}


def check_init_shapes(source: InitSource, model_config: Any) -> None:
    """Refuse, naming the first differing tensor, when ``source`` does not fit the configured model."""
    import logging

    import torch

    olmo_log = logging.getLogger("olmo_core")
    level = olmo_log.level
    olmo_log.setLevel(logging.WARNING)  # building logs the whole module tree at INFO
    try:
        with torch.device("meta"):
            model = model_config.build(init_device="meta")
    finally:
        olmo_log.setLevel(level)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = _source_shapes(source)
    for key, shape in ours.items():
        other = theirs.get(key)
        if other is None:
            problem = "is missing there"
        elif key in EMBEDDING_KEYS and source.kind == "hf":
            problem = None if other[1:] == shape[1:] and other[0] <= shape[0] else f"is {other}"
        else:
            problem = None if other == shape else f"is {other}"
        if problem:
            raise UserError(
                f"train.init_from={source.path} does not fit model: tensor {key} {problem}, the "
                f"configured model has {shape}; configure the same shape as that model"
            )
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise UserError(
            f"train.init_from={source.path} does not fit model: it has tensor {extra[0]}, which "
            "the configured model lacks; configure the same shape as that model"
        )


def load_init_weights(source: InitSource, model: Any, work_dir: str) -> None:
    """Load ``source``'s weights into ``model`` (any parallelism; every rank calls this)."""
    if source.kind == "olmo-core":
        from olmo_core.distributed.checkpoint import load_model_and_optim_state

        load_model_and_optim_state(str(source.path / "model_and_optim"), model, work_dir=work_dir)
        return
    from olmo_core.nn.hf.checkpoint import load_hf_model

    state = model.state_dict()
    load_hf_model(source.path, state, num_embeddings=model.vocab_size, work_dir=work_dir)
    model.load_state_dict(state)
