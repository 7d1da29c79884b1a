"""The ``olmotrain`` command: ``olmotrain <command> ARGS`` runs ``python -m olmotrain.<command> ARGS``.

Each subcommand is dispatched to the very ``main(argv)`` its ``python -m`` twin runs (the
module ``olmotrain.<command>``, or a package's ``__main__``), under the same guard
(:func:`olmotrain.errors.run_command`), so both spellings behave alike and print the same help.
``olmotrain train ARGS`` runs ``train.py``'s Hydra entry point as ``python train.py ARGS`` does;
``train.py`` lives in the source checkout, beside ``conf/``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from olmotrain.errors import UserError, run_command

COMMANDS = {
    "train": "train a model: python train.py ARGS (Hydra overrides, -m for a sweep)",
    "prepare": "tokenize text into olmo-core token files with a train/eval split",
    "data": "remote data: fill the local cache ahead of training, write document metadata",
    "evaluate": "evaluate a saved checkpoint: held-out LM metrics and downstream tasks",
    "ladder": "train a ladder of model sizes, fit scaling laws and decide between data mixes",
    "mixture": "which data mix to train: a swarm of small runs, regressions, a verified proposal",
    "export": "export a checkpoint to a Hugging Face model directory (checked for parity)",
    "generate": "generate text from a checkpoint or an exported model",
    "status": "where each run of a sweep (or one run) stands",
}
"""Subcommand -> one line of help, in the order ``olmotrain --help`` lists them."""


def usage() -> str:
    """``olmotrain --help``'s text."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: olmotrain COMMAND [ARGS...]",
        "",
        "OLMo pretraining on olmo-core, configured by Hydra. Each command is also",
        "`python -m olmotrain.COMMAND` (train: `python train.py`); `olmotrain COMMAND --help`",
        "describes its arguments.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
    ]
    return "\n".join(lines)


def command_main(name: str) -> Callable[[list[str] | None], int]:
    """The ``main(argv)`` that ``python -m olmotrain.<name>`` runs."""
    module = f"olmotrain.{name}"
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:
        module += ".__main__"  # a package: python -m runs its __main__
    return importlib.import_module(module).main


def train_script() -> Path:
    """The source checkout's ``train.py`` (beside ``src/`` and ``conf/``)."""
    path = Path(__file__).resolve().parents[2] / "train.py"
    if not path.is_file():
        raise UserError(
            f"olmotrain train runs train.py of a source checkout, and there is none at {path}: "
            "install olmotrain from its checkout (pip install -e .) and run it there"
        )
    return path


def run_train(args: list[str]) -> None:
    """Run ``train.py ARGS`` in this process, as ``python train.py ARGS`` would (it exits)."""
    import runpy

    script = train_script()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


def dispatch(argv: list[str] | None) -> int:
    """Run the subcommand ``argv[0]`` with the rest of ``argv``; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "train":
        run_train(rest)
        return 0
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else "see olmotrain --help"
        raise UserError(f"unknown command '{name}'; {hint} ({', '.join(COMMANDS)})")
    return command_main(name)(rest)


def main() -> NoReturn:
    """The ``olmotrain`` console script."""
    run_command(dispatch, sys.argv[1:])
