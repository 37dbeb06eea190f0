"""Collators inside ``DataLoader(num_workers=2)``, with fork and with spawn: no deadlock, batches equal to the
parent's, no warning spam; and the transformers ``Trainer`` trains with a ferrotune collator.

Each DataLoader scenario runs in a subprocess with a timeout, so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO_ROOT, load_dataset_slice

TIMEOUT_S = 180

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    import ferrotune

    def main():
        tok_dir, examples_path, context, collator_name = sys.argv[1:5]
        with open(examples_path, encoding="utf-8") as fh:
            examples = json.load(fh)
        tok = ferrotune.Tokenizer.from_pretrained(tok_dir)
        # The tokenizer's parallel machinery is running in the parent before the workers start.
        tok([e["text"] for e in examples], padding=True, truncation=True)
        examples = [{k: v for k, v in e.items() if k != "text"} for e in examples]
        collator = {
            "padding": lambda: ferrotune.DataCollatorWithPadding(tok, pad_to_multiple_of=8),
            "mlm": lambda: ferrotune.DataCollatorForLanguageModeling(tok, seed=7),
        }[collator_name]()
        collator(examples[:32])  # used in the parent first, as a Trainer does when it inspects a batch
        loader = DataLoader(examples, batch_size=32, num_workers=2, collate_fn=collator,
                            multiprocessing_context=context)
        seen = 0
        for index, batch in enumerate(loader):
            chunk = examples[index * 32:(index + 1) * 32]
            if collator_name == "padding":
                expected = collator(chunk)
                for key in expected:
                    assert torch.equal(batch[key], expected[key]), (index, key)
            else:
                padded = ferrotune.DataCollatorWithPadding(tok)(chunk)
                selected = batch["labels"] != -100
                assert torch.equal(batch["labels"][selected], padded["input_ids"][selected])
                assert 0.05 < selected.float().mean() < 0.3
            seen += 1
        print(f"OK {seen}")


    if __name__ == "__main__":
        main()
    """
)


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory, minilm_pair):
    _, hf = minilm_pair
    texts, pairs = load_dataset_slice("mrpc", 320)
    enc = hf(texts, pairs, truncation=True)
    examples = [{"text": texts[i], **{k: enc[k][i] for k in enc}, "label": i % 2} for i in range(len(texts))]
    path = tmp_path_factory.mktemp("collate") / "examples.json"
    path.write_text(json.dumps(examples), encoding="utf-8")
    return path


@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize("collator_name", ["padding", "mlm"])
def test_collators_in_dataloader_workers(tmp_path, minilm_dir, examples_file, context, collator_name):
    script = tmp_path / "collate_script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    cmd = [sys.executable, str(script), str(minilm_dir), str(examples_file), context, collator_name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{context} workers did not finish in {TIMEOUT_S}s (deadlock?): {exc.stderr!r}"[:4000])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "OK 10" in proc.stdout, proc.stdout
    # no tokenizer warning spam (transformers' pad warning, tokenizers' fork warning)
    assert "warn" not in proc.stderr.lower(), proc.stderr[-2000:]


def test_trainer_trains_with_ferrotune_collator(tmp_path, minilm_dir):
    """The course's Trainer script on MRPC with the real MiniLM model: the batches the Trainer builds are the same
    as with transformers' collator, and a few dozen steps give a finite, decreasing loss."""
    import datasets
    import ferrotune
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    hf = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    ft = ferrotune.Tokenizer.from_pretrained(str(minilm_dir))
    texts, pairs = load_dataset_slice("mrpc", 640)
    from conftest import mrpc_labels

    raw = datasets.Dataset.from_dict({"sentence1": texts, "sentence2": pairs, "label": mrpc_labels(640)})
    tokenized = raw.map(lambda b: ft(b["sentence1"], b["sentence2"], truncation=True), batched=True)
    tokenized = tokenized.remove_columns(["sentence1", "sentence2"])

    def trainer_for(collator, steps):
        transformers.set_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=2)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=16,
            learning_rate=1e-4,
            max_steps=steps,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        return transformers.Trainer(model=model, args=args, train_dataset=tokenized, data_collator=collator)

    ours = trainer_for(ferrotune.DataCollatorWithPadding(ft), 40)
    theirs = trainer_for(transformers.DataCollatorWithPadding(hf), 40)
    for a, b in zip(ours.get_train_dataloader(), theirs.get_train_dataloader()):
        assert set(a) == set(b)
        for key in b:
            assert torch.equal(a[key], b[key]), key

    ours.train()
    losses = [entry["loss"] for entry in ours.state.log_history if "loss" in entry]
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses), losses
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first, (first, last)
