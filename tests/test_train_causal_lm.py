"""Causal LM with packing on tiny-gpt2 (random weights: only the mechanics are checked, not quality)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import mrpc_pairs
from train_support import records, tiny_gpt2_dir

pytest.importorskip("peft")


def write_documents(path, n: int) -> None:
    first, second = mrpc_pairs(n)
    with path.open("w") as handle:
        for a, b in zip(first, second):
            handle.write(json.dumps({"content": f"{a} {b}"}) + "\n")


def test_causal_lm_with_packing_and_lora(tmp_path):
    import ferrotune

    write_documents(tmp_path / "docs.jsonl", 120)
    result = ferrotune.train(
        task="causal-lm", model=str(tiny_gpt2_dir()), train=str(tmp_path / "docs.jsonl"),
        eval=str(tmp_path / "docs.jsonl"), max_eval_examples=16, text_column="content", max_length=64, batch_size=4,
        epochs=1, output_dir=str(tmp_path / "out"), log="quiet",
    )  # fmt: skip
    assert result.status == "finished" and result.steps > 5
    train = records(tmp_path / "out", "train")
    # Packed rows have no padding; each step trains on (up to) batch_size x max_length tokens.
    assert all(r["pad_fraction"] == 0 and 0 < r["real_tokens"] <= 4 * 64 for r in train)
    assert np.isfinite([r["loss"] for r in train]).all()
    assert np.isfinite(result.eval_metrics["eval_perplexity"])
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and adapter["target_modules"] == ["c_attn"]


def test_packed_mask_keeps_documents_apart():
    import torch
    import transformers
    from ferrotune.training.tasks.causal_lm import packed_causal_mask

    # A small random GPT-2: logits of two packed documents must equal those of each document alone.
    config = transformers.AutoConfig.from_pretrained(tiny_gpt2_dir())
    config.n_embd, config.vocab_size = 16, 100
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    first, second = torch.tensor([[10, 20, 30, 40]]), torch.tensor([[50, 60, 70]])
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
    with torch.no_grad():
        packed = model(
            input_ids=torch.cat([first, second], 1), position_ids=positions,
            attention_mask=packed_causal_mask(positions),
        ).logits  # fmt: skip
        torch.testing.assert_close(packed[:, :4], model(input_ids=first).logits)
        torch.testing.assert_close(packed[:, 4:], model(input_ids=second).logits)
