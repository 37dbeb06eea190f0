"""transformers' ``Trainer`` with a ferrotune tokenizer as ``processing_class``: the checkpoints and the final
``save_model`` folder hold tokenizer files that transformers' ``AutoTokenizer`` (and ferrotune) load to the same ids."""

from __future__ import annotations

import math

import ferrotune
from conftest import mrpc_labels, mrpc_pairs

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def test_trainer_saves_ferrotune_tokenizer(tmp_path, minilm_dir):
    import datasets
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    ft = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    first, second = mrpc_pairs(48)
    raw = datasets.Dataset.from_dict({"sentence1": first, "sentence2": second, "label": mrpc_labels(48)})
    tokenized = raw.map(lambda b: ft(b["sentence1"], b["sentence2"], truncation=True), batched=True)
    tokenized = tokenized.remove_columns(["sentence1", "sentence2"])

    transformers.set_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=tokenized,
        data_collator=ferrotune.DataCollatorWithPadding(ft),
        processing_class=ft,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses), losses
    out = tmp_path / "final"
    trainer.save_model(str(out))

    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"))
    assert [path.name for path in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    reference = AutoTokenizer.from_pretrained(str(minilm_dir))
    expected = reference(first, second, truncation=True)
    for folder in [*checkpoints, out]:
        for name in TOKENIZER_FILES:
            assert (folder / name).is_file(), f"{folder.name} has no {name}"
        hf = AutoTokenizer.from_pretrained(str(folder))
        got = hf(first, second, truncation=True)
        assert got["input_ids"] == expected["input_ids"], folder.name
        assert got["token_type_ids"] == expected["token_type_ids"], folder.name
        assert got["attention_mask"] == expected["attention_mask"], folder.name
        reloaded = ferrotune.Tokenizer.from_pretrained(folder)
        assert reloaded(first, second, truncation=True)["input_ids"] == expected["input_ids"], folder.name
        assert (hf.model_max_length, hf.pad_token, hf.cls_token) == (512, "[PAD]", "[CLS]")
    # the saved model folder loads back as a model with its tokenizer
    reloaded_model = transformers.AutoModelForSequenceClassification.from_pretrained(str(out))
    assert reloaded_model.config.num_labels == 2
