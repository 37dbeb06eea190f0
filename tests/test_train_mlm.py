"""Masked-LM domain adaptation (``--task mlm``, the Hugging Face course's chapter 7.3 on IMDB) on all-MiniLM-L6-v2:
the blocks are the course's ``group_texts`` (plus the remainder as a last block), the masks are
``DataCollatorForLanguageModeling``'s, the evaluation masks are drawn once, and a short run writes an adapter whose
new masked-LM head is saved and reloads to the reported perplexity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import imdb_texts, require_minilm_dir
from ferrotune.errors import ColumnNotFoundError, ConfigError, DataError
from train_support import records

pytest.importorskip("peft")

CHUNK = 128  # the course's chunk_size


def write_reviews(path, texts, **extra) -> None:
    with path.open("w") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"text": text, "label": i % 2, **extra}) + "\n")


def course_group_texts(tokenizer, texts, chunk_size=CHUNK):
    """The course's preprocessing: ``tokenize_function`` (with word ids) then ``group_texts``, in one batch."""
    result = tokenizer(texts)
    result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]
    concatenated = {k: sum(result[k], []) for k in result.keys()}
    total_length = len(concatenated[list(result.keys())[0]])
    total_length = (total_length // chunk_size) * chunk_size
    return {
        k: [t[i : i + chunk_size] for i in range(0, total_length, chunk_size)] for k, t in concatenated.items()
    }, concatenated


def config(**options):
    from ferrotune.training.config import TrainConfig

    return TrainConfig(**{"task": "mlm", "train": "unused.jsonl", **options}).validate()


@pytest.fixture(scope="module")
def tokenizer():
    import ferrotune

    return ferrotune.Tokenizer.from_pretrained(require_minilm_dir())


@pytest.mark.parametrize("whole_words", [False, True])
def test_blocks_equal_the_course_group_texts(tokenizer, whole_words):
    from ferrotune.training.tasks.masked_lm import group_texts
    from transformers import AutoTokenizer

    texts = imdb_texts(300)
    course, concatenated = course_group_texts(AutoTokenizer.from_pretrained(str(require_minilm_dir())), texts)
    blocks = group_texts(tokenizer, texts, CHUNK, word_ids=whole_words).to_pydict()
    full = len(course["input_ids"])
    remainder = len(concatenated["input_ids"]) - full * CHUNK
    assert full > 400 and 0 < remainder < CHUNK  # 300 reviews: ~550 blocks, and a remainder
    # The course's blocks, then the remainder (which the course drops) as one shorter last block.
    assert len(blocks["input_ids"]) == full + 1
    names = ["input_ids", "token_type_ids", "attention_mask", *(["word_ids"] if whole_words else [])]
    assert sorted(blocks) == sorted(names)
    for name in names:
        assert blocks[name][:full] == course[name], name
        assert blocks[name][full] == concatenated[name][full * CHUNK :], name


def test_training_batches_mask_as_the_collator(tokenizer):
    import torch
    from ferrotune.training.tasks import task_for
    from ferrotune.training.tasks.masked_lm import group_texts

    cls, sep, mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    torch.manual_seed(0)
    loader = task_for("mlm").train_loader(config(batch_size=200), tokenizer, _table(imdb_texts(120)), 0, 1)
    batch = next(iter(loader))
    blocks = group_texts(tokenizer, imdb_texts(120), CHUNK)
    assert sorted(batch) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    assert batch["input_ids"].shape == (200, CHUNK)
    labels, inputs = batch["labels"].numpy(), batch["input_ids"].numpy()
    selected = labels != -100
    # Unmasked ids: the labels where selected, the inputs elsewhere; every row is one of the blocks.
    ids = np.where(selected, labels, inputs)
    rows = {tuple(row) for row in blocks.column("input_ids").to_pylist()}
    lengths = batch["attention_mask"].sum(dim=1).tolist()  # (the remainder block, if drawn, is padded)
    assert all(tuple(row[:n]) in rows for row, n in zip(ids.tolist(), lengths))
    special = np.isin(ids, [cls, sep, tokenizer.pad_token_id])
    assert not (selected & special).any()  # special tokens are never selected
    rate = selected.sum() / (~special).sum()
    assert 0.14 < rate < 0.16, rate  # mlm_probability 0.15 of ~25k tokens
    as_mask = (inputs == mask)[selected].mean()
    unchanged = (inputs == ids)[selected].mean()
    assert 0.77 < as_mask < 0.83 and 0.08 < unchanged < 0.12, (as_mask, unchanged)  # 80% [MASK], 10% kept
    assert (inputs[~selected] == ids[~selected]).all()


def test_whole_word_masking_masks_words_whole(tokenizer):
    from ferrotune.training.tasks import task_for

    loader = task_for("mlm").train_loader(
        config(batch_size=64, whole_word_mask=True, mlm_probability=0.3), tokenizer, _table(imdb_texts(40)), 0, 1
    )
    batch = next(iter(loader))
    labels, inputs = batch["labels"].numpy(), batch["input_ids"].numpy()
    selected = labels != -100
    assert (inputs[selected] == tokenizer.mask_token_id).all()  # whole words: every masked token is [MASK]
    ids = np.where(selected, labels, inputs)
    tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids]
    checked = 0
    for row, chosen in zip(tokens, selected):
        for position in range(1, len(row)):
            if row[position].startswith("##"):  # a word's later piece is masked exactly when the piece before is
                assert chosen[position] == chosen[position - 1]
                checked += 1
    assert checked > 100
    assert 0.2 < selected.mean() < 0.45  # more tokens than words are selected (0.3 of the words)


def _table(texts):
    import pyarrow as pa

    return pa.table({"text": texts})


def test_evaluation_masks_are_fixed_per_seed(tokenizer):
    from ferrotune.training.data import build_eval_batches
    from ferrotune.training.tasks import task_for

    task, table = task_for("mlm"), _table(imdb_texts(60))
    first = task.encode(tokenizer, table, CHUNK, config(seed=3))
    assert first.equals(task.encode(tokenizer, table, CHUNK, config(seed=3)))
    assert not first.equals(task.encode(tokenizer, table, CHUNK, config(seed=4)))
    labels = np.concatenate(first.column("labels").to_numpy(zero_copy_only=False))
    assert 0.13 < (labels != -100).mean() < 0.17
    # Evaluation batches are built once per run; built again they hold the same masks.
    batches = [build_eval_batches(config(seed=3, eval_batch_size=16), task, tokenizer, table) for _ in range(2)]
    for (indices_a, a), (indices_b, b) in zip(*batches):
        assert (indices_a == indices_b).all()
        assert all((a[k] == b[k]).all() for k in a)


def test_short_run_writes_a_reloadable_adapter(tmp_path):
    import ferrotune
    import torch
    import transformers
    from ferrotune.training.data import build_eval_batches
    from ferrotune.training.modeling import quiet_transformers
    from ferrotune.training.tasks import task_for
    from peft import PeftModel

    minilm = require_minilm_dir()
    texts = imdb_texts(24)
    write_reviews(tmp_path / "train.jsonl", texts[:16])
    write_reviews(tmp_path / "eval.jsonl", texts[16:])
    result = ferrotune.train(
        task="mlm", train=str(tmp_path / "train.jsonl"), eval=str(tmp_path / "eval.jsonl"), max_length=64,
        batch_size=8, epochs=1, output_dir=str(tmp_path / "out"), log="quiet", seed=5,
    )  # fmt: skip
    out = tmp_path / "out"
    assert result.status == "finished" and result.steps >= 5
    loss, perplexity = result.eval_metrics["eval_loss"], result.eval_metrics["eval_perplexity"]
    assert perplexity == pytest.approx(math.exp(loss))
    train = records(out, "train")
    assert loss < train[0]["loss"]  # the new head learns from a loss of ~ln(30522) ~ 10.3
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] is None and adapter["modules_to_save"] == ["cls.predictions.transform"]
    assert json.loads((out / "ferrotune_task.json").read_text())["kind"] == "mlm"
    assert "AutoModelForMaskedLM" in (out / "README.md").read_text()

    # The adapter reloads onto the base model to the perplexity the run reported (same fixed evaluation masks).
    with quiet_transformers():  # the new head's weights are reported MISSING: they come from the adapter
        base = transformers.AutoModelForMaskedLM.from_pretrained(minilm)
        model = PeftModel.from_pretrained(base, out).eval()
    run_config = config(max_length=64, seed=5)
    tokenizer = ferrotune.Tokenizer.from_pretrained(minilm)
    task, table = task_for("mlm"), _table(texts[16:])
    total, items = 0.0, 0
    with torch.no_grad():
        for _, batch in build_eval_batches(run_config, task, tokenizer, table):
            output = model(**batch)  # transformers' own loss: the mean over the masked tokens
            summed = task.loss(output.logits, batch["labels"]).item()
            assert summed / task.loss_items(batch) == pytest.approx(output.loss.item(), rel=1e-5)
            total += summed
            items += task.loss_items(batch)
    assert total / items == pytest.approx(loss, rel=1e-4)
    with pytest.raises(ConfigError, match="fill-mask"):
        ferrotune.predict(str(out), ["a review"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"packing": True}, "packing does not apply"),
        ({"text_pair_column": "other"}, "one text column"),
        ({"mlm_probability": 1.5}, r"mlm_probability must be in \(0, 1\)"),
        ({"task": "classification", "whole_word_mask": True}, "are for mlm, not classification"),
        ({"task": "causal-lm", "mlm_probability": 0.2}, "are for mlm, not causal-lm"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        config(**options)


def test_bad_data_is_named(tmp_path):
    import ferrotune

    require_minilm_dir()
    write_reviews(tmp_path / "reviews.jsonl", ["a good film", "a bad one"])
    with pytest.raises(ColumnNotFoundError, match="text column 'review' is not in"):
        ferrotune.train(task="mlm", train=str(tmp_path / "reviews.jsonl"), text_column="review", log="quiet",
                        output_dir=str(tmp_path / "out"))  # fmt: skip
    for bad, message in (("  ", "is empty in .*line 2"), (None, "empty or missing in .*line 2")):
        with (tmp_path / "bad.jsonl").open("w") as handle:
            for text in ("a good film", bad, "a bad one"):
                handle.write(json.dumps({"text": text}) + "\n")
        with pytest.raises(DataError, match=message):
            ferrotune.train(task="mlm", train=str(tmp_path / "bad.jsonl"), log="quiet",
                            output_dir=str(tmp_path / "out"))  # fmt: skip


def test_head_modules_of_masked_lm_architectures():
    import transformers
    from ferrotune.training.tasks.masked_lm import head_modules

    small = {"vocab_size": 100, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    bert = transformers.BertForMaskedLM(transformers.BertConfig(hidden_size=16, **small))
    roberta = transformers.RobertaForMaskedLM(transformers.RobertaConfig(hidden_size=16, **small))
    distil = transformers.DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    assert head_modules(bert) == ["cls.predictions.transform"]
    assert head_modules(roberta) == ["lm_head.dense", "lm_head.layer_norm"]
    assert head_modules(transformers.DistilBertForMaskedLM(distil)) == ["vocab_transform", "vocab_layer_norm"]
