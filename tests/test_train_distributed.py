"""Two processes on CPU (gloo), launched as `accelerate launch` does it, each reading a disjoint half of the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from train_support import records, small_mrpc

pytest.importorskip("peft")
pytest.importorskip("accelerate")


def test_two_process_run_shares_the_data(tmp_path):
    import torch

    options = small_mrpc(tmp_path / "run", max_train_examples=128, epochs=1, batch_size=16, log="json")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29611",
        "-m", "ferrotune", "train", *flags,
    ]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 process(es)" in completed.stdout
    # Each step holds 2 x 16 examples: 128 examples make 4 steps (one process would take 8).
    train = records(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    # Each rank's loader read 64 examples: 128 in all, once each.
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    shares = [torch.load(checkpoint / f"rank-{r}.pt", weights_only=False)["loader"] for r in (0, 1)]
    assert [s["stats"]["examples"] for s in shares] == [64, 64]
    assert [(s["reader"], s["readers"]) for s in shares] == [(0, 2), (1, 2)]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["status"] == "finished" and result["steps"] == 4


def sft_options(tmp_path, conversations: int = 24) -> dict:
    """A tiny random Llama (the SmolLM2 tokenizer and template) and the first LIMA conversations, packed in rows of
    128 tokens, 2 rows a batch per process."""
    from test_train_sft import lima_lines, require_sft_data, tiny_model, write_lines

    require_sft_data()
    model = tiny_model((tmp_path / "model").resolve())
    train = write_lines(tmp_path / "lima.jsonl", lima_lines(range(conversations)))
    return {"task": "sft", "model": str(model), "train": train, "max_length": 128, "batch_size": 2, "epochs": 1,
            "drop_empty": True, "log": "json", "seed": 3, "output_dir": str(tmp_path / "run")}  # fmt: skip


def launch(options: dict, *launch_options: str, timeout: int = 120) -> subprocess.CompletedProcess:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if not isinstance(v, bool)]
    flags += [f"--{k.replace('_', '-')}" for k, v in options.items() if v is True]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch_options, "-m", "ferrotune", "train", *flags]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)


def test_two_process_sft_shares_the_conversations(tmp_path):
    """`--task sft` under `accelerate launch` with 2 processes: each rank trains on its own packed batches (every
    other batch of the epoch's plan), no conversation is seen by both, each step's record counts the tokens of both
    ranks' batches, and the adapter is written."""
    import torch
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import load_task_data
    from ferrotune.training.tasks.sft import ConversationBatches

    options = sft_options(tmp_path)
    completed = launch(options, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
                       "no", "--dynamo_backend", "no", "--main_process_port", "29613")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 process(es)" in completed.stdout
    out = tmp_path / "run"
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["status"] == "finished"

    # The loaders' plans, rebuilt from the same data and seed: rank r takes batches r, r + 2, ... of the epoch.
    data = load_task_data(TrainConfig(**{**options, "log": "quiet"}).validate())
    lengths = [len(ids) for ids in data.train.column("input_ids").to_pylist()]
    plans = [ConversationBatches(data.train, 2, 128, 0, seed=3, rank=r, world=2).plan(0) for r in (0, 1)]
    whole = ConversationBatches(data.train, 2, 128, 0, seed=3).plan(0)
    steps = min(len(plan) for plan in plans)
    assert result["steps"] == steps >= 3 and len(whole) in (2 * steps, 2 * steps + 1)  # one process: twice the steps
    seen = [[i for batch in plan[:steps] for row in batch for i in row] for plan in plans]
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])  # disjoint shares
    assert sorted(seen[0] + seen[1]) == sorted(i for batch in whole[: 2 * steps] for row in batch for i in row)
    # Each step's record sums both ranks' real tokens: the ranks trained on those batches, not on the same one.
    train = records(out, "train")
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    assert all(0 <= r["data_seconds"] <= r["seconds"] for r in train)  # the wait for the loader's batches
    for record, batches in zip(train, zip(*(plan[:steps] for plan in plans))):
        assert record["real_tokens"] == sum(lengths[i] for batch in batches for row in batch for i in row)
    # The checkpoint of the last step holds each rank's loader position: epoch 0, after its last batch.
    checkpoint = sorted((out / "checkpoints").iterdir())[-1]
    shares = [torch.load(checkpoint / f"rank-{r}.pt", weights_only=False)["loader"] for r in (0, 1)]
    assert shares == [{"kind": "conversation-batches", "epoch": 0, "batch": steps}] * 2


def test_fsdp_launch_is_refused(tmp_path):
    """`accelerate launch --config_file fsdp.yaml` with the README's FSDP config: the processes refuse before reading
    the data (ferrotune writes the model from the unwrapped module on the main process, which FSDP's sharded
    parameters do not allow). On CPU Accelerate would not even shard (it only takes its FSDP path for GPU-like
    devices: the run would silently be DDP over gloo)."""
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("cat > fsdp.yaml <<'EOF'\n") + len("cat > fsdp.yaml <<'EOF'\n")
    config = tmp_path / "fsdp.yaml"
    config.write_text(readme[start : readme.index("\nEOF\n", start)] + "\n", encoding="utf-8")
    assert "distributed_type: FSDP" in config.read_text()
    options = sft_options(tmp_path, conversations=4)
    completed = launch(options, "--config_file", str(config), "--num_processes", "2", "--mixed_precision", "no",
                       "--main_process_port", "29615")  # fmt: skip
    assert completed.returncode != 0
    # (the first process to exit makes the launcher stop the other, which may not have printed its own yet)
    refusal = "ferrotune train: error: FSDP is not supported by ferrotune train"
    assert refusal in completed.stderr, completed.stderr[-3000:]
    assert "accelerate launch --multi_gpu" in completed.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
