"""Tokenization throughput of ``python -m olmotrain.prepare`` against the Dolma toolkit's
``dolma tokens``, measured in one run on the same corpus, tokenizer file and cores.

The corpus is the Python installation's own ``*.py`` files (the stdlib directory, its
site-packages included; each file one document) as one ``.jsonl.gz`` with fields ``id`` and
``text``. Dolma (PyPI ``dolma``) is installed into its own virtual environment,
``bench/.dolma-venv`` (git-ignored), on first use. The two sides run alternately, ``--rounds``
times each; then a sample of documents is read back from both outputs and compared
token-for-token.

    .venv/bin/python bench/prepare_vs_dolma.py [--rounds 2] [--workers N] [--sample 500]

The last line printed is ``RATIO prepare/dolma throughput=X (goal>=2)``;
bench/results/prepare_vs_dolma-<timestamp>.json holds everything. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import unicodedata
from importlib.metadata import version
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DOLMA_VENV = ROOT / "bench" / ".dolma-venv"
GOAL = 2.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="runs per side, alternated")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="cores for both sides")
    p.add_argument("--sample", type=int, default=500, help="documents compared token-for-token")
    p.add_argument("--dolma-version", default="1.2.1", help="pip pin for dolma ('' = latest)")
    p.add_argument(
        "--dolma-files",
        type=int,
        default=1,
        help="split the corpus into this many files for BOTH sides (dolma parallelizes over "
        "files only: with one file it uses one process)",
    )
    p.add_argument("--max-docs", type=int, default=None, help="corpus size limit (quick checks)")
    p.add_argument("--tmp", default=None, help="work directory (default: the system temp dir)")
    return p.parse_args()


# --- setup ------------------------------------------------------------------------------------


def dolma_executable(pin: str) -> Path:
    """``dolma`` from bench/.dolma-venv, installing it there first if needed."""
    exe = DOLMA_VENV / "bin" / "dolma"
    pip = DOLMA_VENV / "bin" / "pip"
    if exe.exists():
        return exe
    base = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    base = base if base.exists() else Path(shutil.which("python3") or "python3")
    print(f"installing dolma{'==' + pin if pin else ''} into {DOLMA_VENV.relative_to(ROOT)} ...")
    subprocess.run([str(base), "-m", "venv", str(DOLMA_VENV)], check=True)
    # A current pip resolves dolma's boto3 pins in seconds; the venv's bundled one backtracks.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    for cmd in (
        [str(pip), "install", "-q", "--upgrade", "pip"],
        [str(pip), "install", "-q", f"dolma=={pin}" if pin else "dolma"],
    ):
        done = subprocess.run(cmd, **quiet)
        if done.returncode:
            errors = [ln for ln in done.stderr.splitlines() if not ln.startswith("WARNING")]
            shutil.rmtree(DOLMA_VENV, ignore_errors=True)
            sys.exit(f"cannot install dolma: {' '.join(cmd)}\n" + "\n".join(errors[-20:]))
    return exe


def venv_version(package: str) -> str:
    probe = f"from importlib.metadata import version; print(version({package!r}))"
    out = subprocess.run(
        [str(DOLMA_VENV / "bin" / "python"), "-c", probe], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def build_corpus(work: Path, files: int, max_docs: int | None) -> tuple[list[Path], dict]:
    """The Python installation's .py files, each one document, as ``files`` .jsonl.gz files."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.rglob("*.py") if p.is_file())
    docs: list[tuple[str, str]] = []
    undecodable = empty = 0
    for path in paths:
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        if not text.strip():  # dolma drops whitespace-only documents; keep both sides equal
            empty += 1
            continue
        docs.append((path.relative_to(stdlib).as_posix(), text))
        if max_docs is not None and len(docs) >= max_docs:
            break
    out = []
    per_file = -(-len(docs) // files)
    for k in range(files):
        name = work / f"python_py-{k:02d}.jsonl.gz"
        with gzip.open(name, "wt", encoding="utf-8", compresslevel=6) as f:
            for doc_id, text in docs[k * per_file : (k + 1) * per_file]:
                f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
        out.append(name)
    info = {
        "root": str(stdlib),
        "documents": len(docs),
        "text_bytes": sum(len(t.encode("utf-8")) for _, t in docs),
        "files": [p.name for p in out],
        "gz_bytes": sum(p.stat().st_size for p in out),
        "skipped_undecodable": undecodable,
        "skipped_empty": empty,
    }
    return out, info


# --- timing -----------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used (from /proc/stat), to tell other load apart."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict:
    busy0, cpu0, t0 = machine_busy_seconds(), children_cpu(), time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return {"wall_s": wall, "cpu_s": cpu, "other_load_cores": others / wall}


def run_prepare(corpus: list[Path], out: Path, tokenizer: Path, workers: int, log: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [PY, "-m", "olmotrain.prepare", *map(str, corpus), "--output", str(out)]
    cmd += ["--tokenizer", str(tokenizer), "--eval-fraction", "0", "--workers", str(workers)]
    result = timed(cmd + ["--quiet"], log)
    manifest = json.loads((out / "manifest.json").read_text())
    result["tokens"] = manifest["totals"]["tokens"]
    result["documents"] = manifest["totals"]["documents"]
    return result


def run_dolma(
    exe: Path, corpus: list[Path], out: Path, tokenizer: Path, workers: int, log: Path
) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(exe), "tokens", "--documents", *map(str, corpus), "--destination", str(out)]
    cmd += ["--tokenizer.name_or_path", str(tokenizer), "--tokenizer.eos_token_id", "50279"]
    cmd += ["--tokenizer.pad_token_id", "1", "--tokenizer.encode_special_tokens"]
    cmd += ["--processes", str(workers), "--dtype", "uint16"]
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    result = timed(cmd, log, env)
    sizes = [p.stat().st_size for p in out.rglob("*.npy")]
    result["tokens"] = sum(sizes) // 2
    result["documents"] = sum(1 for _ in dolma_index(out))
    return result


# --- comparing the outputs --------------------------------------------------------------------


def dolma_index(out: Path):
    """(id, npy path, start, end) of every document dolma wrote (from its .csv.gz metadata)."""
    for meta in sorted(out.rglob("*.csv.gz")):
        npy = meta.with_name(meta.name[: -len(".csv.gz")] + ".npy")
        with gzip.open(meta, "rt", encoding="utf-8") as f:
            for line in f:
                start, end, rest = line.rstrip("\n").split(",", 2)
                doc_id = rest.rsplit(",", 2)[0]  # id, source path, line number
                yield doc_id, npy, int(start), int(end)


def compare(corpus: list[Path], ours: Path, theirs: Path, tokenizer: Path, n: int) -> dict:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.encode_special_tokens = True
    manifest = json.loads((ours / "manifest.json").read_text())
    eos = manifest["tokenizer"]["eos_token_id"]
    docs: list[tuple[str, str]] = []
    ours_by_id: dict[str, np.ndarray] = {}
    for path in corpus:  # one source per input file; documents in reading order
        with gzip.open(path, "rt", encoding="utf-8") as f:
            file_docs = [(d["id"], d["text"]) for d in map(json.loads, f)]
        source = path.name[: -len(".jsonl.gz")]
        files = manifest["sources"][source]["train"]["files"]
        tokens = np.concatenate([np.fromfile(ours / f, dtype=np.uint16) for f in files])
        ends = np.flatnonzero(tokens == eos)
        starts = np.concatenate([[0], ends[:-1] + 1])
        assert len(ends) == len(file_docs), (len(ends), len(file_docs))
        for (doc_id, _), s, e in zip(file_docs, starts, ends, strict=True):
            ours_by_id[doc_id] = tokens[s:e]
        docs += file_docs
    theirs_by_id = {}
    for doc_id, npy, start, end in dolma_index(theirs):
        theirs_by_id[doc_id] = (npy, start, end)
    memmaps: dict[Path, np.ndarray] = {}
    rng = random.Random(0)
    sample = rng.sample(docs, min(n, len(docs)))
    counts = {"identical": 0, "strip_only": 0, "missing_in_dolma": 0, "other": 0}
    examples = []
    eos_ok = round_trips = 0
    for doc_id, text in sample:
        mine = ours_by_id[doc_id].tolist()
        if doc_id not in theirs_by_id:
            counts["missing_in_dolma"] += 1
            continue
        npy, start, end = theirs_by_id[doc_id]
        if npy not in memmaps:
            memmaps[npy] = np.memmap(npy, dtype=np.uint16, mode="r")
        raw = memmaps[npy][start:end].tolist()
        eos_ok += raw[-1:] == [eos]
        their = raw[:-1] if raw[-1:] == [eos] else raw
        round_trips += tok.decode(mine) == unicodedata.normalize("NFC", text)
        if mine == their:
            counts["identical"] += 1
        elif their == tok.encode(text.strip(), add_special_tokens=False).ids:
            counts["strip_only"] += 1
        else:
            counts["other"] += 1
            if len(examples) < 5:
                first = next(
                    (i for i, (a, b) in enumerate(zip(mine, their, strict=False)) if a != b),
                    min(len(mine), len(their)),
                )
                examples.append({"id": doc_id, "first_difference_at_token": first})
    return {
        "sampled": len(sample),
        **counts,
        "ours_decode_to_the_text": round_trips,
        "dolma_docs_ending_with_eos": eos_ok,
        "other_examples": examples,
    }


# --- main -------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.2f} at start"


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from olmotrain.data.tokenizer import resolve_tokenizer

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    logs = results / f"prepare_vs_dolma-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    exe = dolma_executable(args.dolma_version)
    tokenizer = resolve_tokenizer("gpt_neox_olmo").path
    work = Path(tempfile.mkdtemp(prefix="prepare_vs_dolma-", dir=args.tmp))
    result: dict = {
        "timestamp": stamp,
        "machine": machine(),
        "args": vars(args),
        "versions": {
            "olmotrain tokenizers": version("tokenizers"),
            "dolma": venv_version("dolma"),
            "dolma tokenizers": venv_version("tokenizers"),
        },
        "tokenizer": str(tokenizer),
    }
    try:
        corpus, result["corpus"] = build_corpus(work, args.dolma_files, args.max_docs)
        c = result["corpus"]
        print(
            f"corpus: {c['documents']:,} .py files, {c['text_bytes'] / 1e6:.1f} MB of text, "
            f"{len(corpus)} jsonl.gz file(s) ({c['gz_bytes'] / 1e6:.1f} MB); "
            f"dolma {result['versions']['dolma']}; {args.workers} cores each"
        )
        runs: dict[str, list[dict]] = {"prepare": [], "dolma": []}
        for r in range(args.rounds):
            order = ["prepare", "dolma"] if r % 2 == 0 else ["dolma", "prepare"]
            for side in order:
                log = logs / f"{side}-{r}.log"
                if side == "prepare":
                    run = run_prepare(corpus, work / "prepare", tokenizer, args.workers, log)
                else:
                    run = run_dolma(exe, corpus, work / "dolma", tokenizer, args.workers, log)
                run["tokens_per_s"] = run["tokens"] / run["wall_s"]
                runs[side].append(run)
                print(
                    f"  round {r + 1} {side:7s}: {run['wall_s']:6.1f} s, "
                    f"{run['tokens']:,} tokens, {run['tokens_per_s']:,.0f} tokens/s, "
                    f"CPU {run['cpu_s']:.0f} s, other load {run['other_load_cores']:.2f} cores"
                )
        result["runs"] = runs
        result["comparison"] = compare(
            corpus, work / "prepare", work / "dolma", tokenizer, args.sample
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {side: median(r["tokens_per_s"] for r in runs[side]) for side in runs}
    wall = {side: median(r["wall_s"] for r in runs[side]) for side in runs}
    ratio = med["prepare"] / med["dolma"]
    result["median_tokens_per_s"] = med
    result["median_wall_s"] = wall
    result["ratio_tokens_per_s"] = ratio
    result["ratio_wall"] = wall["dolma"] / wall["prepare"]
    result["goal"] = GOAL
    cmp_ = result["comparison"]
    print(
        f"sample of {cmp_['sampled']} documents: {cmp_['identical']} identical token-for-token, "
        f"{cmp_['strip_only']} differ only because dolma strips whitespace at both ends of a "
        f"document, {cmp_['other']} other differences, {cmp_['missing_in_dolma']} missing in "
        f"dolma's output; {cmp_['ours_decode_to_the_text']} of ours decode to the exact "
        f"(NFC) text; dolma ends {cmp_['dolma_docs_ending_with_eos']} with EOS (no BOS)"
    )
    print(
        f"median: prepare {wall['prepare']:.1f} s ({med['prepare']:,.0f} tokens/s), "
        f"dolma {wall['dolma']:.1f} s ({med['dolma']:,.0f} tokens/s); "
        f"wall-time ratio {result['ratio_wall']:.2f}"
    )
    print(f"machine: {result['machine']}")
    path = results / f"prepare_vs_dolma-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)} (logs: {logs.relative_to(ROOT)}/)")
    print(f"RATIO prepare/dolma throughput={ratio:.2f} (goal>={GOAL:g})")


if __name__ == "__main__":
    main()
