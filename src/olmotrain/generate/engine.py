"""Generators: a prompt in, new tokens out as they are chosen.

Two engines, one interface:

- ``transformers``: the model as a transformers OLMo-2/3 model (an exported HF directory, or a
  native checkpoint converted in memory by olmo-core's state conversion) decoding with its KV
  cache (``generate`` with a streamer): the fast path on CPU and GPU.
- ``olmo-core``: the checkpoint's own olmo-core ``Transformer`` and olmo-core's token selection
  (:mod:`olmotrain.model.sample`); no KV cache, but it runs every model olmotrain trains,
  layer-wise-scaled ones included.

Stop texts are matched on the decoded completion; the completion is cut before them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmotrain.errors import UserError
from olmotrain.model.sample import Sampling, sample_tokens

ENGINES = ("auto", "transformers", "olmo-core")


@dataclass
class Completion:
    """One prompt's result (the ``--json`` line)."""

    prompt: str
    completion: str
    token_ids: list[int] = field(default_factory=list)
    """The new ids (up to the stop text, EOS included when it ended the completion)."""

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion, "token_ids": self.token_ids}


@dataclass
class Generator:
    """A loaded model, its tokenizer and the engine that decodes with it."""

    engine: str
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    stream_ids: Callable[[list[int], Sampling], Iterator[int]]
    eos_id: int | None
    source: str

    def generate(
        self,
        prompt: str,
        sampling: Sampling,
        stop: list[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Complete ``prompt``; ``on_text`` receives the completion's new text as it comes."""
        ids = self.encode(prompt)
        if not ids:
            raise UserError("the prompt encodes to no tokens; give some text")
        new: list[int] = []
        shown = ""
        stop = [s for s in (stop or []) if s]
        tokens = self.stream_ids(ids, sampling)
        for token in tokens:
            new.append(token)
            text = self.decode([t for t in new if t != self.eos_id])
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
            # Hold back an incomplete character (a byte-level token may end mid-UTF-8).
            ready = text if cut >= 0 or token == self.eos_id else text.rstrip("\ufffd")
            if on_text and len(ready) > len(shown) and ready.startswith(shown):
                on_text(ready[len(shown) :])
                shown = ready
            if cut >= 0:
                close = getattr(tokens, "close", None)
                if close is not None:
                    close()  # stops the engine (transformers' generate runs in a thread)
                return Completion(prompt, text, new)
        text = self.decode([t for t in new if t != self.eos_id])
        if on_text and len(text) > len(shown) and text.startswith(shown):
            on_text(text[len(shown) :])
        return Completion(prompt, text, new)


def is_hf_dir(path: Path) -> bool:
    """A Hugging Face model directory (config.json + safetensors, not an olmotrain run)."""
    return (
        path.is_dir()
        and (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and not (path / "config.yaml").exists()
    )


def _hf_streamer(model: Any, eos_id: int | None, pad_id: int | None) -> Callable:
    """``stream_ids`` over transformers' ``generate`` (KV cache), via a streamer callback."""
    import queue
    import threading

    import torch
    from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    class _Until(StoppingCriteria):
        """Ends ``generate`` once the consumer has stopped (stop text, closed iterator)."""

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = self.event.is_set()
            return torch.full(
                (input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device
            )

    class _Queue(BaseStreamer):
        def __init__(self) -> None:
            self.items: queue.Queue = queue.Queue()
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first passes the prompt
                self.prompt_seen = True
                return
            for t in value.reshape(-1).tolist():
                self.items.put(int(t))

        def end(self) -> None:
            self.items.put(None)

    def stream(prompt: list[int], s: Sampling) -> Iterator[int]:
        streamer = _Queue()
        failure: list[BaseException] = []
        stopped = threading.Event()

        def run() -> None:
            try:
                if s.seed is not None:
                    torch.manual_seed(s.seed)
                with torch.inference_mode():
                    model.generate(
                        input_ids=torch.tensor([prompt], device=model.device),
                        attention_mask=torch.ones(
                            1, len(prompt), dtype=torch.long, device=model.device
                        ),
                        **_generate_settings(s, eos_id, pad_id),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Until(stopped)]),
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            while (token := streamer.items.get()) is not None:
                yield token
                if token == eos_id:
                    break
        finally:  # the consumer may stop early (a stop text): end generate() before returning
            stopped.set()
            thread.join()
        if failure:
            raise failure[0]

    return stream


def _generate_settings(s: Sampling, eos_id: int | None, pad_id: int | None) -> dict[str, Any]:
    """transformers' ``generate`` arguments for ``s`` (greedy when its temperature is 0, and then
    without temperature, top-k and top-p)."""
    sample = s.temperature > 0
    return {
        "max_new_tokens": s.max_new_tokens,
        "min_new_tokens": 0,
        "do_sample": sample,
        "temperature": s.temperature if sample else None,
        "top_k": (s.top_k if s.top_k > 0 else None) if sample else None,
        "top_p": s.top_p if sample else None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id if pad_id is not None else eos_id,
    }


def load_hf_dir(path: Path, device: str) -> Generator:
    """A generator over an exported (or any OLMo-2/3) Hugging Face directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, local_files_only=True
    ).to(device)
    model.eval()
    eos = tok.eos_token_id
    return Generator(
        engine="transformers",
        encode=lambda text: tok.encode(text, add_special_tokens=False),
        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
        stream_ids=_hf_streamer(model, eos, tok.pad_token_id),
        eos_id=eos,
        source=str(path),
    )


def load_checkpoint(config: Any, checkpoint: Path, engine: str, device: str) -> Generator:
    """A generator over a native checkpoint of a run (``config``: its run config)."""
    from olmotrain.data.tokenizer import load_tokenizer, local_tokenizer_file
    from olmotrain.export.hf import hf_model_of
    from olmotrain.export.native import load_native_model
    from olmotrain.model.build import hf_unrepresentable

    fix = "set tokenizer.path=/path/to/tokenizer.json in the run's config.yaml"
    tok_path = local_tokenizer_file(config.tokenizer, "generation", fix)
    why = hf_unrepresentable(config.model)
    if engine == "transformers" and why:
        raise UserError(f"--engine transformers: {why}; use --engine olmo-core (or auto)")
    if engine == "auto":
        engine = "olmo-core" if why else "transformers"
    tok = load_tokenizer(tok_path)
    vocab, eos = config.tokenizer.vocab_size, config.tokenizer.eos_token_id
    native = load_native_model(config, checkpoint, device)
    if engine == "transformers":
        hf = hf_model_of(native, vocab, config.train.sequence_length).to(device)
        stream = _hf_streamer(hf, eos, config.tokenizer.pad_token_id)
    else:

        def stream(prompt: list[int], s: Sampling) -> Iterator[int]:
            return sample_tokens(native, prompt, s, vocab, eos)

    return Generator(
        engine=engine,
        encode=lambda text: tok.encode(text, add_special_tokens=False).ids,
        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
        stream_ids=stream,
        eos_id=eos,
        source=str(checkpoint),
    )


def read_prompts(path: Path) -> list[str]:
    """Prompts from a file: one per line, or JSON lines with a ``prompt`` key."""
    if not path.is_file():
        raise UserError(f"--prompts-file {path} does not exist")
    prompts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                prompts.append(str(json.loads(line)["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UserError(
                    f"--prompts-file {path}:{n}: not a JSON object with a 'prompt'"
                ) from exc
        else:
            prompts.append(line)
    if not prompts:
        raise UserError(f"--prompts-file {path} holds no prompts")
    return prompts
