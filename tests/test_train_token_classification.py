"""ferrotune train --task token-classification (NER): CoNLL / JSONL reading, the course's label alignment, seqeval's
entity metrics, a short LoRA run on CoNLL-2003, and the errors of bad data."""

from __future__ import annotations

import json
import random
import warnings

import pytest
from conftest import require_data_dir, require_minilm_dir
from train_support import records

# The Hugging Face conll2003 dataset's ner_tags order (the course's label_names).
HF_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def conll_dir():
    path = require_data_dir() / "conll2003"
    if not (path / "train.txt").is_file():
        pytest.skip(f"CoNLL-2003 not found at {path}")
    return path


def conll_sentences(split: str, count: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    from ferrotune.sources import DataFiles

    table = DataFiles(conll_dir() / f"{split}.txt", "conll").read()
    if count is not None:
        table = table.slice(0, count)
    return table.column("tokens").to_pylist(), table.column("ner_tags").to_pylist()


# --------------------------------------------------------------------------------------------------
# Reading CoNLL files


def test_conll_source_reads_sentences_and_lines(tmp_path):
    from ferrotune.sources import DataFiles

    files = DataFiles(conll_dir() / "valid.txt", "conll")
    assert files.columns()[0][1] == ["tokens", "ner_tags"]
    table = files.read()
    assert table.num_rows == 3250  # the HF validation split (DOCSTART lines skipped)
    assert table.column("tokens")[0].as_py()[:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert table.column("ner_tags")[0].as_py()[:3] == ["O", "O", "B-ORG"]
    assert files.where(1) == f"{conll_dir() / 'valid.txt'} line 15"  # the line of the sentence's first word
    train = DataFiles(conll_dir() / "train.txt", "conll").read()
    assert train.num_rows == 14041
    assert sum(len(words) for words in train.column("tokens").to_pylist()) == 203621

    # Tabs, a missing final blank line and a .conll extension.
    path = tmp_path / "small.conll"
    path.write_text("-DOCSTART-\tO\n\nParis\tB-LOC\nis\tO\n\n\nBob\tNNP\tB-PER")
    assert DataFiles(path).read().to_pylist() == [
        {"tokens": ["Paris", "is"], "ner_tags": ["B-LOC", "O"]}, {"tokens": ["Bob"], "ner_tags": ["B-PER"]},
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Label alignment: the course's tokenize_and_align_labels with transformers' tokenizer


def course_align_labels_with_tokens(labels, word_ids):
    """The Hugging Face course (chapter 7, token classification): every sub-token labelled, B- turned into I-."""
    new_labels = []
    current_word = None
    for word_id in word_ids:
        if word_id != current_word:
            current_word = word_id
            label = -100 if word_id is None else labels[word_id]
            new_labels.append(label)
        elif word_id is None:
            new_labels.append(-100)
        else:
            label = labels[word_id]
            if label % 2 == 1:
                label += 1
            new_labels.append(label)
    return new_labels


def first_sub_token_labels(labels, word_ids):
    """transformers' run_ner.py with label_all_tokens=False: the first sub-token only."""
    previous, new_labels = None, []
    for word_id in word_ids:
        new_labels.append(-100 if word_id is None or word_id == previous else labels[word_id])
        previous = word_id
    return new_labels


@pytest.mark.parametrize("label_all_tokens", [False, True])
def test_alignment_equals_the_course(tmp_path, label_all_tokens):
    from ferrotune.training.data import load_task_data
    from ferrotune.training.modeling import load_tokenizer
    from transformers import AutoTokenizer

    model = require_minilm_dir()
    config = _config(tmp_path, label_names=HF_TAGS, max_train_examples=300, label_all_tokens=label_all_tokens,
                     max_length=32)  # fmt: skip
    data = load_task_data(config)
    encoded = data.task.encode(load_tokenizer(model), data.train, config.max_length, config)

    words, tags = conll_sentences("train", 300)
    reference = AutoTokenizer.from_pretrained(model)
    inputs = reference(words, truncation=True, is_split_into_words=True, max_length=32)  # the course's tokenize
    align = course_align_labels_with_tokens if label_all_tokens else first_sub_token_labels
    expected = [align([HF_TAGS.index(t) for t in tags[i]], inputs.word_ids(i)) for i in range(len(words))]
    assert encoded.column("input_ids").to_pylist() == inputs["input_ids"]
    assert encoded.column("labels").to_pylist() == expected
    assert any(len(ids) == 32 for ids in inputs["input_ids"])  # truncation exercised


def test_batches_pad_labels_with_ignored(tmp_path):
    from ferrotune.training.data import build_eval_batches, load_task_data
    from ferrotune.training.modeling import load_tokenizer

    config = _config(tmp_path, max_train_examples=40, max_eval_examples=40, eval_batch_size=16)
    data = load_task_data(config)
    assert data.label_names == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    batches = build_eval_batches(config, data.task, load_tokenizer(require_minilm_dir()), data.eval)
    for _, batch in batches:
        assert batch["labels"].shape == batch["input_ids"].shape
        assert bool((batch["labels"][batch["attention_mask"] == 0] == -100).all())


# --------------------------------------------------------------------------------------------------
# Metrics: seqeval's entity precision / recall / F1 and accuracy


def seqeval_scores(true, predicted):
    from seqeval import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined ratios and non-NE tags warn
        return {
            "precision": metrics.precision_score(true, predicted), "recall": metrics.recall_score(true, predicted),
            "f1": metrics.f1_score(true, predicted), "accuracy": metrics.accuracy_score(true, predicted),
        }  # fmt: skip


def test_entity_scores_equal_seqeval_on_conll():
    pytest.importorskip("seqeval")
    from ferrotune.training.metrics import entity_scores

    _, true = conll_sentences("valid")
    rng = random.Random(0)
    for noise in (0.0, 0.05, 0.3):
        predicted = [[t if rng.random() >= noise else rng.choice(HF_TAGS) for t in s] for s in true]
        assert entity_scores(true, predicted) == pytest.approx(seqeval_scores(true, predicted), abs=1e-12)


@pytest.mark.parametrize(
    ("true", "predicted"),
    [
        ([["O", "O"]], [["O", "O"]]),  # no entity anywhere: 0 (seqeval's zero division)
        ([["B-PER", "I-PER"]], [["O", "O"]]),
        ([["O", "O"]], [["B-PER", "O"]]),
        ([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]),  # I- after O starts an entity
        ([["B-PER", "I-LOC"]], [["B-PER", "I-PER"]]),  # a type change ends one
        ([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]]),  # entities never cross sentences
        ([["S-LOC", "B-ORG", "E-ORG"]], [["S-LOC", "B-ORG", "I-ORG"]]),  # IOBES tags
        ([["B-PER", "B-PER", "I-PER"]], [["B-PER", "I-PER", "I-PER"]]),
        ([["B-A-B", "I-A-B", "PER"]], [["B-A-B", "I-A-B", "O"]]),  # odd tags read as seqeval reads them
        ([[]], [[]]),
    ],
)
def test_entity_scores_equal_seqeval_on_edge_cases(true, predicted):
    pytest.importorskip("seqeval")
    from ferrotune.training.metrics import entity_scores

    if not any(true):
        assert entity_scores(true, predicted) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.0}
        return  # seqeval divides by zero tokens
    assert entity_scores(true, predicted) == pytest.approx(seqeval_scores(true, predicted), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# A short run


def _config(tmp_path, **overrides):
    from ferrotune import TrainConfig

    options = {
        "task": "token-classification", "train": str(conll_dir() / "train.txt"), "eval": str(conll_dir() / "valid.txt"),
        "format": "conll", "output_dir": str(tmp_path / "run"), "max_train_examples": 64, "max_eval_examples": 32,
        "batch_size": 16, "epochs": 1, "log": "quiet", "seed": 3,
    }  # fmt: skip
    options.update(overrides)
    return TrainConfig.from_dict(options).validate()


def test_train_conll_with_lora_writes_entity_f1_and_a_loadable_model(tmp_path):
    pytest.importorskip("peft")
    import ferrotune
    import torch
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    require_minilm_dir()
    result = ferrotune.train(_config(tmp_path, learning_rate=1e-3))
    assert result.status == "finished" and result.steps == 4
    (evaluation,) = records(tmp_path / "run", "eval")
    assert {"eval_loss", "eval_precision", "eval_recall", "eval_f1", "eval_accuracy"} <= set(evaluation)
    assert 0.0 <= evaluation["eval_f1"] <= 1.0 and evaluation["eval_accuracy"] > 0
    task = json.loads((tmp_path / "run" / "ferrotune_task.json").read_text())
    assert task["kind"] == "token-classification" and task["metrics"] == ["precision", "recall", "f1", "accuracy"]

    base = AutoModelForTokenClassification.from_pretrained(require_minilm_dir(), num_labels=9)
    model = PeftModel.from_pretrained(base, tmp_path / "run").eval()
    tokenizer = ferrotune.Tokenizer.from_pretrained(tmp_path / "run")
    batch = tokenizer([["EU", "rejects", "German", "call"]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, len(batch["input_ids"][0]), 9)


def test_label_all_tokens_only_for_token_classification(tmp_path):
    from ferrotune import TrainConfig
    from ferrotune.errors import ConfigError

    with pytest.raises(ConfigError, match="label_all_tokens is for token-classification"):
        TrainConfig(train="x.tsv", label_all_tokens=True).validate()
    with pytest.raises(ConfigError, match="text_pair_column does not apply"):
        TrainConfig(task="token-classification", train="x.jsonl", text_pair_column="b").validate()


# --------------------------------------------------------------------------------------------------
# Bad data: errors naming the file and line


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _load(tmp_path, train, eval=None, **overrides):
    from ferrotune import TrainConfig
    from ferrotune.training.data import load_task_data

    options = {"task": "token-classification", "train": str(train), "output_dir": str(tmp_path / "run")}
    if eval is not None:
        options["eval"] = str(eval)
    return load_task_data(TrainConfig.from_dict({**options, **overrides}).validate())


GOOD = [{"tokens": ["Paris", "is", "big"], "ner_tags": ["B-LOC", "O", "O"]}, {"tokens": ["Bob"], "ner_tags": ["B-PER"]}]


def test_jsonl_with_tag_names_and_with_ids(tmp_path):
    data = _load(tmp_path, _jsonl(tmp_path / "train.jsonl", GOOD))
    assert data.label_names == ["O", "B-LOC", "B-PER"]
    assert data.train.column("labels").to_pylist() == [[1, 0, 0], [2]]
    rows = [{"words": ["Paris", "is"], "tags": [5, 0]}, {"words": ["Bob"], "tags": [1]}]
    data = _load(tmp_path, _jsonl(tmp_path / "ids.jsonl", rows), text_column="words", label_column="tags",
                 label_names=HF_TAGS)  # fmt: skip
    assert data.label_names == HF_TAGS and data.train.column("labels").to_pylist() == [[5, 0], [1]]
    assert data.train.column("inside_labels").to_pylist() == [[6, 0], [2]]  # B-LOC -> I-LOC, B-PER -> I-PER
    with pytest.raises(Exception, match="--label-names"):
        _load(tmp_path, tmp_path / "ids.jsonl", text_column="words", label_column="tags")


def test_errors_name_the_file_and_line(tmp_path):
    from ferrotune.errors import ColumnNotFoundError, DataError, LabelError

    train = _jsonl(tmp_path / "train.jsonl", GOOD)
    bad = _jsonl(tmp_path / "count.jsonl", [GOOD[0], {"tokens": ["a", "b"], "ner_tags": ["O"]}])
    with pytest.raises(DataError, match=r"count\.jsonl line 2: the sentence has 2 words but 1 tags"):
        _load(tmp_path, bad)
    bad = _jsonl(tmp_path / "numbers.jsonl", [{"tokens": [1, 2], "ner_tags": ["O", "O"]}])
    with pytest.raises(DataError, match=r"int64 words, not text: the first in .*numbers\.jsonl line 1"):
        _load(tmp_path, bad)
    bad = _jsonl(tmp_path / "null.jsonl", [GOOD[0], {"tokens": ["a", None], "ner_tags": ["O", "O"]}])
    with pytest.raises(DataError, match=r"null\.jsonl line 2: a word of column 'tokens' is empty"):
        _load(tmp_path, bad)
    bad = _jsonl(tmp_path / "text.jsonl", [{"tokens": "Paris is big", "ner_tags": ["B-LOC", "O", "O"]}])
    with pytest.raises(DataError, match="not a list of words per sentence"):
        _load(tmp_path, bad)
    with pytest.raises(ColumnNotFoundError, match="words column 'words'"):
        _load(tmp_path, train, text_column="words")

    # A tag of the evaluation data that training never saw.
    dev = _jsonl(tmp_path / "dev.jsonl", [GOOD[1], {"tokens": ["IBM"], "ner_tags": ["B-ORG"]}])
    with pytest.raises(LabelError, match=r"\['B-ORG'\] .* not in the label set .*dev\.jsonl line 2"):
        _load(tmp_path, train, dev)

    conll = tmp_path / "bad.conll"
    conll.write_text("Paris B-LOC\nis O\n\nBob\n")
    with pytest.raises(DataError, match=r"bad\.conll' line 4: 'Bob' has no tag"):
        _load(tmp_path, conll)


def test_stop_and_resume_gives_the_uninterrupted_run(tmp_path):
    pytest.importorskip("peft")
    import ferrotune

    require_minilm_dir()
    whole = ferrotune.train(_config(tmp_path / "a", max_eval_examples=16))
    ferrotune.train(_config(tmp_path / "b", max_eval_examples=16, stop_after_steps=2))
    resumed = ferrotune.train(_config(tmp_path / "b", max_eval_examples=16, resume="latest"))
    assert resumed.status == "finished" and resumed.steps == whole.steps == 4
    assert [r["loss"] for r in records(tmp_path / "b" / "run", "train")] == [
        r["loss"] for r in records(tmp_path / "a" / "run", "train")
    ]
    assert resumed.eval_metrics == whole.eval_metrics


# --------------------------------------------------------------------------------------------------
# ferrotune predict: the entities of pipeline("ner", aggregation_strategy="simple")

PREDICT_TEXTS = [
    "EU rejects German call to boycott British lamb.",
    "Peter Blackburn met Werner Zwingmann in Brussels on Thursday 🙂 and flew to New York.",
    "",
    "no entities here at all",
    'José Ángel of Real Madrid C.F. said: "Dvořák\'s 9th!" — in São Paulo, 2024.',
]


def test_predict_equals_the_ner_pipeline(tmp_path):
    import ferrotune
    import numpy as np
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    require_minilm_dir()
    # A full fine-tune (its folder loads in transformers directly), few steps: its tags are mixed, so the grouping
    # of B-/I- tags, "O" and entity types is exercised.
    ferrotune.train(
        _config(tmp_path, lora_r=0, max_train_examples=32, max_eval_examples=8, learning_rate=1e-4, label_names=HF_TAGS)
    )
    run = tmp_path / "run"
    long_text = " ".join(["Angela Merkel visited Paris and London with the United Nations delegation ."] * 30)
    texts = [*PREDICT_TEXTS, long_text]
    found = ferrotune.predict(run, texts, max_length=64)
    assert len(found) == len(texts) and any(found)

    tokenizer = AutoTokenizer.from_pretrained(run)
    tokenizer.model_max_length = 64
    tagger = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(run),
                      tokenizer=tokenizer, aggregation_strategy="simple", stride=16)  # fmt: skip
    expected = [tagger(text) if text else [] for text in texts]
    assert len(found[-1]) > 0  # entities are found past the first window of the long text
    for ours, theirs in zip(found, expected):
        assert [{k: v for k, v in e.items() if k != "score"} for e in ours] == [
            {k: (int(v) if k in ("start", "end") else v) for k, v in e.items() if k != "score"} for e in theirs
        ]
        np.testing.assert_allclose([e["score"] for e in ours], [float(e["score"]) for e in theirs], rtol=1e-5)


def test_predict_command_prints_entities(tmp_path, monkeypatch, capsys):
    import io

    import ferrotune
    from ferrotune.cli import main

    require_minilm_dir()
    ferrotune.train(_config(tmp_path, max_train_examples=16, max_eval_examples=8, label_names=HF_TAGS))
    monkeypatch.setattr("sys.stdin", io.StringIO("EU rejects German call .\nPeter went to Paris\n"))
    assert main(["predict", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ["EU rejects German call .", "Peter went to Paris"]):
        for entity in json.loads(line):
            assert set(entity) == {"entity_group", "score", "word", "start", "end"}
            assert text[entity["start"] : entity["end"]].lower().replace(" ", "") == entity["word"].replace(" ", "")
    # Pairs do not apply to tagging.
    monkeypatch.setattr("sys.stdin", io.StringIO("EU rejects\tGerman call\n"))
    assert main(["predict", str(tmp_path / "run")]) == 2
    assert "no text pairs" in capsys.readouterr().err
