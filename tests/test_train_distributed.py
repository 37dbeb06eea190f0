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
