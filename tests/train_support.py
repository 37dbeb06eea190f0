"""Shared pieces of the fine-tuning tests: small MRPC runs on CPU (a few dozen steps at most)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import require_data_dir, require_minilm_dir

TINY_GPT2 = "models/tiny-gpt2"


def mrpc_dir() -> Path:
    path = require_data_dir() / "glue" / "MRPC"
    if not (path / "train.tsv").is_file():
        import pytest

        pytest.skip(f"GLUE MRPC not found at {path}")
    return path


def tiny_gpt2_dir() -> Path:
    path = require_data_dir() / TINY_GPT2
    if not (path / "config.json").is_file():
        import pytest

        pytest.skip(f"tiny-gpt2 not found at {path}")
    return path


def small_mrpc(output_dir: Path, **overrides) -> dict:
    """Options of a small MRPC LoRA run: 96 training pairs, batches of 16 (6 steps per epoch)."""
    require_minilm_dir()
    options = {
        "task": "mrpc", "data_dir": str(mrpc_dir()), "output_dir": str(output_dir), "max_train_examples": 96,
        "max_eval_examples": 64, "batch_size": 16, "epochs": 2, "log": "quiet", "seed": 7,
    }  # fmt: skip
    options.update(overrides)
    return options


def records(output_dir: Path, kind: str) -> list[dict]:
    lines = (Path(output_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]
