"""The metric vocabulary: olmo-core's names everywhere, and run dirs of older olmotrain (whose
``metrics.jsonl`` used short names) still read the same in ``status`` and in the readers."""

from __future__ import annotations

import json

from conftest import module_main

from olmotrain.metrics import (
    by_source,
    by_task,
    downstream_metric,
    from_old_names,
    parse_downstream,
    parse_lm,
    read_metrics_log,
    step_metrics_file,
)

OLD_RECORDS = [
    {"step": 1, "tokens": 4096, "loss": 9.25, "lr": 0.001, "tokens_per_s": 3000.0,
     "tokens/python_code": 4096},
    {"step": 2, "tokens": 8192, "loss": 8.5, "lr": 0.0005, "tokens_per_s": 3100.0, "mfu": 1.5,
     "tokens/python_code": 4096, "eval/english_docs": 7.75, "bpb/english_docs": 2.5,
     "downstream/copa (accuracy)": 0.5, "samples": [{"prompt": "a", "completion": "b"}]},
]  # fmt: skip


def test_an_old_metrics_log_reads_in_olmo_cores_names(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in OLD_RECORDS) + '{"step": 3, "lo')
    records = read_metrics_log(path)  # the torn last line (a kill) is left out
    assert [r["step"] for r in records] == [1, 2]
    assert records[-1] == {
        "step": 2,
        "tokens": 8192,
        "train/CE loss": 8.5,
        "optim/LR (group 0)": 0.0005,
        "throughput/device/TPS": 3100.0,
        "throughput/device/MFU": 1.5,
        "data/tokens/python_code": 4096,
        "eval/lm/english_docs/CE loss": 7.75,
        "eval/lm/english_docs/BPB": 2.5,
        "eval/downstream/copa (accuracy)": 0.5,
        "samples": [{"prompt": "a", "completion": "b"}],
    }
    assert from_old_names(records[-1]) == records[-1]  # current names stay as they are


def test_status_reads_an_old_run_dir(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in OLD_RECORDS))
    proc = module_main("olmotrain.status", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert (status["step"], status["loss"]) == (2, 8.5)


def test_names_parse_back():
    metrics = {
        "eval/lm/python_code/CE loss": 4.5,
        "eval/lm/python_code/BPB": 1.25,
        "eval/downstream/arc_easy (length-normalized accuracy)": 0.25,
        downstream_metric("piqa", "CE loss"): 1.0,
        "train/CE loss": 3.0,
    }
    assert parse_lm("eval/lm/python_code/CE loss") == ("python_code", "CE loss")
    assert parse_downstream("eval/downstream/copa (accuracy)") == ("copa", "accuracy")
    assert parse_lm("train/CE loss") is None and parse_downstream("eval/lm/x/PPL") is None
    assert by_source(metrics) == {"python_code": {"CE loss": 4.5, "BPB": 1.25}}
    assert by_task(metrics) == {
        "arc_easy": {"length-normalized accuracy": 0.25},
        "piqa": {"CE loss": 1.0},
    }
    assert step_metrics_file(36) == "metrics_step36.json"
