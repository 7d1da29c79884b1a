"""Remote data against real servers on 127.0.0.1: an S3-compatible store (moto's server) and an
HTTP server with byte ranges. Training streams from the store or reads the cache's copies; the
cache fills once (atomic, resumable, shared); bad paths, credentials and endpoints are one line
within seconds; prepare writes to a bucket; plans take sizes from the listing."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REPO,
    assert_one_line_error,
    dry_run_json,
    metrics,
    module_main,
    run_cli,
    train_main,
)
from stores import BUCKET, http_server, listed_prefixes, s3_requests, s3_server

TOK = "s3://corpus/tok"
MIX = (
    "data.sources=[{name: code, paths: ['" + TOK + "/python_code/train-*.npy'], ratio: 0.5},"
    "{name: docs, paths: ['" + TOK + "/english_docs/train-*.npy'], ratio: 0.5}]"
)
HELD_OUT = ["data.eval=null", "data.eval={docs: ['" + TOK + "/english_docs/eval-*.npy']}"]
RUN = ["experiment=smoke", "train.max_steps=2", "data.builder=null", *HELD_OUT]


@pytest.fixture(scope="module")
def corpus(embedded_data: Path):
    """The embedded dataset's python_code and english_docs files in bucket ``corpus`` under
    ``tok/``, with their document metadata; and ``bare/``: the same without it."""
    with s3_server() as s3:
        for source in ("python_code", "english_docs"):
            for f in sorted((embedded_data / source).glob("*.npy")):
                s3.upload(f, f"tok/{source}/{f.name}")
                s3.upload(f, f"bare/{source}/{f.name}")
        result = module_main(
            "olmotrain.data",
            "index",
            f"{TOK}/*/train-*.npy",
            "--tokenizer",
            "embedded_bpe8k",
            env=s3.env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("wrote s3://") == 2
        yield s3


def _train_loss(run_dir: Path) -> float:
    return [m for m in metrics(run_dir) if "train/CE loss" in m][-1]["train/CE loss"]


def test_streamed_and_cached_runs_train_alike_and_the_cache_fills_once(corpus, tmp_path):
    """A 50/50 mix of two s3:// globs with an s3:// held-out set: streamed through olmo-core,
    then from the cache (filled at start-up), then from the cache with the server gone."""
    out = f"output_root={tmp_path / 'runs'}"
    cache = f"data.cache={tmp_path / 'cache'}"
    env = {**corpus.env, "OLMOTRAIN_DATA_ROOT": str(tmp_path / "data")}
    with s3_requests() as requests:
        streamed = run_cli(*RUN, MIX, out, "run_name=streamed", env=env)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    # Each glob is listed by the plan, by the start-up checks (all of them share one listing)
    # and by the dataset, not once per use; the held-out one by the plan and its copy.
    assert listed_prefixes(requests) == {
        "tok/python_code/train-": 3,
        "tok/english_docs/train-": 3,
        "tok/english_docs/eval-": 2,
    }
    assert "held-out loss" in streamed.stdout and "50.0%" in streamed.stdout
    filled = run_cli(*RUN, MIX, out, cache, "run_name=cached", env=env)
    assert filled.returncode == 0, filled.stderr[-3000:]
    # The training files, then the held-out one (into the same cache).
    assert "data.cache: 2 files downloaded" in filled.stderr
    assert "data.cache: 1 file downloaded" in filled.stderr
    copies = sorted(p.relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("*.npy"))
    assert [str(p) for p in copies] == [
        "s3/corpus/tok/english_docs/eval-00000.npy",
        "s3/corpus/tok/english_docs/train-00000.npy",
        "s3/corpus/tok/python_code/train-00000.npy",
    ]
    # The same data in the same order: the same losses.
    assert _train_loss(tmp_path / "runs" / "streamed") == _train_loss(tmp_path / "runs" / "cached")
    dead = {**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}  # nothing listens there
    offline = run_cli(*RUN, MIX, out, cache, "run_name=offline", env=dead)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert "downloading" not in offline.stderr
    assert _train_loss(tmp_path / "runs" / "offline") == _train_loss(tmp_path / "runs" / "cached")


def test_http_and_local_sources_mix(corpus, embedded_data, tmp_path):
    """An https-style source served with byte ranges from 127.0.0.1, mixed with a local one
    (natural mix: every token once)."""
    with http_server(embedded_data) as base:
        mix = (
            "data.sources=[{name: docs, paths: ['" + base + "/english_docs/train-00000.npy']},"
            "{name: code, paths: ['" + str(embedded_data / "python_code" / "train-*.npy") + "']}]"
        )
        held_out = [
            "data.eval=null",
            "data.eval={docs: ['" + base + "/english_docs/eval-00000.npy']}",
        ]
        plan = dry_run_json("experiment=smoke", "data.builder=null", mix, *held_out)
        docs = next(s for s in plan["data"]["sources"] if s["name"] == "docs")
        size = (embedded_data / "english_docs" / "train-00000.npy").stat().st_size
        assert docs["tokens"] == size // 2 and docs["remote"]
        proc = run_cli(
            "experiment=smoke",
            "train.max_steps=2",
            "data.builder=null",
            mix,
            *held_out,
            f"output_root={tmp_path}",
            "run_name=http",
            env={"OLMOTRAIN_DATA_ROOT": str(tmp_path / "data")},
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out loss" in proc.stdout


def _error(*args: str, env: dict[str, str]) -> tuple[str, float]:
    # A fresh data root, as on a fresh clone: nothing cached that could hide a download.
    with tempfile.TemporaryDirectory(prefix="olmotrain-data-") as root:
        start = time.perf_counter()
        result = train_main(
            *RUN,
            *args,
            "output_root=/nonexistent-never-written",
            env={**env, "OLMOTRAIN_DATA_ROOT": root},
        )
    return assert_one_line_error(result), time.perf_counter() - start


@pytest.mark.parametrize(
    ("paths", "env_change", "expected"),
    [
        (f"{TOK}/missing/*.npy", {}, "no files match s3://corpus/tok/missing/*.npy"),
        (f"{TOK}/missing.npy", {}, "s3://corpus/tok/missing.npy does not exist"),
        ("s3://no-such-bucket/tok/*.npy", {}, "bucket 'no-such-bucket' does not exist"),
        (
            f"{TOK}/*/train-*.npy",
            {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"},
            "cannot reach http://127.0.0.1:9",
        ),
        ("r2://corpus/tok/*.npy", {}, "R2_PROFILE"),
        ("http://127.0.0.1:9/part-0.npy", {}, "cannot reach 127.0.0.1:9"),
        ("http://127.0.0.1:9/part-*.npy", {}, "http:// paths cannot be listed"),
    ],
)
def test_bad_remote_paths_are_one_line_within_seconds(corpus, paths, env_change, expected):
    env = {**corpus.env, **env_change}
    env.pop("R2_PROFILE", None)
    line, seconds = _error(f"data.sources=[{{name: web, paths: ['{paths}']}}]", env=env)
    assert expected in line and "data 'embedded'" in line
    assert seconds < 20  # no minutes of retries before a typo is reported


def test_remote_file_checks(corpus, tmp_path):
    """Half a token, ids outside the vocabulary (in the sampled head), and a mixture of remote
    files without document metadata: one line each, naming the file and the fix."""
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x01\x00\x02")
    corpus.upload(bad, "bad/odd.npy")
    np.array([5, 9000, 0], dtype=np.uint16).tofile(bad)
    corpus.upload(bad, "bad/vocab.npy")
    line, _ = _error(
        "data.sources=[{name: web, paths: ['s3://corpus/bad/odd.npy']}]", env=corpus.env
    )
    assert "s3://corpus/bad/odd.npy is empty or not a whole number of 2-byte tokens" in line
    line, _ = _error(
        "data.sources=[{name: web, paths: ['s3://corpus/bad/vocab.npy']}]", env=corpus.env
    )
    assert "holds token id 9000, outside tokenizer embedded_bpe8k's vocab of 8192" in line
    bare = MIX.replace("/tok/", "/bare/")
    line, _ = _error(bare, env=corpus.env)
    assert "has no document metadata train-00000.csv.gz" in line
    assert "data.cache=DIR" in line and "python -m olmotrain.data index" in line


def test_cache_is_atomic_resumable_shared_and_follows_changes(corpus, tmp_path):
    from olmotrain.data.remote import store
    from olmotrain.data.remote.cache import RemoteCache

    payload = np.arange(3_000_000, dtype=np.uint16).tobytes()
    src = tmp_path / "big.npy"
    src.write_bytes(payload)
    os.environ.update(corpus.env)  # this process's client talks to the server
    try:
        url = corpus.upload(src, "cache/big.npy")
        f = store.stat(url)
        cache = RemoteCache(tmp_path / "cache")
        target = cache.local_path(url)
        # An interrupted download of the same version resumes where it stopped.
        target.parent.mkdir(parents=True)
        target.with_name("big.npy.part").write_bytes(payload[:1_000_000])
        target.with_name("big.npy.part.json").write_text(
            json.dumps({"url": f.url, "size": f.size, "etag": f.etag})
        )
        report = cache.fill([f], progress=False)
        assert report.downloaded == 1 and target.read_bytes() == payload
        assert not target.with_name("big.npy.part").exists()
        # Filled: nothing is downloaded again.
        assert cache.fill([f], progress=False).cached == 1
        # Concurrent fills of a fresh cache: one download, both see the whole file.
        shared = RemoteCache(tmp_path / "shared")
        reports = []
        threads = [
            threading.Thread(target=lambda: reports.append(shared.fill([f], progress=False)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.downloaded for r in reports) == [0, 1]
        assert shared.local_path(url).read_bytes() == payload
        # A changed object is downloaded again.
        src.write_bytes(payload[::-1])
        corpus.upload(src, "cache/big.npy")
        changed = store.stat(url)
        assert changed.etag != f.etag
        assert cache.fill([changed], progress=False).downloaded == 1
        assert target.read_bytes() == payload[::-1]
        assert not list(target.parent.glob("*.part*"))
    finally:
        for key in corpus.env:
            os.environ.pop(key, None)


def test_fetch_fills_the_cache_ahead_and_prepare_writes_to_a_bucket(corpus, tmp_path):
    """``python -m olmotrain.data fetch`` fills data.cache for a run; ``prepare --output
    s3://...`` stages, writes document metadata, uploads, and prints a config of URLs."""
    cache = tmp_path / "cache"
    env = {**corpus.env, "OLMOTRAIN_DATA_ROOT": str(tmp_path / "data")}
    result = module_main(
        "olmotrain.data", "fetch", *RUN, MIX, f"data.cache={cache}", "--quiet", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "data embedded: 2 file(s)" in result.stdout and "1 file(s)" in result.stdout
    assert len(list(cache.rglob("*.npy"))) == 3
    no_cache = module_main("olmotrain.data", "fetch", *RUN, MIX, env=env)
    assert "add data.cache=DIR" in assert_one_line_error(no_cache)

    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"document {i} " * 40}) + "\n" for i in range(50)))
    prepared = module_main(
        "olmotrain.prepare",
        f"notes={text}",
        "--output",
        "s3://corpus/prepared/notes",
        "--tokenizer",
        "embedded_bpe8k",
        "--eval-fraction",
        "0.2",
        "--quiet",
        "--staging",
        str(tmp_path / "staging"),
        env=corpus.env,
    )
    assert prepared.returncode == 0, prepared.stderr
    keys = {
        o["Key"]
        for o in corpus.client().list_objects_v2(Bucket=BUCKET, Prefix="prepared/")["Contents"]
    }
    assert {
        "prepared/notes/manifest.json",
        "prepared/notes/notes/train-00000.npy",
        "prepared/notes/notes/train-00000.csv.gz",
    } <= keys
    assert '"s3://corpus/prepared/notes/notes/train-*.npy"' in prepared.stdout


def test_plans_take_remote_sizes_from_the_listing(corpus, tmp_path):
    """A DataDecide template pointed at the bucket, and a ladder over it: tokens per source
    from the listing, no download."""
    env = {**corpus.env, "OLMOTRAIN_DATA_ROOT": str(tmp_path / "data")}
    code = REPO / "data" / "embedded" / "embedded_bpe8k" / "python_code" / "train-00000.npy"
    result = train_main(
        "data=datadecide_c4",
        "tokenizer=embedded_bpe8k",
        "model=dd_4m",
        f"data.sources=[{{name: c4, paths: ['{TOK}/python_code/train-*.npy']}}]",
        "data.eval=null",
        "dry_run=json",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    source = json.loads(result.stdout)["data"]["sources"][0]
    assert source["tokens"] == code.stat().st_size // 2 and source["files"] == 1
    # A template planned where the store cannot be reached: planned, without its sizes.
    offline = train_main(
        "data=datadecide_c4", "tokenizer=embedded_bpe8k", "model=dd_4m", "dry_run=json",
        env={**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr[-2000:]
    source = json.loads(offline.stdout)["data"]["sources"][0]
    assert source["tokens"] is None and "cannot reach http://127.0.0.1:9" in source["unverified"]
    ladder = tmp_path / "bucket.yaml"
    ladder.write_text(
        "name: bucket\nsizes: [olmo2_1m, dd_4m]\nmixes: [embedded]\nchinchilla_multiple: 0.01\n"
        "seeds: [42]\noverrides:\n  - data.builder=null\n"
        f'  - "{MIX}"\n  - data.eval=null\n'
    )
    planned = module_main("olmotrain.ladder", "plan", str(ladder), "--json", env=env)
    assert planned.returncode == 0, planned.stderr[-2000:]
    rows = json.loads(planned.stdout)
    rows = rows["points"] if isinstance(rows, dict) else rows
    assert [r["size"] for r in rows] == ["olmo2_1m", "dd_4m"]
    assert not list((tmp_path / "data").rglob("*.npy"))  # nothing downloaded
    fetched = module_main(
        "olmotrain.ladder", "fetch", str(ladder), f"data.cache={tmp_path / 'cache'}", env=env
    )
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2  # one mix: fetched once


def test_each_file_s_nearest_manifest_is_found_and_asked_for_once(corpus, tmp_path, monkeypatch):
    """``manifests``: the nearest ``manifest.json`` above each file (a source's own dataset wins
    over one further up), each URL probed once across the sources that share it."""
    from olmotrain.data.remote.localize import manifests, remote_files

    for name, value in corpus.env.items():
        monkeypatch.setenv(name, value)
    token_file, manifest = tmp_path / "x.npy", tmp_path / "manifest.json"
    np.arange(4, dtype=np.uint16).tofile(token_file)
    manifest.write_text('{"tokenizer": {"name": "embedded_bpe8k"}}')
    for key in ("man/a/x.npy", "man/b/y.npy", "man/c/z.npy"):
        corpus.upload(token_file, key)
    for key in ("man/manifest.json", "man/b/manifest.json", "manifest.json"):
        corpus.upload(manifest, key)
    files = remote_files([f"s3://{BUCKET}/man/*/*.npy"])
    probed: dict = {}
    found = [m.url for m in manifests(files, probed)]
    assert found == [f"s3://{BUCKET}/man/manifest.json", f"s3://{BUCKET}/man/b/manifest.json"]
    with s3_requests() as requests:
        again = [m.url for m in manifests(files, probed)]
    assert again == found and requests == []  # nothing asked twice
