"""StreamingLoader on conversations (``messages_column``, ``prompt_column`` + ``completion_column``): LIMA with the
SmolLM2 tokenizer and its ChatML template.

Every row must equal what transformers gives for the same conversation: ``apply_chat_template(tokenize=True,
return_assistant_tokens_mask=True)`` with a template carrying ``{% generation %}`` blocks (the masks the plain
template's message structure gives ferrotune, ``boundaries="characters"``), the labels being the ids where the mask
is 1 and -100 elsewhere. Padded batches are those rows padded with the pad id / -100; packed batches are
``DataCollatorWithFlattening``'s. Streams resume exactly at every batch boundary, ranks share the data without
overlap, and a conversation with nothing to learn is an error naming its file and line, or is dropped and counted.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from conftest import require_data_dir
from test_chat_masks import SMOLLM2_GENERATION

transformers = pytest.importorskip("transformers")

import ferrotune  # noqa: E402
from ferrotune import StreamingLoader  # noqa: E402
from ferrotune.errors import ChatMaskError  # noqa: E402

N_CONVERSATIONS = 48
MAX_LENGTH = 1024
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
def lima_file(tmp_path_factory):
    """The first N_CONVERSATIONS of LIMA, as a JSONL file of ``messages``."""
    path = require_data_dir() / "sft" / "lima.jsonl"
    if not path.is_file():
        pytest.skip(f"LIMA not found at {path}")
    lines = path.read_text(encoding="utf-8").splitlines()[:N_CONVERSATIONS]
    out = tmp_path_factory.mktemp("lima") / "lima.jsonl"
    out.write_text("\n".join(json.dumps({"messages": json.loads(line)["messages"]}) for line in lines) + "\n")
    return out


def conversations(path):
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def expected_rows(tokenizers, lima_file):
    """transformers' ids and labels (ids where the assistant mask is 1) of every conversation, cut to MAX_LENGTH."""
    _, hf = tokenizers
    rows = []
    for chat in conversations(lima_file):
        out = hf.apply_chat_template(chat, chat_template=GENERATION_TEMPLATE, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)  # fmt: skip
        ids, mask = out["input_ids"][:MAX_LENGTH], out["assistant_masks"][:MAX_LENGTH]
        rows.append((tuple(ids), tuple(i if m else -100 for i, m in zip(ids, mask))))
    return rows


def loader(tokenizer, path, **options):
    settings = dict(messages_column="messages", truncation=True, max_length=MAX_LENGTH, return_tensors="np",
                    on_empty="drop")  # fmt: skip
    settings.update(options)
    return StreamingLoader(str(path), tokenizer, **settings)


def padded_rows(batch, pad_id):
    rows = []
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        keep = mask == 1
        assert (ids[~keep] == pad_id).all() and (labels[~keep] == -100).all()
        rows.append((tuple(ids[keep].tolist()), tuple(labels[keep].tolist())))
    return rows


def packed_rows(batch):
    rows = []
    ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    bounds = batch["cu_seq_lens_q"]
    for start, end in zip(bounds[:-1], bounds[1:]):
        assert positions[start:end].tolist() == list(range(end - start))
        assert labels[start] == -100  # nothing predicts a document's first token
        rows.append((tuple(ids[start:end].tolist()), tuple(labels[start:end].tolist())))
    return rows


def test_padded_batches_equal_transformers(tokenizers, lima_file, expected_rows):
    tokenizer, _ = tokenizers
    stream = loader(tokenizer, lima_file, batch_size=5, shuffle=False)
    got = [row for batch in stream for row in padded_rows(batch, tokenizer.pad_token_id)]
    assert got == expected_rows  # in file order, every conversation once
    assert stream.stats["dropped"] == 0 and stream.stats["examples"] == N_CONVERSATIONS


def test_packed_batches_equal_transformers(tokenizers, lima_file, expected_rows):
    tokenizer, _ = tokenizers
    stream = loader(tokenizer, lima_file, packing=True, max_tokens=4096, seed=3)
    got = []
    for batch in stream:
        assert batch["input_ids"].shape[1] <= 4096
        got.extend(packed_rows(batch))
    # The first label of each document is -100 in a pack (it may be learned alone, never here: a system turn).
    expected = [(ids, (-100, *labels[1:])) for ids, labels in expected_rows]
    assert Counter(got) == Counter(expected)


def test_bucketed_token_budget_and_shuffle_keep_every_conversation(tokenizers, lima_file, expected_rows):
    tokenizer, _ = tokenizers
    stream = loader(tokenizer, lima_file, max_tokens=3000, bucketing="length", seed=7)
    got = []
    for batch in stream:
        assert batch["input_ids"].size <= 3000
        got.extend(padded_rows(batch, tokenizer.pad_token_id))
    assert Counter(got) == Counter(expected_rows)


@pytest.mark.parametrize("options", [dict(batch_size=4), dict(packing=True, max_tokens=4096)], ids=["padded", "packed"])
def test_resume_at_every_batch_boundary(tokenizers, lima_file, options):
    tokenizer, _ = tokenizers
    settings = dict(shuffle=True, seed=11, shuffle_buffer=20, num_epochs=2, **options)
    full = list(loader(tokenizer, lima_file, **settings))
    for cut in range(len(full) + 1):
        first = loader(tokenizer, lima_file, **settings)
        iterator = iter(first)
        for _ in range(cut):
            next(iterator)
        state = first.state_dict()
        resumed = loader(tokenizer, lima_file, **settings)
        resumed.load_state_dict(json.loads(json.dumps(state)))
        rest = list(resumed)
        assert len(rest) == len(full) - cut, cut
        for a, b in zip(rest, full[cut:]):
            assert a.keys() == b.keys()
            for key in a:
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (cut, key)


def test_ranks_share_the_conversations(tokenizers, lima_file, expected_rows):
    tokenizer, _ = tokenizers
    got = []
    for rank in (0, 1):
        stream = loader(tokenizer, lima_file, batch_size=3, rank=rank, world_size=2, seed=5)
        got.extend(row for batch in stream for row in padded_rows(batch, tokenizer.pad_token_id))
    assert Counter(got) == Counter(expected_rows)


def test_prompt_and_completion_columns(tokenizers, tmp_path):
    tokenizer, hf = tokenizers
    rows = [
        {"prompt": "What is 2+2?", "completion": "4."},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
         "completion": [{"role": "assistant", "content": "Paris."}]},
    ]  # fmt: skip
    # One file per kind: a JSON column holds strings or lists, not both.
    for kind, chosen in (("strings", rows[:1]), ("messages", rows[1:])):
        path = tmp_path / f"{kind}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in chosen) + "\n")
        stream = StreamingLoader(str(path), tokenizer, prompt_column="prompt", completion_column="completion",
                                 batch_size=8, shuffle=False, return_tensors="np")  # fmt: skip
        check_completions(next(iter(stream)), chosen, hf)


def check_completions(batch, rows, hf):
    for index, row in enumerate(rows):
        prompt = [{"role": "user", "content": row["prompt"]}] if isinstance(row["prompt"], str) else row["prompt"]
        answer = (
            [{"role": "assistant", "content": row["completion"]}]
            if isinstance(row["completion"], str)
            else row["completion"]
        )
        whole = hf.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
        start = len(hf.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)
                    ["input_ids"])  # fmt: skip
        keep = batch["attention_mask"][index] == 1
        assert batch["input_ids"][index][keep].tolist() == whole
        assert batch["labels"][index][keep].tolist() == [-100] * start + whole[start:]


def test_empty_conversation_is_an_error_naming_the_line_or_is_dropped(tokenizers, tmp_path):
    tokenizer, _ = tokenizers
    rows = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": "no answer here"}],
        [{"role": "user", "content": "again"}, {"role": "assistant", "content": "yes"}],
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps({"messages": r}) for r in rows) + "\n")
    with pytest.raises(ChatMaskError, match=r"chats\.jsonl', line 2: the conversation has no assistant"):
        list(loader(tokenizer, path, batch_size=2, on_empty="error"))
    stream = loader(tokenizer, path, batch_size=2, shuffle=False)
    examples = sum(len(batch["input_ids"]) for batch in stream)
    assert examples == 2 and stream.stats["dropped"] == 1


def test_bad_messages_and_arguments_are_refused(tokenizers, tmp_path):
    tokenizer, _ = tokenizers
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n" + json.dumps({"messages": []})
                    + "\n")  # fmt: skip
    with pytest.raises(ferrotune.InputTypeError, match=r"bad\.jsonl', line 2: column 'messages' must hold"):
        list(loader(tokenizer, path, batch_size=2))
    with pytest.raises(ferrotune.InvalidArgumentError, match="exactly one of"):
        StreamingLoader(str(path), tokenizer, messages_column="messages", text_column="messages")
    with pytest.raises(ferrotune.InvalidArgumentError, match="cannot be used with conversations"):
        StreamingLoader(str(path), tokenizer, messages_column="messages", label_column="messages")
    with pytest.raises(ferrotune.InvalidArgumentError, match="loss_on"):
        StreamingLoader(str(path), tokenizer, messages_column="messages", loss_on="completion")
    with pytest.raises(ferrotune.ColumnNotFoundError, match="'conversations'"):
        StreamingLoader(str(path), tokenizer, messages_column="conversations")


def test_dropped_count_survives_a_resume_and_tools_fingerprint(tokenizers, tmp_path):
    tokenizer, _ = tokenizers
    rows = []
    for i in range(12):
        chat = [{"role": "user", "content": f"q{i}"}]
        if i % 3:
            chat.append({"role": "assistant", "content": f"a{i}"})
        rows.append(chat)
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps({"messages": r}) for r in rows) + "\n")

    def get_weather(city: str) -> str:
        """Weather of a city.

        Args:
            city: the city
        """
        return city

    settings = dict(batch_size=2, seed=1, chat_template_kwargs={"tools": [get_weather]})
    full = loader(tokenizer, path, **settings)
    assert sum(1 for _ in full) == 4 and full.stats["dropped"] == 4
    first = loader(tokenizer, path, **settings)
    next(iter(first))
    state = first.state_dict()  # a tool function in the template variables does not break the fingerprint
    resumed = loader(tokenizer, path, **settings)
    resumed.load_state_dict(state)
    assert sum(1 for _ in resumed) == 3 and resumed.stats["dropped"] == 4
    with pytest.raises(ferrotune.InvalidArgumentError, match="options of their own"):
        loader(tokenizer, path, chat_template_kwargs={"max_length": 3})
