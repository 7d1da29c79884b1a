"""Token-file preparation and the embedded dataset, on real text and real tokenizers."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import sysconfig
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from olmotrain.embedded import build_embedded, embedded_sources
from olmotrain.errors import UserError
from olmotrain.prepare import (
    SPLITS,
    load_manifest,
    prepare,
    read_documents,
    split_of,
    token_dtype,
)

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
    # Fails after new shards were published (the 2nd batch of 1024 docs is bad): the old
    # manifest is gone, so the half-rewritten dataset does not look complete.
    many = [f"{i}: {PROSE[i % len(PROSE)]}" for i in range(1500)]
    bad = write_jsonl(tmp_path / "bad2.jsonl", many, tail="[1, 2]\n")
    with pytest.raises(UserError, match=r"bad2\.jsonl:1501: expected a JSON object"):
        prepare({"code": read_documents(bad)}, "gpt_neox_olmo", out, shard_tokens=2000)
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
    result = run_cli(*args, "--output", str(tmp_path / "out"), cwd=tmp_path)
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
    from olmotrain.prepare import resolve_tokenizer

    out = build_embedded(tmp_path, "gpt_neox_olmo", max_docs=5)
    shipped = resolve_tokenizer("gpt_neox_olmo").path
    assert (out / "tokenizer.json").read_bytes() == shipped.read_bytes()
    assert load_manifest(out)["tokenizer"]["eos_token_id"] == 50279
    with pytest.raises(UserError, match="unknown embedded tokenizer"):
        build_embedded(tmp_path, "nope")
