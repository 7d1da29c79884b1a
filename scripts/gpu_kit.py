"""``make gpu-kit``: what a lent GPU machine without a package registry needs to run olmotrain.

The machine has Python 3.12 with torch (CUDA), triton, transformers, tokenizers, numpy, pandas,
scipy, matplotlib and pytest; nothing can be installed from the network there. This script
1. works out, from this environment's pins, every package olmotrain's GPU check imports that the
   machine lacks (the dependency closure of olmo-core, Hydra, OmegaConf and submitit, minus the
   closure of what the machine has);
2. downloads those wheels for CPython 3.12 on x86-64 Linux (``pip download --only-binary=:all:
   --python-version 3.12 --no-deps``) into ``.gpu-kit/wheels`` (git-ignored);
3. checks that the embedded dataset's bpe8k token files are here (tokenized here, carried with
   the call as ``data/embedded/embedded_bpe8k``: nothing is built there);
4. prints the kit's size with the data's and the tree's, which must stay under the 64 MiB a call
   carries.

``--check`` proves the kit complete: pip resolves olmotrain's GPU needs from the kit alone
(``--no-index --dry-run --python-version 3.12``), with the machine's own packages stood in for
by empty stub wheels of their names and versions.

    .venv/bin/python scripts/gpu_kit.py [--out .gpu-kit] [--check]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NEEDED = {"ai2-olmo-core": {"transformers"}, "hydra-core": set(), "omegaconf": set(),
          "submitit": set(), "hydra-submitit-launcher": set(), "boto3": set()}  # fmt: skip
"""What the GPU check imports (with the extras it uses); olmotrain itself travels as source."""
PREINSTALLED = {"torch": "2.11.0", "triton": None, "transformers": None, "tokenizers": None,
                "numpy": None, "pandas": None, "scipy": None, "matplotlib": None, "pytest": None}  # fmt: skip
"""The GPU machine's own packages (torch's version as it reports; the others as pinned here)."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DATA = Path("data/embedded/embedded_bpe8k")
CARRY_LIMIT = 64 * 2**20


def closure(roots: dict[str, set[str]]) -> set[str]:
    """Every distribution ``roots`` pull in, in this environment (canonical names)."""
    seen: set[str] = set()
    stack = [(name, extras) for name, extras in roots.items()]
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or any(
                req.marker.evaluate({"extra": e, "python_version": "3.12"}) for e in extras | {""}
            ):
                stack.append((req.name, set(req.extras)))
    return seen


def kit_packages() -> dict[str, str]:
    """``{name: version}`` of what the kit must hold."""
    have = closure({name: set() for name in PREINSTALLED})
    return {name: md.version(name) for name in sorted(closure(NEEDED) - have) if _installed(name)}


def _installed(name: str) -> bool:
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


def _pip_target_args() -> list[str]:
    args = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


SOURCE_ONLY = {"antlr4-python3-runtime"}
"""Pure-Python packages published as source only (Hydra's parser runtime): built into a wheel
here, which any Python 3 installs."""


def download(packages: dict[str, str], wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    pins = [f"{n}=={v}" for n, v in packages.items() if n not in SOURCE_ONLY]
    built = [f"{n}=={v}" for n, v in packages.items() if n in SOURCE_ONLY]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "download", "-q", "--no-deps", "-d", str(wheels), *_pip_target_args(), *pins],
        check=True,
    )
    if built:
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), *built], check=True)


def stub_wheel(directory: Path, name: str, version: str) -> None:
    """An empty wheel named ``name`` ``version``: the GPU machine's package, for the resolver."""
    dist = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: olmotrain\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def check(out: Path) -> int:
    """pip resolves every kit package (and olmo-core's needs) from the kit and the stubs alone."""
    pins = (out / "requirements.txt").read_text().split()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = Path(tmp) / "stubs"
        stubs.mkdir()
        for name in closure({n: set() for n in PREINSTALLED}):
            if canonicalize_name(name) in {canonicalize_name(p.split("==")[0]) for p in pins}:
                continue
            version = PREINSTALLED.get(name) or (md.version(name) if _installed(name) else None)
            if version:
                stub_wheel(stubs, name, version)
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-q",
               "--find-links", str(out / "wheels"), "--find-links", str(stubs),
               "--target", str(Path(tmp) / "site"), *_pip_target_args(), *pins]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        print(f"gpu kit {out}: INCOMPLETE (pip could not resolve from the kit alone)")
        return 1
    print(f"gpu kit {out}: complete: {len(pins)} packages resolve from the kit alone")
    return 0


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".gpu-kit", help="the kit's folder (git-ignored)")
    parser.add_argument("--check", action="store_true", help="only prove an existing kit complete")
    args = parser.parse_args()
    out = ROOT / args.out
    if args.check:
        return check(out)
    packages = kit_packages()
    download(packages, out / "wheels")
    (out / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in packages.items()))
    if not (ROOT / DATA / "manifest.json").exists():
        sys.exit(f"{DATA} is missing: run `make data` first")
    tree = sum(
        (ROOT / f).stat().st_size
        for f in subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        if (ROOT / f).is_file()
    )
    kit, data = size(out), size(ROOT / DATA)
    total = tree + kit + data
    print(
        f"gpu kit: {len(packages)} wheels {kit / 2**20:.1f} MiB + data ({DATA}) "
        f"{data / 2**20:.1f} MiB + the tree {tree / 2**20:.1f} MiB = {total / 2**20:.1f} MiB "
        f"of the 64 MiB a call carries"
    )
    if total > CARRY_LIMIT:
        print("gpu kit: over the limit", file=sys.stderr)
        return 1
    return check(out)


if __name__ == "__main__":
    sys.exit(main())
