"""End to end on CPU: MiniLM + LoRA on a slice of MRPC through ferrotune.train, then the output folder is reloaded
(PeftModel.from_pretrained, ferrotune.predict, a merged model) and must reproduce the run's own dev metrics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from train_support import mrpc_dir, records, small_mrpc

pytest.importorskip("peft")
pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def mrpc_run(tmp_path_factory):
    import ferrotune

    output_dir = tmp_path_factory.mktemp("mrpc_run")
    # lr 2e-3 and 3 epochs of 4 steps: enough for the loss to move clearly on 64 pairs.
    options = small_mrpc(output_dir, max_train_examples=64, max_eval_examples=48, learning_rate=2e-3, epochs=3,
                         eval_every=3)  # fmt: skip
    result = ferrotune.train(**options)
    return result, output_dir


def dev_pairs(n: int) -> tuple[list[str], list[str], np.ndarray]:
    with (mrpc_dir() / "dev.tsv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    return [r["#1 String"] for r in rows], [r["#2 String"] for r in rows], np.array([int(r["Quality"]) for r in rows])


def test_run_finishes_and_the_loss_decreases(mrpc_run):
    result, output_dir = mrpc_run
    assert result.status == "finished" and result.steps == 12
    losses = [r["loss"] for r in records(output_dir, "train")]
    assert len(losses) == 12
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.01, losses


def test_metrics_are_written_each_step_and_each_evaluation(mrpc_run):
    _, output_dir = mrpc_run
    train = records(output_dir, "train")
    assert all(r["lr"] > 0 and r["tokens_per_s"] > 0 and 0 <= r["pad_fraction"] < 1 for r in train)
    # Length buckets: the average batch is mostly real tokens.
    assert np.mean([r["pad_fraction"] for r in train]) < 0.15
    evals = records(output_dir, "eval")
    assert [r["step"] for r in evals] == [3, 4, 6, 8, 9, 12]  # every 3 steps and at each epoch's end
    assert all(0 <= r["eval_accuracy"] <= 1 and 0 <= r["eval_f1"] <= 1 for r in evals)
    assert (output_dir / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_output_folder_holds_adapter_tokenizer_and_config(mrpc_run):
    _, output_dir = mrpc_run
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train_config.json"):
        assert (output_dir / name).is_file(), name
    assert json.loads((output_dir / "train_config.json").read_text())["task"] == "mrpc"
    assert (output_dir / "best" / "adapter_model.safetensors").is_file()


def test_adapter_reloads_with_peft_and_reproduces_the_dev_metrics(mrpc_run):
    import ferrotune
    import torch
    import transformers
    from ferrotune.prediction import resolve_base_model
    from ferrotune.training.metrics import accuracy, f1
    from peft import PeftModel

    result, output_dir = mrpc_run
    task = json.loads((output_dir / "ferrotune_task.json").read_text())
    # base_model is portable (the Hub id of the default model; its local folder comes from the package).
    assert task["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    base_path = resolve_base_model(output_dir)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2)
    model = PeftModel.from_pretrained(base, output_dir).eval()
    texts, pairs, labels = dev_pairs(48)
    tokenizer = ferrotune.Tokenizer.from_pretrained(output_dir)
    with torch.no_grad():
        logits = model(**tokenizer(texts, pairs, padding=True, truncation=True, max_length=128, return_tensors="pt"))
    predictions = logits.logits.argmax(-1).numpy()
    assert accuracy(predictions, labels) == pytest.approx(result.eval_metrics["eval_accuracy"])
    assert f1(predictions, labels) == pytest.approx(result.eval_metrics["eval_f1"])

    # ferrotune.predict (length-sorted batches) gives the same labels, in input order, pipeline-shaped.
    predicted = ferrotune.predict(output_dir, texts, pairs)
    assert [p["label"] for p in predicted] == [task["label_names"][i] for i in predictions]
    probabilities = torch.softmax(logits.logits, -1).max(-1).values.numpy()
    np.testing.assert_allclose([p["score"] for p in predicted], probabilities, rtol=1e-4, atol=1e-5)


def test_merged_model_gives_the_same_predictions(mrpc_run, tmp_path):
    from ferrotune.prediction import merge, predict

    _, output_dir = mrpc_run
    merged = merge(output_dir, tmp_path / "merged")
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    texts, pairs, _ = dev_pairs(16)
    adapter, full = predict(output_dir, texts, pairs), predict(merged, texts, pairs)
    assert [p["label"] for p in adapter] == [p["label"] for p in full]
    np.testing.assert_allclose([p["score"] for p in adapter], [p["score"] for p in full], atol=1e-4)


def run_cli(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ferrotune", *arguments],
        input=stdin, capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip


def test_cli_predict_reads_pairs_from_stdin(mrpc_run):
    _, output_dir = mrpc_run
    texts, pairs, _ = dev_pairs(3)
    completed = run_cli("predict", str(output_dir), stdin="".join(f"{a}\t{b}\n" for a, b in zip(texts, pairs)))
    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(lines) == 3 and all(set(line) == {"label", "score"} for line in lines)
    assert {line["label"] for line in lines} <= {"not_equivalent", "equivalent"}


def test_cli_train_takes_a_yaml_config_and_flags_win(tmp_path):
    options = small_mrpc(tmp_path / "run", max_train_examples=32, epochs=1, lora_r=4)
    (tmp_path / "run.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in options.items()))
    completed = run_cli("train", "--config", str(tmp_path / "run.yaml"), "--lora-r", "2", "--log", "json")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["type"] == "result" and result["status"] == "finished" and result["steps"] == 2
    assert {"accuracy", "f1"} <= set(result["dev"])
    adapter = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter["r"] == 2 and sorted(adapter["target_modules"]) == ["query", "value"]
