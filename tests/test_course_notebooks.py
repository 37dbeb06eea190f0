"""The Hugging Face course's token-level notebooks (chapter 7: token classification, masked-LM domain adaptation,
extractive question answering), their code copied as the course writes it, run twice on real data slices: once with
transformers' tokenizer and collators, once with ferrotune's (only the imports differ). The preprocessed datasets and
the batches must be identical, and transformers' ``Trainer`` must train on both with the same losses."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
from conftest import require_data_dir, require_minilm_dir


def _libraries(which: str):
    """(AutoTokenizer-like loader, collators module) of one side: the only lines a user changes."""
    if which == "transformers":
        import transformers

        return transformers.AutoTokenizer, transformers
    import ferrotune

    return ferrotune.Tokenizer, ferrotune


def _trainer_losses(model_factory, dataset, collator, tmp_path, steps: int = 2, **extra) -> list[float]:
    import transformers

    transformers.set_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-4, max_steps=steps,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_num_workers=0, **extra,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model_factory(), args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


# --------------------------------------------------------------------------------------------------
# Chapter 7.2: token classification (CoNLL-2003)


def _conll(count: int):
    from ferrotune.sources import DataFiles

    path = require_data_dir() / "conll2003" / "train.txt"
    if not path.is_file():
        pytest.skip(f"CoNLL-2003 not found at {path}")
    table = DataFiles(path, "conll").read().slice(0, count)
    label_names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    tags = [[label_names.index(tag) for tag in sentence] for sentence in table.column("ner_tags").to_pylist()]
    return table.column("tokens").to_pylist(), tags, label_names


def _token_classification_notebook(which: str, words, tags):
    import datasets

    AutoTokenizer, library = _libraries(which)
    raw_datasets = datasets.Dataset.from_dict({"tokens": words, "ner_tags": tags})
    # ---- the course's code, unchanged
    tokenizer = AutoTokenizer.from_pretrained(str(require_minilm_dir()))

    def align_labels_with_tokens(labels, word_ids):
        new_labels = []
        current_word = None
        for word_id in word_ids:
            if word_id != current_word:
                # Start of a new word!
                current_word = word_id
                label = -100 if word_id is None else labels[word_id]
                new_labels.append(label)
            elif word_id is None:
                # Special token
                new_labels.append(-100)
            else:
                # Same word as previous token
                label = labels[word_id]
                # If the label is B-XXX we change it to I-XXX
                if label % 2 == 1:
                    label += 1
                new_labels.append(label)
        return new_labels

    def tokenize_and_align_labels(examples):
        tokenized_inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
        all_labels = examples["ner_tags"]
        new_labels = []
        for i, labels in enumerate(all_labels):
            word_ids = tokenized_inputs.word_ids(i)
            new_labels.append(align_labels_with_tokens(labels, word_ids))
        tokenized_inputs["labels"] = new_labels
        return tokenized_inputs

    tokenized_datasets = raw_datasets.map(
        tokenize_and_align_labels, batched=True, remove_columns=raw_datasets.column_names
    )
    data_collator = library.DataCollatorForTokenClassification(tokenizer=tokenizer)
    batch = data_collator([tokenized_datasets[i] for i in range(2)])
    return tokenized_datasets, data_collator, batch


def test_token_classification_notebook(tmp_path):
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    words, tags, label_names = _conll(48)
    reference, reference_collator, reference_batch = _token_classification_notebook("transformers", words, tags)
    ours, our_collator, our_batch = _token_classification_notebook("ferrotune", words, tags)
    assert ours.to_dict() == reference.to_dict()
    assert set(our_batch) == set(reference_batch)
    for key in reference_batch:
        assert (
            our_batch[key].dtype == reference_batch[key].dtype
            and our_batch[key].tolist() == reference_batch[key].tolist()
        ), key

    def model():
        return transformers.AutoModelForTokenClassification.from_pretrained(
            str(require_minilm_dir()), id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
        )  # fmt: skip

    expected = _trainer_losses(model, reference, reference_collator, tmp_path / "hf")
    got = _trainer_losses(model, ours, our_collator, tmp_path / "ft")
    assert len(got) == 2 and got == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Chapter 7.3: fine-tuning a masked language model (IMDB)


def _imdb(count: int) -> list[str]:
    import json

    path = require_data_dir() / "imdb" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"IMDB not found at {path}")
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == count:
                break
    return texts


def _masked_lm_notebook(which: str, texts: list[str], **collator_options):
    import datasets

    AutoTokenizer, library = _libraries(which)
    imdb_dataset = datasets.Dataset.from_dict({"text": texts, "label": [0] * len(texts)})
    # ---- the course's code, unchanged
    tokenizer = AutoTokenizer.from_pretrained(str(require_minilm_dir()))

    def tokenize_function(examples):
        result = tokenizer(examples["text"])
        if tokenizer.is_fast:
            result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]
        return result

    tokenized_datasets = imdb_dataset.map(tokenize_function, batched=True, remove_columns=["text", "label"])
    chunk_size = 128

    def group_texts(examples):
        # Concatenate all texts
        concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
        # Compute length of concatenated texts
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        # We drop the last chunk if it's smaller than chunk_size
        total_length = (total_length // chunk_size) * chunk_size
        # Split by chunks of max_len
        result = {
            k: [t[i : i + chunk_size] for i in range(0, total_length, chunk_size)]
            for k, t in concatenated_examples.items()
        }
        # Create a new labels column
        result["labels"] = result["input_ids"].copy()
        return result

    lm_datasets = tokenized_datasets.map(group_texts, batched=True)
    data_collator = library.DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15,
                                                            **collator_options)  # fmt: skip
    return lm_datasets, data_collator


def test_masked_lm_notebook(tmp_path):
    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    texts = _imdb(24)
    reference, reference_collator = _masked_lm_notebook("transformers", texts)
    # ferrotune draws masks from its own (faster) RNG by default; rng="torch" draws them as transformers does.
    ours, our_collator = _masked_lm_notebook("ferrotune", texts, rng="torch")
    assert ours.to_dict() == reference.to_dict()
    assert len(ours) > 8

    samples = [{k: v for k, v in reference[i].items() if k != "word_ids"} for i in range(2)]
    torch.manual_seed(0)
    expected = reference_collator(samples)
    torch.manual_seed(0)
    got = our_collator(samples)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key

    def model():
        return transformers.AutoModelForMaskedLM.from_pretrained(str(require_minilm_dir()))

    plain = ours.remove_columns(["word_ids"])
    expected_losses = _trainer_losses(model, reference.remove_columns(["word_ids"]), reference_collator, tmp_path / "a")
    got_losses = _trainer_losses(model, plain, our_collator, tmp_path / "b")
    assert len(got_losses) == 2 and all(math.isfinite(x) for x in got_losses)
    assert got_losses == pytest.approx(expected_losses, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Chapter 7.7: question answering (SQuAD): preprocessing and the post-processing inputs


def _squad(count: int) -> dict[str, list]:
    import json

    path = require_data_dir() / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"SQuAD not found at {path}")
    rows = collections.defaultdict(list)
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows["id"].append(qa["id"])
                rows["title"].append(article["title"])
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append({
                    "text": [a["text"] for a in qa["answers"]],
                    "answer_start": [a["answer_start"] for a in qa["answers"]],
                })  # fmt: skip
                if len(rows["id"]) == count:
                    return dict(rows)
    return dict(rows)


def _question_answering_notebook(which: str, rows: dict[str, list]):
    import datasets

    AutoTokenizer, library = _libraries(which)
    raw_datasets = datasets.Dataset.from_dict(rows)
    # ---- the course's code, unchanged (max_length shortened so that contexts overflow into several windows)
    tokenizer = AutoTokenizer.from_pretrained(str(require_minilm_dir()))
    max_length = 128
    stride = 48

    def preprocess_training_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(
            questions,
            examples["context"],
            max_length=max_length,
            truncation="only_second",
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )

        offset_mapping = inputs.pop("offset_mapping")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        answers = examples["answers"]
        start_positions = []
        end_positions = []

        for i, offset in enumerate(offset_mapping):
            sample_idx = sample_map[i]
            answer = answers[sample_idx]
            start_char = answer["answer_start"][0]
            end_char = answer["answer_start"][0] + len(answer["text"][0])
            sequence_ids = inputs.sequence_ids(i)

            # Find the start and end of the context
            idx = 0
            while sequence_ids[idx] != 1:
                idx += 1
            context_start = idx
            while sequence_ids[idx] == 1:
                idx += 1
            context_end = idx - 1

            # If the answer is not fully inside the context, label is (0, 0)
            if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
                start_positions.append(0)
                end_positions.append(0)
            else:
                # Otherwise it's the start and end token positions
                idx = context_start
                while idx <= context_end and offset[idx][0] <= start_char:
                    idx += 1
                start_positions.append(idx - 1)

                idx = context_end
                while idx >= context_start and offset[idx][1] >= end_char:
                    idx -= 1
                end_positions.append(idx + 1)

        inputs["start_positions"] = start_positions
        inputs["end_positions"] = end_positions
        return inputs

    def preprocess_validation_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(
            questions,
            examples["context"],
            max_length=max_length,
            truncation="only_second",
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )

        sample_map = inputs.pop("overflow_to_sample_mapping")
        example_ids = []

        for i in range(len(inputs["input_ids"])):
            sample_idx = sample_map[i]
            example_ids.append(examples["id"][sample_idx])

            sequence_ids = inputs.sequence_ids(i)
            offset = inputs["offset_mapping"][i]
            inputs["offset_mapping"][i] = [o if sequence_ids[k] == 1 else None for k, o in enumerate(offset)]

        inputs["example_id"] = example_ids
        return inputs

    train_dataset = raw_datasets.map(
        preprocess_training_examples, batched=True, remove_columns=raw_datasets.column_names
    )
    validation_dataset = raw_datasets.map(
        preprocess_validation_examples, batched=True, remove_columns=raw_datasets.column_names
    )
    batch = library.default_data_collator([train_dataset[i] for i in range(3)])
    return train_dataset, validation_dataset, batch


def test_question_answering_notebook(tmp_path):
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    rows = _squad(40)
    reference_train, reference_validation, reference_batch = _question_answering_notebook("transformers", rows)
    ours_train, ours_validation, our_batch = _question_answering_notebook("ferrotune", rows)
    assert len(reference_train) > len(rows["id"])  # contexts overflow into several windows
    assert ours_train.to_dict() == reference_train.to_dict()
    assert ours_validation.to_dict() == reference_validation.to_dict()
    assert any(start > 0 for start in reference_train["start_positions"])
    assert any(start == 0 for start in reference_train["start_positions"])  # windows without the answer
    for key in reference_batch:
        assert our_batch[key].dtype == reference_batch[key].dtype, key
        assert np.array_equal(our_batch[key].numpy(), reference_batch[key].numpy()), key

    def model():
        return transformers.AutoModelForQuestionAnswering.from_pretrained(str(require_minilm_dir()))

    _, library = _libraries("ferrotune")
    expected = _trainer_losses(model, reference_train, transformers.default_data_collator, tmp_path / "a")
    got = _trainer_losses(model, ours_train, library.default_data_collator, tmp_path / "b")
    assert len(got) == 2 and got == pytest.approx(expected, rel=1e-5)
