"""``make mutation``: do the tests catch a one-character change in the code users' results rest on?

For each target (a module where one wrong character changes a user's result, with the fast
tests that exercise it), mutmut (pinned in requirements.txt) mutates the module's functions in
a scratch copy of the repository and runs those tests against each mutant (only the tests that
reach the mutated function). The result per module: mutants killed / all, and the survivors
(``mutmut show NAME`` in the scratch copy shows each diff).

    .venv/bin/python scripts/mutation.py [--only chinchilla,shapes] [--keep] [--json]

Not part of ``make test``: minutes per module on 2 cores. Equivalent mutants (a change that
cannot alter any result) are listed in ``EQUIVALENT`` with why, and not counted against a module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    # name: (module file, the tests that exercise it: tests that run in this process, so that
    # they see the mutant, and train nothing, since a training per mutant would take hours)
    "chinchilla": ("src/olmotrain/chinchilla.py", ["tests/test_chinchilla.py"]),
    "schedule": ("src/olmotrain/plan/schedule.py", ["tests/test_chinchilla.py"]),
    "shapes": ("src/olmotrain/model/shapes.py", ["tests/test_lws.py"]),
    "compare": ("src/olmotrain/confidence/compare.py", ["tests/test_confidence.py"]),
    "noise": ("src/olmotrain/confidence/noise.py", ["tests/test_confidence.py"]),
    "decide": ("src/olmotrain/ladder/decide.py", ["tests/test_confidence.py"]),
}
EQUIVALENT: dict[str, str] = {}
"""Mutant name -> why no result can change (kept out of the score)."""
GOAL = 0.90


def scratch_copy(where: Path) -> Path:
    """The tree git tracks (and the built data the tests use), copied to ``where``."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    for rel in files.split():
        src = ROOT / rel
        if src.is_file():
            dst = where / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (where / "data").symlink_to(ROOT / "data")
    return where


def configure(tree: Path, module: str, tests: list[str]) -> None:
    """mutmut's settings for one target, in the copy's pyproject.toml."""
    pyproject = tree / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text())
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src/olmotrain"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not gpu"]\n'
        'also_copy = ["conf", "train.py", "data", "bench", "scripts"]\n'
        # A mutant that loops (a bound off by one in a while) is a kill after 3x the clean
        # run's time, not after mutmut's default 15x (a quarter of an hour per such mutant here).
        "timeout_multiplier = 3.0\n"
    )
    pyproject.write_text(text)


def results(tree: Path) -> dict[str, str]:
    """``{mutant: status}`` from ``mutmut results --all true``."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=tree, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = {}
    for line in out.splitlines():
        if ":" in line:
            name, status = line.rsplit(":", 1)
            found[name.strip()] = status.strip()
    return found


def run_target(name: str, keep: bool) -> dict:
    module, tests = TARGETS[name]
    start = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix=f"olmotrain-mutation-{name}-"))
    tree = scratch_copy(base / "repo")
    configure(tree, module, tests)
    # The mutants shadow the editable install; the directory must exist before Python starts,
    # or the import system caches it as missing and the tests import the unmutated package.
    (tree / "mutants" / "src").mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree / "mutants" / "src")}
    with (base / "mutmut.log").open("w") as log:  # mutmut's own output, kept with --keep
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(os.cpu_count() or 2)],
            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    found = {m: s for m, s in results(tree).items() if m not in EQUIVALENT}
    killed = sum(s in ("killed", "timeout") for s in found.values())
    survivors = sorted(m for m, s in found.items() if s == "survived")
    score = killed / len(found) if found else None
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "module": module, "mutants": len(found), "killed": killed, "score": score,
        "survivors": survivors, "seconds": round(time.perf_counter() - start, 1),
        "other": sorted({s for s in found.values()} - {"killed", "timeout", "survived"}),
        "scratch": str(tree) if keep else None,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated targets: " + ", ".join(TARGETS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"error: unknown target {unknown[0]}; choose from {', '.join(TARGETS)}")
        return 2
    report = {}
    for name in names:
        r = report[name] = run_target(name, args.keep)
        score = "-" if r["score"] is None else f"{r['score']:.1%}"
        print(f"{name:<12} {r['killed']:>4}/{r['mutants']:<4} killed  {score:>6}  "
              f"({r['seconds']:.0f} s){'  ' + ' '.join(r['other']) if r['other'] else ''}")  # fmt: skip
        for m in r["survivors"]:
            print(f"    survived: {m}")
    if args.json:
        print(json.dumps(report))
    low = [n for n, r in report.items() if r["score"] is not None and r["score"] < GOAL]
    print(f"below {GOAL:.0%}: {', '.join(low)}" if low else f"every module >= {GOAL:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
