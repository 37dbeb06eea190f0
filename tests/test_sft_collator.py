"""``DataCollatorForCompletionOnlyLM`` against TRL 1.16: on LIMA conversations tokenized by ferrotune with the
SmolLM2 tokenizer (assistant masks from ``{% generation %}`` blocks) and on prompt-completion data with
``completion_mask``, the batches equal — keys in order, values, dtypes, shapes — those of TRL's own pipeline:
``SFTTrainer._prepare_dataset`` (which folds ``completion_mask`` / ``assistant_masks`` into ``labels``) followed by
``trl.trainer.sft_trainer.DataCollatorForLanguageModeling``, for every combination of ``padding_free``,
``completion_only_loss``, ``pad_to_multiple_of`` and ``return_position_ids``, and on rows TRL packed (``seq_lengths``).
Then a tiny random Llama trains two steps under transformers' ``Trainer`` with the collator.

TRL is the reference only (it is no dependency of ferrotune): the tests skip without it, and without the shared data.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import pickle
import types

import numpy as np
import pytest
from conftest import DATA_DIR, require_data_dir
from test_chat_masks import SMOLLM2_GENERATION

SMOLLM2 = DATA_DIR / "tokenizers" / "smollm2-135m-instruct"
LIMA = DATA_DIR / "sft" / "lima.jsonl"
# Ten single-turn conversations and three multi-turn ones, cut to MAX_LENGTH tokens (lengths differ, some answers cut).
INDICES = (*range(10), 1000, 1001, 1002)
MAX_LENGTH = 160
BATCH = 4

# SFTConfig (the reference's dataset preparation) warns about a transformers deprecation it does not control.
pytestmark = pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")

# SmolLM2's chat template with {% generation %} blocks around the assistant turns (as benches/bench_sft.py).
GENERATION_TEMPLATE = SMOLLM2_GENERATION  # SmolLM2's template with {% generation %} around assistant turns


def require_sft_data() -> None:
    require_data_dir()
    if not (SMOLLM2 / "tokenizer.json").is_file() or not LIMA.is_file():
        pytest.skip(f"SmolLM2 tokenizer or LIMA (sft/lima.jsonl) not found under {DATA_DIR}")


def require_trl():
    return pytest.importorskip("trl", reason="TRL (the reference) is not installed")


@functools.lru_cache(maxsize=1)
def tokenizer():
    import ferrotune

    return ferrotune.Tokenizer.from_pretrained(SMOLLM2)


@functools.lru_cache(maxsize=1)
def chats() -> list[list[dict]]:
    lines = LIMA.read_text(encoding="utf-8").splitlines()
    return [json.loads(lines[i])["messages"] for i in INDICES]


def _rows(out) -> list[dict]:
    return [{key: list(out[key][i]) for key in out} for i in range(len(out["input_ids"]))]


@functools.cache
def dataset(kind: str) -> tuple[dict, ...]:
    """Tokenized examples, as a user of transformers' Trainer has them:

    - ``conversation``: input_ids, attention_mask, assistant_masks (apply_chat_template with generation blocks);
    - ``prompt_completion``: input_ids, completion_mask (TRL's rule: 1 from where the prompt's tokens and the
      prompt+completion's tokens part ways), the prompt being every turn but the last;
    - ``prompt_completion_assistant``: the same with the assistant_masks of the prompt+completion;
    - ``plain``: input_ids only; ``labels``: input_ids and labels (-100 outside the assistant masks).
    """
    tok = tokenizer()
    kwargs = dict(chat_template=GENERATION_TEMPLATE, return_dict=True, truncation=True, max_length=MAX_LENGTH)
    full = _rows(tok.apply_chat_template(chats(), return_assistant_tokens_mask=True, **kwargs))
    if kind == "conversation":
        return tuple(full)
    if kind == "plain":
        return tuple({"input_ids": row["input_ids"]} for row in full)
    if kind == "labels":
        return tuple(
            {
                "input_ids": row["input_ids"],
                "labels": [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"])],
            }
            for row in full
        )
    prompts = tok.apply_chat_template([c[:-1] for c in chats()], add_generation_prompt=True, **kwargs)["input_ids"]
    examples = []
    for prompt, row in zip(prompts, full):
        ids = row["input_ids"]
        start = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
        example = {"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)}
        if kind == "prompt_completion_assistant":
            example["assistant_masks"] = row["assistant_masks"]
        examples.append(example)
    return tuple(examples)


def sft_config(**kwargs):
    from trl import SFTConfig

    return SFTConfig(output_dir="unused", report_to=[], use_cpu=True, **kwargs)


@functools.cache
def trl_prepared(kind: str, completion_only_loss: bool) -> tuple[dict, ...]:
    """The examples after TRL's dataset preparation (labels built from the masks, the masks dropped)."""
    import datasets
    from trl.trainer.sft_trainer import SFTTrainer

    examples = dataset(kind)
    if kind == "labels":  # TRL leaves a dataset with labels as it is
        return examples
    datasets.disable_progress_bars()
    trainer = types.SimpleNamespace(completion_only_loss=completion_only_loss, _tokenizer=None)
    config = sft_config(max_length=None)
    prepared = SFTTrainer._prepare_dataset(
        trainer, datasets.Dataset.from_list(list(examples)), None, config, False, None, "train"
    )
    return tuple(prepared.to_list())


@functools.lru_cache(maxsize=1)
def trl_packed() -> tuple[dict, ...]:
    """The conversations packed by TRL (best-fit decreasing, 384 tokens): input_ids, labels, seq_lengths."""
    import datasets
    from trl.trainer.sft_trainer import SFTTrainer

    datasets.disable_progress_bars()
    trainer = types.SimpleNamespace(completion_only_loss=None, _tokenizer=None)
    config = sft_config(max_length=384, packing=True, shuffle_dataset=False)
    rows = [{k: v for k, v in row.items() if k != "attention_mask"} for row in dataset("conversation")]
    packed = SFTTrainer._prepare_dataset(trainer, datasets.Dataset.from_list(rows), None, config, True, None, "train")
    rows = packed.to_list()
    assert any(len(row["seq_lengths"]) > 1 for row in rows)
    return tuple(rows)


def batches(examples) -> list[list[dict]]:
    return [list(examples[i : i + BATCH]) for i in range(0, len(examples), BATCH)]


def assert_same(ours: dict, theirs: dict) -> None:
    import torch

    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        if isinstance(expected, torch.Tensor):
            assert isinstance(got, torch.Tensor), key
            assert got.dtype == expected.dtype and got.shape == expected.shape, (key, got.dtype, got.shape, expected)
            assert torch.equal(got, expected), key
        else:
            assert type(got) is type(expected) and got == expected, (key, got, expected)


KINDS = ("conversation", "prompt_completion", "prompt_completion_assistant", "plain", "labels")
OPTIONS = [
    dict(padding_free=padding_free, pad_to_multiple_of=multiple, return_position_ids=positions)
    for padding_free in (False, True)
    for multiple in (None, 8, 64)
    for positions in (False, True)
]


@pytest.mark.parametrize("completion_only_loss", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_trl_pipeline(kind, completion_only_loss):
    require_sft_data()
    require_trl()
    from ferrotune import DataCollatorForCompletionOnlyLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    pad = tokenizer().pad_token_id
    ours_batches = batches(dataset(kind))
    theirs_batches = batches(trl_prepared(kind, completion_only_loss))
    for options in OPTIONS:
        ours = DataCollatorForCompletionOnlyLM(pad, completion_only_loss=completion_only_loss, **options)
        theirs = TRLCollator(pad_token_id=pad, **options)
        for mine, reference in zip(ours_batches, theirs_batches, strict=True):
            assert_same(ours(mine), theirs(reference))


def test_masks_make_the_labels():
    """What the comparison above relies on: the masks do change the labels (so equal batches mean equal masking)."""
    require_sft_data()
    from ferrotune import DataCollatorForCompletionOnlyLM

    pad = tokenizer().pad_token_id
    examples = list(dataset("prompt_completion_assistant"))
    batch = DataCollatorForCompletionOnlyLM(pad, return_tensors="np")(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    learned = labels != -100
    assert learned.any() and (learned < (mask == 1)).any()
    assert (labels[learned] == ids[learned]).all()
    everything = DataCollatorForCompletionOnlyLM(pad, completion_only_loss=False, return_tensors="np")(examples)
    assert (everything["labels"] != -100).sum() >= learned.sum()  # assistant_masks still apply
    plain = DataCollatorForCompletionOnlyLM(pad, return_tensors="np")([{"input_ids": e["input_ids"]} for e in examples])
    assert ((plain["labels"] != -100) == (mask == 1)).all()


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_packed_rows_equal_trl(options):
    """Rows TRL packed: position_ids restart at each document of seq_lengths (padding-free and padded modes)."""
    require_sft_data()
    require_trl()
    from ferrotune import DataCollatorForCompletionOnlyLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    pad = tokenizer().pad_token_id
    for rows in batches(trl_packed()):
        assert_same(
            DataCollatorForCompletionOnlyLM(pad, **options)(rows), TRLCollator(pad_token_id=pad, **options)(rows)
        )


@pytest.mark.parametrize("padding_free", [False, True])
def test_input_formats_and_numpy(padding_free):
    """A dict of lists, a datasets.Dataset, a pyarrow Table and return_tensors="np": the batch of a list of dicts."""
    require_sft_data()
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    from ferrotune import DataCollatorForCompletionOnlyLM

    collator = DataCollatorForCompletionOnlyLM(
        tokenizer().pad_token_id, padding_free=padding_free, pad_to_multiple_of=8
    )
    for kind in ("conversation", "prompt_completion_assistant", "labels"):
        examples = list(dataset(kind))[:BATCH]
        expected = collator(examples)
        columns = {key: [e[key] for e in examples] for key in examples[0]}
        for other in (columns, datasets.Dataset.from_dict(columns), pa.table(columns)):
            assert_same(collator(other), expected)
        as_numpy = collator(examples, return_tensors="np")
        assert list(as_numpy) == list(expected)
        for key, value in as_numpy.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == expected[key].numpy().dtype and (value == expected[key].numpy()).all(), key
            else:
                assert value == expected[key]
    if importlib.util.find_spec("trl") is None:
        return  # rows packed by TRL need TRL (benchmark and test reference only, not installed in CI)
    packed = list(trl_packed())[:BATCH]
    columns = {key: [row[key] for row in packed] for key in packed[0]}
    assert_same(collator(pa.table(columns)), collator(packed))


def test_signature_is_trls():
    """TRL 1.16's arguments, in its order, with its defaults; ferrotune's one addition comes last."""
    require_trl()
    import dataclasses

    from ferrotune import DataCollatorForCompletionOnlyLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    def fields(cls):
        return [(f.name, f.default) for f in dataclasses.fields(cls)]

    assert fields(DataCollatorForCompletionOnlyLM) == [*fields(TRLCollator), ("completion_only_loss", True)]


def test_labels_on_some_examples_as_trl():
    """TRL's collator reads ``example.get("labels", example["input_ids"])``: the others learn every token."""
    require_trl()
    from ferrotune import DataCollatorForCompletionOnlyLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    examples = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5]}, {"input_ids": [6]}]
    for options in OPTIONS:
        assert_same(DataCollatorForCompletionOnlyLM(0, **options)(examples), TRLCollator(0, **options)(examples))


def test_errors_name_the_example_and_key():
    import ferrotune
    from ferrotune import DataCollatorForCompletionOnlyLM

    collator = DataCollatorForCompletionOnlyLM(0)
    good = {"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}
    cases = [
        ([good, {"input_ids": [4, 5], "completion_mask": [0, 1, 1]}], ferrotune.InvalidInputError, "example 1"),
        ([good, {"input_ids": [4, 5]}], ferrotune.InvalidInputError, "example 1 has no 'completion_mask'"),
        ([good, {"completion_mask": [1]}], ferrotune.InvalidInputError, "example 1 has no 'input_ids'"),
        ([{"input_ids": [1, 2.5]}], ferrotune.InputTypeError, "example 0: 'input_ids'"),
        ([{"input_ids": [1, 2], "labels": [1, 2, 3]}], ferrotune.InvalidInputError, "'labels'"),
        ([], ferrotune.EmptyBatchError, "empty"),
    ]
    for examples, error, message in cases:
        with pytest.raises(error, match=message):
            collator(examples)
    packed = [{"input_ids": [1, 2, 3], "seq_lengths": [1, 2]}, {"input_ids": [4, 5], "seq_lengths": [3]}]
    with pytest.raises(ferrotune.InvalidInputError, match=r"example 1: 'seq_lengths' \[3\]"):
        DataCollatorForCompletionOnlyLM(0, padding_free=True)(packed)
    with pytest.raises(ferrotune.InvalidArgumentError, match="not recognized"):
        collator([good], return_tensors="tf")
    with pytest.raises(ferrotune.InvalidArgumentError, match="response_template"):
        DataCollatorForCompletionOnlyLM(" ### Answer:")  # TRL < 0.20's class of this name took a response template
    with pytest.raises(ferrotune.InvalidArgumentError, match="pad_to_multiple_of"):
        DataCollatorForCompletionOnlyLM(0, pad_to_multiple_of=0)([good])


def test_pickles_and_reads_settings_at_each_call():
    """Picklable (DataLoader workers); attributes changed after construction apply (SFTTrainer sets
    return_position_ids this way for sequence parallelism)."""
    from ferrotune import DataCollatorForCompletionOnlyLM

    collator = pickle.loads(pickle.dumps(DataCollatorForCompletionOnlyLM(0, return_tensors="np")))
    examples = [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}]
    assert "position_ids" not in collator(examples)
    collator.return_position_ids = True
    collator.pad_to_multiple_of = 4
    assert collator(examples)["position_ids"].tolist() == [[0, 1, 2, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("padding_free", [False, True])
def test_trainer_smoke(tmp_path, padding_free):
    """transformers' Trainer, a tiny random Llama, two steps on LIMA conversations with assistant masks."""
    require_sft_data()
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from ferrotune import DataCollatorForCompletionOnlyLM

    tok = tokenizer()
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=512)  # fmt: skip
    config = transformers.LlamaConfig(vocab_size=len(tok), **sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    seen = []
    collator = DataCollatorForCompletionOnlyLM(tok.pad_token_id, padding_free=padding_free, pad_to_multiple_of=8)

    def collate(examples):
        batch = collator(examples)
        seen.append(batch)
        return batch

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=BATCH, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=list(dataset("conversation")),
                                   data_collator=collate)  # fmt: skip
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(losses))
    batch = seen[0]
    assert ("attention_mask" in batch) is not padding_free and batch["input_ids"].shape[-1] % 8 == 0
    learned = batch["labels"] != -100
    assert 0 < int(learned.sum()) < int((batch["input_ids"] != tok.pad_token_id).sum())
