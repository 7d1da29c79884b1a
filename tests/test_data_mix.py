"""Data mixes through the real CLI: olmo-core's source mixture, repetition, the instance filter,
tokens seen per source, and the start-up checks (ratios, repetition, vocab, tokenizer). Plans and
refusals run train.py in this process; the training runs in its own."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    DATA_ROOT,
    REPO,
    assert_one_line_error,
    dry_run_json,
    metrics,
    run_cli,
    train_main,
)

EOS = 0  # the embedded BPE's


def documents(path, limit_tokens=None):
    """Whole EOS-terminated documents from a real token file, up to ``limit_tokens``."""
    ids = np.fromfile(path, dtype=np.uint16)
    ends = np.flatnonzero(ids == EOS) + 1
    if limit_tokens is not None:
        ends = ends[ends <= limit_tokens]
    return ids, ends


@pytest.fixture(scope="module")
def three_sources(embedded_data, tmp_path_factory):
    """Real tokens of the embedded data split into three sources: two halves of the code, and a
    small slice of the prose (so a 20% share of the run must repeat it)."""
    root = tmp_path_factory.mktemp("mix")
    code, code_ends = documents(embedded_data / "python_code" / "train-00000.npy")
    half = code_ends[len(code_ends) // 2]
    for name, part in (("code_a", code[:half]), ("code_b", code[half:])):
        (root / name).mkdir()
        part.tofile(root / name / "part-0.npy")
    prose, prose_ends = documents(
        embedded_data / "english_docs" / "train-00000.npy", limit_tokens=12_000
    )
    (root / "prose").mkdir()
    prose[: prose_ends[-1]].tofile(root / "prose" / "part-0.npy")
    return root


def mix_args(root, prose_repetition=3.0):
    sources = (
        f"data.sources=[{{name: code_a, paths: ['{root}/code_a/*.npy'], ratio: 0.5}},"
        f" {{name: code_b, paths: ['{root}/code_b/*.npy'], ratio: 0.3}},"
        f" {{name: prose, paths: ['{root}/prose/*.npy'], ratio: 0.2, max_repetition_ratio: {prose_repetition}}}]"
    )
    return [
        "model=olmo2_1m",
        "train.max_steps=12",
        "train.global_batch_size=8192",
        sources,
        "data.name=three",
        "data.eval=null",
        "data.instance_filter={repetition_min_period: 1, repetition_max_period: 13, repetition_max_count: 32}",
    ]


def test_plan_reports_per_source_requests_and_repetition(three_sources):
    plan = dry_run_json(*mix_args(three_sources))
    by_name = {s["name"]: s for s in plan["data"]["sources"]}
    duration = plan["duration_tokens"]
    assert duration == 12 * 8192
    assert {n: s["requested_tokens"] for n, s in by_name.items()} == {
        "code_a": int(duration * 0.5),
        "code_b": int(duration * 0.3),
        "prose": int(duration * 0.2),
    }
    prose = by_name["prose"]
    assert prose["repetition"] == pytest.approx(prose["requested_tokens"] / prose["tokens"])
    assert 1.0 < prose["repetition"] < 3.0 and prose["fits"] is True
    assert plan["data"]["mix"] == "ratios" and plan["data"]["problems"] == []


def test_data_ratios_mix_the_sources_by_name_and_a_proxy_repeats_as_its_target(three_sources):
    # data.ratios replaces the sources' own ratios (what a mixture swarm sets per run).
    ratios = "data.ratios={code_a: 0.2, code_b: 0.2, prose: 0.6}"
    plan = dry_run_json(*mix_args(three_sources, prose_repetition=100), ratios)
    by_name = {s["name"]: s for s in plan["data"]["sources"]}
    assert {n: s["ratio"] for n, s in by_name.items()} == {
        "code_a": 0.2,
        "code_b": 0.2,
        "prose": 0.6,
    }
    prose_tokens = by_name["prose"]["tokens"]
    alone = by_name["prose"]["repetition"]
    # A proxy of a run 50x longer sees 1/50 of each source: it repeats prose as that run would.
    target = 50 * plan["duration_tokens"]
    proxy = dry_run_json(
        *mix_args(three_sources, prose_repetition=100), ratios, f"data.proxy_for_tokens={target}"
    )
    prose = {s["name"]: s for s in proxy["data"]["sources"]}["prose"]
    assert prose["repetition"] == pytest.approx(0.6 * target / prose_tokens, rel=1e-3)
    assert prose["repetition"] == pytest.approx(50 * alone, rel=1e-3)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.ratios={code_a: 0.5, code_b: 0.3, prosee: 0.2}", "'prosee' is not a source of data 'three'; did you mean prose?"),
        ("data.ratios={code_a: 0.5, code_b: 0.5}", "data.ratios gives no ratio for prose"),
        ("data.ratios={code_a: 0.5, code_b: 0.3, prose: 0.3}", "source ratios add up to 1.1"),
        ("data.proxy_for_tokens=-5", "data.proxy_for_tokens=-5.0 must be a positive number"),
    ],
)  # fmt: skip
def test_bad_data_ratios_are_one_clear_line(three_sources, override, expected):
    line = assert_one_line_error(train_main(*mix_args(three_sources), override, "dry_run=true"))
    assert expected in line


@pytest.mark.slow
def test_three_source_mix_with_repetition_and_filter_trains_in_ratio(three_sources, tmp_path):
    proc = run_cli(*mix_args(three_sources), f"output_root={tmp_path}", "run_name=three")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = metrics(tmp_path / "three")
    assert [r["step"] for r in records] == list(range(1, 13))
    seen = {
        s: sum(r.get(f"data/tokens/{s}", 0) for r in records) for s in ("code_a", "code_b", "prose")
    }
    total = sum(seen.values())
    assert total == 12 * 8192
    # olmo-core's mixture hands out whole 512-token instances (Hamilton rounding): within 1%.
    for source, ratio in (("code_a", 0.5), ("code_b", 0.3), ("prose", 0.2)):
        assert seen[source] / total == pytest.approx(ratio, abs=0.01), seen
    assert "tokens by source" in proc.stdout and "prose" in proc.stdout


def test_a_source_that_cannot_supply_its_share_is_refused_before_training(three_sources, tmp_path):
    line = assert_one_line_error(
        train_main(*mix_args(three_sources, prose_repetition=1.0), f"output_root={tmp_path}")
    )
    assert "prose: needs" in line and "above its max_repetition_ratio 1" in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        (
            "0.5, 0.3, 0.3",
            "source ratios add up to 1.1 (code_a 0.5 + code_b 0.3 + prose 0.3), not 1",
        ),
        ("0.5, 0.5, null", "give every source a ratio, or none (natural mix); missing: prose"),
        ("0.5, 0.6, -0.1", "ratios must be >= 0"),
    ],
)
def test_ratios_that_do_not_add_up_are_one_clear_line(three_sources, ratios, expected):
    r = [x.strip() for x in ratios.split(",")]
    sources = (
        f"data.sources=[{{name: code_a, paths: ['{three_sources}/code_a/*.npy'], ratio: {r[0]}}},"
        f" {{name: code_b, paths: ['{three_sources}/code_b/*.npy'], ratio: {r[1]}}},"
        f" {{name: prose, paths: ['{three_sources}/prose/*.npy'], ratio: {r[2]}}}]"
    )
    line = assert_one_line_error(train_main("model=olmo2_1m", sources, "dry_run=true"))
    assert expected in line


def test_token_ids_outside_the_vocab_are_refused(tmp_path, embedded_data):
    ids = np.fromfile(embedded_data / "english_docs" / "train-00000.npy", dtype=np.uint16)
    ids = ids[:20_000].copy()
    ids[100] = 9000  # the embedded BPE has 8,192 ids
    (tmp_path / "bad").mkdir()
    ids.tofile(tmp_path / "bad" / "part-0.npy")
    sources = f"data.sources=[{{name: web, paths: ['{tmp_path}/bad/*.npy']}}]"
    args = [
        "model=olmo2_1m",
        "train.max_steps=2",
        sources,
        "data.eval=null",
        f"output_root={tmp_path}/runs",
    ]
    line = assert_one_line_error(train_main(*args))
    assert "holds token id 9000, outside tokenizer embedded_bpe8k's vocab of 8192" in line
    assert not (tmp_path / "runs").exists()


def test_data_prepared_with_another_tokenizer_is_refused(embedded_data, tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "olmotrain.embedded",
            "--root",
            str(DATA_ROOT / "embedded"),
            "--tokenizer",
            "gpt_neox_olmo",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    neox = DATA_ROOT / "embedded" / "gpt_neox_olmo" / "english_docs" / "train-*.npy"
    sources = f"data.sources=[{{name: prose, paths: ['{neox}']}}]"
    line = assert_one_line_error(
        train_main("model=olmo2_1m", sources, "data.eval=null", f"output_root={tmp_path}")
    )
    assert (
        "was tokenized with gpt_neox_olmo (vocab 50280, eos 50279) but the run uses tokenizer=embedded_bpe8k"
        in line
    )


def test_shipped_mixes_compose_and_fit(embedded_data):
    for name, shares in (
        ("embedded", None),
        ("embedded_code_heavy", [0.9, 0.1]),
        ("embedded_prose_heavy", [0.6, 0.4]),
    ):
        plan = dry_run_json("experiment=cpu_demo", f"data={name}")
        sources = plan["data"]["sources"]
        assert all(s["fits"] for s in sources) and plan["data"]["problems"] == []
        if shares:
            assert [s["ratio"] for s in sources] == shares
    prose = dry_run_json("experiment=cpu_demo", "data=embedded_prose_heavy")["data"]["sources"][1]
    assert prose["repetition"] > 1  # the small prose source is repeated to give 40%
