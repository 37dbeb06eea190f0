"""``tokenize_dataset`` on conversations (``messages_column``, ``prompt_column`` + ``completion_column``): LIMA with
the SmolLM2 tokenizer and its ChatML template, as a ``datasets.Dataset``.

The result must equal ``dataset.map`` of transformers' ``apply_chat_template(tokenize=True, return_dict=True,
return_assistant_tokens_mask=True)`` with a template carrying ``{% generation %}`` blocks (the masks the plain
template's message structure gives ferrotune), the labels being the ids where the mask is 1 and -100 elsewhere: the
same columns, features (``input_ids`` int32, ``attention_mask`` int8, ``labels`` int64) and values, in several
chunks, in memory and through cache files. A conversation with nothing to learn is an error naming its dataset row
(also in a later chunk) or its row is left out and reported; the output collates with
``DataCollatorForCompletionOnlyLM``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import require_data_dir
from test_chat_masks import SMOLLM2_GENERATION

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

import ferrotune  # noqa: E402
from ferrotune.errors import ChatMaskError, ChatTemplateError  # noqa: E402

N_CONVERSATIONS = 40
MAX_LENGTH = 1024
BATCH_SIZE = 7  # several chunks of the 40 conversations, the last one short
GENERATION_TEMPLATE = SMOLLM2_GENERATION  # SmolLM2's template with {% generation %} around assistant turns


@pytest.fixture(scope="module")
def smol_dir():
    path = require_data_dir() / "tokenizers" / "smollm2-135m-instruct"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"SmolLM2 tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module")
def tokenizers(smol_dir):
    return ferrotune.Tokenizer.from_pretrained(smol_dir), transformers.AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="module")
def lima():
    """The first N_CONVERSATIONS of LIMA (columns ``id``, ``messages``)."""
    path = require_data_dir() / "sft" / "lima.jsonl"
    if not path.is_file():
        pytest.skip(f"LIMA not found at {path}")
    lines = path.read_text(encoding="utf-8").splitlines()[:N_CONVERSATIONS]
    return datasets.Dataset.from_list([json.loads(line) for line in lines])


def chat(*turns):
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]


@pytest.fixture(scope="module")
def expected(tokenizers, lima):
    """``dataset.map`` of transformers' chat template: ids cut to MAX_LENGTH, labels = ids where the mask is 1."""
    _, hf = tokenizers

    def tokenize(batch):
        out = hf.apply_chat_template(batch["messages"], chat_template=GENERATION_TEMPLATE, tokenize=True,
                                     return_dict=True, return_assistant_tokens_mask=True)  # fmt: skip
        ids = [row[:MAX_LENGTH] for row in out["input_ids"]]
        masks = [row[:MAX_LENGTH] for row in out["assistant_masks"]]
        return {
            "input_ids": ids,
            "attention_mask": [[1] * len(row) for row in ids],
            "labels": [[t if m else -100 for t, m in zip(row, mask)] for row, mask in zip(ids, masks)],
        }

    return lima.map(tokenize, batched=True)


def assert_same_dataset(ours, expected):
    assert ours.features == expected.features
    assert ours.column_names == expected.column_names
    for name in expected.column_names:
        assert ours.data.table.column(name).equals(expected.data.table.column(name)), name


@pytest.mark.parametrize("template", [None, GENERATION_TEMPLATE], ids=["structure", "generation-blocks"])
@pytest.mark.parametrize("kind", ["ferrotune", "transformers"])
def test_equals_map_of_transformers_chat_template(tokenizers, lima, expected, template, kind):
    tokenizer = tokenizers[0] if kind == "ferrotune" else tokenizers[1]
    ours = ferrotune.tokenize_dataset(lima, tokenizer, messages_column="messages", chat_template=template,
                                      max_length=MAX_LENGTH, batch_size=BATCH_SIZE, progress=False)  # fmt: skip
    assert ours.column_names == ["id", "messages", "input_ids", "attention_mask", "labels"]
    assert ours.features["labels"] == datasets.List(datasets.Value("int64"))
    assert_same_dataset(ours, expected)


def test_cache_files_and_cache_key(tokenizers, lima, expected, tmp_path):
    tokenizer, _ = tokenizers
    lima.save_to_disk(tmp_path / "saved")
    on_disk = datasets.load_from_disk(tmp_path / "saved")
    settings = dict(messages_column="messages", max_length=MAX_LENGTH, batch_size=BATCH_SIZE, progress=False)
    cached = ferrotune.tokenize_dataset(on_disk, tokenizer, **settings)
    assert cached.cache_files and Path(cached.cache_files[0]["filename"]).parent.samefile(tmp_path / "saved")
    assert_same_dataset(cached, expected)
    # Other conversation settings write another cache file (the settings are in its key), with other labels.
    last = ferrotune.tokenize_dataset(on_disk, tokenizer, loss_on="last_assistant", **settings)
    assert last.cache_files[0]["filename"] != cached.cache_files[0]["filename"]
    whole = ferrotune.tokenize_dataset(on_disk, tokenizer, loss_on="all", **settings)
    assert whole.cache_files[0]["filename"] not in {c.cache_files[0]["filename"] for c in (cached, last)}
    assert whole["labels"] == whole["input_ids"]
    assert_same_dataset(ferrotune.tokenize_dataset(on_disk, tokenizer, **settings), expected)
    # An explicit cache_file_name, and a selection (indices mapping) of the dataset.
    picked = on_disk.select([3, 1, 4])
    named = ferrotune.tokenize_dataset(picked, tokenizer, cache_file_name=tmp_path / "mine.arrow", **settings)
    assert named.cache_files[0]["filename"] == str(tmp_path / "mine.arrow")
    assert named["input_ids"] == expected.select([3, 1, 4])["input_ids"]


def test_prompt_and_completion_columns(tokenizers):
    tokenizer, hf = tokenizers
    strings = [{"prompt": "What is 2+2?", "completion": "4.", "n": 0}, {"prompt": "Hi", "completion": "Hello!", "n": 1}]
    messages = [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
         "completion": [{"role": "assistant", "content": "Paris."}], "n": 2},
    ]  # fmt: skip
    # One dataset per kind: an Arrow column holds strings or lists, not both.
    for rows in (strings, messages):
        dataset = datasets.Dataset.from_list(rows)
        out = ferrotune.tokenize_dataset(dataset, tokenizer, prompt_column="prompt", completion_column="completion",
                                         batch_size=1, progress=False)  # fmt: skip
        assert out.column_names == ["prompt", "completion", "n", "input_ids", "attention_mask", "labels"]
        for row, got in zip(rows, out):
            prompt = [{"role": "user", "content": row["prompt"]}] if isinstance(row["prompt"], str) else row["prompt"]
            answer = (
                [{"role": "assistant", "content": row["completion"]}]
                if isinstance(row["completion"], str)
                else row["completion"]
            )
            whole = hf.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
            start = len(hf.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)
                        ["input_ids"])  # fmt: skip
            assert got["input_ids"] == whole and got["attention_mask"] == [1] * len(whole)
            assert got["labels"] == [-100] * start + whole[start:]
            assert got["n"] == row["n"]


def chats_with_empty_rows():
    """Ten conversations; rows 5 and 9 (the 2nd and 3rd chunks of 4) have nothing to learn."""
    rows = [chat(f"question {i}", f"answer {i}") for i in range(10)]
    rows[5], rows[9] = chat("no answer here"), chat("nor here")
    return datasets.Dataset.from_dict({"id": list(range(10)), "messages": rows})


def test_conversation_with_nothing_to_learn_names_its_dataset_row(tokenizers, tmp_path):
    tokenizer, _ = tokenizers
    dataset = chats_with_empty_rows()
    with pytest.raises(ChatMaskError, match=r"^dataset row 5: the conversation has no assistant message"):
        ferrotune.tokenize_dataset(dataset, tokenizer, messages_column="messages", batch_size=4, progress=False)
    # Through a cache file: the error leaves no half-written file behind.
    dataset.save_to_disk(tmp_path / "saved")
    with pytest.raises(ChatMaskError, match=r"^dataset row 5: "):
        ferrotune.tokenize_dataset(datasets.load_from_disk(tmp_path / "saved"), tokenizer, batch_size=4,
                                   messages_column="messages", progress=False)  # fmt: skip
    assert not list((tmp_path / "saved").glob("cache-ferrotune-*"))


def test_dropped_rows_are_left_out_and_reported(tokenizers, caplog):
    tokenizer, hf = tokenizers
    dataset = chats_with_empty_rows()
    with caplog.at_level(logging.WARNING, logger="ferrotune.datasets_map"):
        out = ferrotune.tokenize_dataset(dataset, tokenizer, messages_column="messages", on_empty="drop",
                                         batch_size=4, progress=False)  # fmt: skip
    assert out["id"] == [0, 1, 2, 3, 4, 6, 7, 8]  # the kept rows, their columns aligned with their tokens
    for row in out:
        ids = hf.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        assert row["input_ids"] == ids and row["messages"] == dataset[row["id"]]["messages"]
    assert "2 of 10 conversations had nothing to learn" in caplog.text and "dataset rows 5, 9" in caplog.text
    # keep_columns, and a max_length cutting every answer away: all rows dropped, the columns and types stay.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ferrotune.datasets_map"):
        empty = ferrotune.tokenize_dataset(dataset, tokenizer, messages_column="messages", on_empty="drop",
                                           max_length=8, keep_columns=["id"], batch_size=4, progress=False)  # fmt: skip
    assert empty.num_rows == 0 and empty.column_names == ["id", "input_ids", "attention_mask", "labels"]
    assert empty.features["input_ids"] == datasets.List(datasets.Value("int32"))
    assert "10 of 10" in caplog.text


def test_bad_rows_and_template_errors_name_the_dataset_row(tokenizers):
    tokenizer, _ = tokenizers
    rows = [chat(f"question {i}", f"answer {i}") for i in range(6)]
    bad = datasets.Dataset.from_dict({"messages": rows[:4] + [[]] + rows[5:]})
    with pytest.raises(ferrotune.InputTypeError, match=r"^dataset row 4: column 'messages' must hold"):
        ferrotune.tokenize_dataset(bad, tokenizer, messages_column="messages", batch_size=3, progress=False)
    rows[4] = chat("boom", "answer")
    template = (
        "{% if messages[0]['content'] == 'boom' %}{{ raise_exception('no boom') }}{% endif %}" + GENERATION_TEMPLATE
    )
    with pytest.raises(ChatTemplateError, match=r"^dataset row 4: no boom"):
        ferrotune.tokenize_dataset(datasets.Dataset.from_dict({"messages": rows}), tokenizer, batch_size=3,
                                   messages_column="messages", chat_template=template, progress=False)  # fmt: skip


def test_arguments_are_checked(tokenizers, lima):
    tokenizer, _ = tokenizers
    with pytest.raises(ferrotune.InvalidArgumentError, match="exactly one of"):
        ferrotune.tokenize_dataset(lima, tokenizer, "messages", messages_column="messages")
    with pytest.raises(ferrotune.InvalidArgumentError, match="exactly one of"):
        ferrotune.tokenize_dataset(lima, tokenizer)
    with pytest.raises(ferrotune.InvalidArgumentError, match="exactly one of"):
        ferrotune.tokenize_dataset(lima, tokenizer, prompt_column="messages")
    with pytest.raises(ferrotune.InvalidArgumentError, match="loss_on"):
        ferrotune.tokenize_dataset(lima, tokenizer, messages_column="messages", loss_on="completion")
    with pytest.raises(ferrotune.InvalidArgumentError, match="on_empty"):
        ferrotune.tokenize_dataset(lima, tokenizer, messages_column="messages", on_empty="skip")
    with pytest.raises(ferrotune.InvalidArgumentError, match="for conversations"):
        ferrotune.tokenize_dataset(lima, tokenizer, "id", loss_on="all")
    with pytest.raises(ferrotune.InvalidArgumentError, match="text_pair_column"):
        ferrotune.tokenize_dataset(lima, tokenizer, text_pair_column="id", messages_column="messages")
    with pytest.raises(ferrotune.ColumnNotFoundError, match="messages_column='chats'.*'id', 'messages'"):
        ferrotune.tokenize_dataset(lima, tokenizer, messages_column="chats")


def test_output_collates_with_completion_only_collator(tokenizers, lima):
    tokenizer, _ = tokenizers
    out = ferrotune.tokenize_dataset(lima, tokenizer, messages_column="messages", max_length=MAX_LENGTH,
                                     batch_size=BATCH_SIZE, progress=False)  # fmt: skip
    examples = out.select_columns(["input_ids", "attention_mask", "labels"]).select(range(4)).to_list()
    collator = ferrotune.DataCollatorForCompletionOnlyLM(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=8)
    batch = collator(examples)
    width = max(len(e["input_ids"]) for e in examples)
    assert tuple(batch["input_ids"].shape) == (4, -(-width // 8) * 8)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == example["input_ids"]
        assert batch["labels"][row, :n].tolist() == example["labels"]
        assert (batch["labels"][row, n:] == -100).all() and batch["attention_mask"][row].sum() == n
        assert np.any(np.asarray(example["labels"]) != -100)
