"""Chat supervised fine-tuning (``--task sft``) on LIMA conversations with tiny RANDOM Llama / Qwen2 models built from
configs (no pretrained chat model is reachable here: only the mechanics are checked, never quality): the labels are
transformers' assistant masks, packed documents do not see each other, training runs, reloads and resumes exactly."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import DATA_DIR, require_data_dir
from train_support import records

pytest.importorskip("peft")

SMOLLM2 = DATA_DIR / "tokenizers" / "smollm2-135m-instruct"
LIMA = DATA_DIR / "sft" / "lima.jsonl"
BOUNDARY = (53, 267)  # LIMA conversations whose answer starts with a token spanning "assistant\n" and the answer
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def require_sft_data() -> None:
    require_data_dir()
    if not (SMOLLM2 / "tokenizer.json").is_file() or not LIMA.is_file():
        pytest.skip(f"SmolLM2 tokenizer or LIMA not found under {DATA_DIR}")


def lima_lines(indices) -> list[str]:
    lines = LIMA.read_text(encoding="utf-8").splitlines()
    return [lines[i] for i in indices]


def write_lines(path, lines) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def tiny_model(folder, arch: str = "llama"):
    """A tiny random causal LM with the SmolLM2 tokenizer (and its chat template) saved in ``folder``."""
    import ferrotune
    import torch
    import transformers

    vocab = len(ferrotune.Tokenizer.from_pretrained(SMOLLM2))
    sizes = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=512)
    else:
        config = transformers.LlamaConfig(**sizes) if arch == "llama" else transformers.Qwen2Config(**sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        shutil.copyfile(SMOLLM2 / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    require_sft_data()
    return tiny_model(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def lima(tmp_path_factory):
    """A training slice (the first 40 conversations and the two boundary cases) and an evaluation slice."""
    require_sft_data()
    folder = tmp_path_factory.mktemp("lima")
    train = write_lines(folder / "train.jsonl", lima_lines([*range(40), *BOUNDARY]))
    evaluation = write_lines(folder / "eval.jsonl", lima_lines(range(1000, 1012)))
    return train, evaluation


def options(model, train, evaluation, output_dir, **overrides) -> dict:
    values = {"task": "sft", "model": str(model), "train": train, "eval": evaluation, "max_length": 128,
              "batch_size": 4, "epochs": 1, "drop_empty": True, "output_dir": str(output_dir), "log": "quiet",
              "seed": 3}  # fmt: skip
    return {**values, **overrides}


def test_labels_are_transformers_assistant_masks(llama, lima):
    """Each kept conversation's labels are its tokens where transformers' assistant mask (SmolLM2's template with
    {% generation %} around each assistant turn) is 1, cut at --max-length, -100 elsewhere and on the first token;
    conversations left with no assistant token are counted."""
    import transformers
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import load_task_data
    from test_chat_masks import SMOLLM2_GENERATION

    config = TrainConfig(**options(llama, lima[0], None, "unused", max_length=256)).validate()
    data = load_task_data(config)
    chats = [json.loads(line)["messages"] for line in lima_lines([*range(40), *BOUNDARY])]
    hf = transformers.AutoTokenizer.from_pretrained(SMOLLM2)
    expected = hf.apply_chat_template(chats, chat_template=SMOLLM2_GENERATION, return_dict=True,
                                      return_assistant_tokens_mask=True)  # fmt: skip
    ids, labels = [], []
    for tokens, mask in zip(expected["input_ids"], expected["assistant_masks"]):
        tokens, mask = tokens[:256], mask[:256]
        if any(mask):
            ids.append(tokens)
            labels.append([-100] + [t if m else -100 for t, m in zip(tokens[1:], mask[1:])])
    assert data.dropped == {"train": len(chats) - len(ids)} and data.dropped["train"] > 0
    assert data.train.column("input_ids").to_pylist() == ids
    assert data.train.column("labels").to_pylist() == labels
    # --chat-template: the same template with {% generation %} blocks gives the same examples.
    template = llama.parent / "smollm2-generation.jinja"
    template.write_text(SMOLLM2_GENERATION, encoding="utf-8")
    config = TrainConfig(**options(llama, lima[0], None, "unused", max_length=256, chat_template=str(template)))
    assert load_task_data(config.validate()).train.equals(data.train)


def test_prompt_completion_columns(llama, tmp_path):
    """String prompts and completions are one user and one assistant message; the loss is on the completion only
    (with an earlier assistant turn in a message-list prompt, that turn is not learned)."""
    import ferrotune
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import load_task_data

    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "Name a colour."}]  # fmt: skip
    rows = [{"q": "What is 2+2?", "a": "4"}, {"q": earlier, "a": [{"role": "assistant", "content": "Blue."}]}]
    path = write_lines(tmp_path / "pc.jsonl", [json.dumps(row) for row in rows[:1]])
    path2 = write_lines(tmp_path / "pc2.jsonl", [json.dumps(row) for row in rows[1:]])
    tokenizer = ferrotune.Tokenizer.from_pretrained(SMOLLM2)
    for file, row in ((path, rows[0]), (path2, rows[1])):
        config = TrainConfig(task="sft", model=str(llama), train=file, prompt_column="q", completion_column="a")
        table = load_task_data(config.validate()).train
        prompt = row["q"] if isinstance(row["q"], list) else [{"role": "user", "content": row["q"]}]
        answer = row["a"][0]["content"] if isinstance(row["a"], list) else row["a"]
        start = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"])
        ids, labels = table.column("input_ids")[0].as_py(), table.column("labels")[0].as_py()
        assert labels == [-100] * start + ids[start:]
        assert tokenizer.decode(ids[start:]) == answer + "<|im_end|>\n"


@pytest.mark.parametrize("arch,attention", [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa"), ("gpt2", "sdpa")])
def test_packed_documents_do_not_see_each_other(llama, lima, tmp_path, arch, attention):
    """Each conversation's logits in a packed row equal its logits alone (float32), and the packed loss is the sum of
    the conversations' own losses: no attention and no prediction across documents. Without the task's
    use_cache=False, transformers would not find the documents from the position ids."""
    import torch
    import transformers
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import load_task_data, model_inputs
    from ferrotune.training.tasks.sft import ConversationBatches

    folder = llama if arch == "llama" else tiny_model(tmp_path, arch)
    # Short conversations (under 350 characters) and long ones cut at 256 tokens, packed together.
    short = [line for line in LIMA.read_text(encoding="utf-8").splitlines()
             if sum(len(m["content"]) for m in json.loads(line)["messages"]) < 350][:8]  # fmt: skip
    train = write_lines(tmp_path / "mixed.jsonl", [*short, *lima_lines([0, 1, 2, 53])])
    config = TrainConfig(**options(folder, train, None, "unused", max_length=256, batch_size=2)).validate()
    data = load_task_data(config)
    task = data.task
    loader = ConversationBatches(data.train, 2, 256, pad_id=2, seed=0)

    def starts_of(batch):  # where each document (and the padding) of each row starts
        return [torch.nonzero(row == 0).flatten().tolist() for row in batch["position_ids"]]

    batch = max(loader, key=lambda b: max(len(s) for s in starts_of(b)))  # the batch with the most packed
    batch = task.prepare_batch(batch, "cpu")
    starts = starts_of(batch)
    assert "attention_mask" not in batch and max(len(s) for s in starts) >= 3  # two documents or more in a row

    def load(configure: bool):
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention,
                                                                  dtype=torch.float32).eval()  # fmt: skip
        if configure:
            task.configure_model(model, config)
        return model

    model, plain = load(True), load(False)
    projections = {"gpt2": ["c_attn", "c_proj", "c_fc"]}.get(arch, LLAMA_PROJECTIONS)
    assert task.lora_targets(model) == projections  # sft's default LoRA targets: every attention / MLP projection
    with torch.no_grad():
        packed = model(**model_inputs(batch)).logits
        unisolated = plain(**model_inputs(batch)).logits
        total = torch.zeros(())
        for r, row_starts in enumerate(starts):
            bounds = [*row_starts, batch["input_ids"].shape[1]]
            for d, (start, end) in enumerate(zip(bounds, bounds[1:])):
                ids, labels = batch["input_ids"][r : r + 1, start:end], batch["labels"][r : r + 1, start:end]
                alone = model(input_ids=ids).logits
                torch.testing.assert_close(packed[r : r + 1, start:end], alone, atol=1e-5, rtol=1e-5)
                if d > 0:
                    assert (unisolated[r : r + 1, start:end] - alone).abs().max() > 1e-3
                total += task.loss(alone, labels)
        torch.testing.assert_close(task.loss(packed, batch["labels"]), total, rtol=1e-5, atol=1e-4)


def test_train_reload_and_drop_counts(llama, lima, tmp_path):
    """A short LoRA run on LIMA: the loss falls, every projection is adapted, the dropped conversations are counted in
    the result and metrics.jsonl, and the adapter reloads with PeftModel.from_pretrained to the run's eval loss."""
    import ferrotune
    import torch
    import transformers
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import build_eval_batches, load_task_data
    from peft import PeftModel

    out = tmp_path / "run"
    result = ferrotune.train(**options(llama, *lima, out, learning_rate=1e-2, max_train_examples=24, epochs=2))
    assert result.status == "finished" and result.steps >= 8
    losses = [r["loss"] for r in records(out, "train")]
    assert sum(losses[-2:]) < sum(losses[:2]) - 0.1, losses
    # Conversations whose answers start after 128 tokens are left out, counted (the same counts as the data's).
    assert result.dropped["train"] > 0 and result.dropped["eval"] > 0
    summary = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "summary"]
    assert (summary[-1]["dropped_train"], summary[-1]["dropped_eval"]) == (result.dropped["train"],
                                                                          result.dropped["eval"])  # fmt: skip
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and sorted(adapter["target_modules"]) == sorted(LLAMA_PROJECTIONS)

    base = transformers.AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    config = TrainConfig(**options(llama, *lima, out, max_train_examples=24)).validate()
    data = load_task_data(config)
    assert data.dropped == result.dropped
    tokenizer = ferrotune.Tokenizer.from_pretrained(out)
    summed = items = 0
    with torch.no_grad():
        for _, batch in build_eval_batches(config, data.task, tokenizer, data.eval):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            summed += data.task.loss(logits, batch["labels"]).item()
            items += data.task.loss_items(batch)
    assert summed / items == pytest.approx(result.eval_metrics["eval_loss"], rel=1e-5)
    assert result.eval_metrics["eval_perplexity"] == pytest.approx(2.718281828 ** result.eval_metrics["eval_loss"])


def test_stop_and_resume_gives_the_uninterrupted_run(llama, lima, tmp_path):
    import ferrotune

    small = {"max_train_examples": 10, "max_eval_examples": 4, "batch_size": 2, "epochs": 2, "learning_rate": 5e-3}
    whole = ferrotune.train(**options(llama, *lima, tmp_path / "a", **small))
    ferrotune.train(**options(llama, *lima, tmp_path / "b", stop_after_steps=3, **small))
    resumed = ferrotune.train(**options(llama, *lima, tmp_path / "b", resume="latest", **small))
    assert resumed.status == "finished" and resumed.steps == whole.steps > 3
    losses = {run: [r["loss"] for r in records(tmp_path / run, "train")] for run in "ab"}
    assert losses["a"] == losses["b"]
    assert resumed.eval_metrics == whole.eval_metrics


def test_padded_batches_and_gradient_checkpointing(llama, lima, tmp_path):
    """--no-packing pads conversations (each step's loss is then the same tokens' mean as packed rows give for the
    same conversations); gradient checkpointing changes no loss."""
    import ferrotune

    small = {"max_train_examples": 8, "eval": None, "batch_size": 2, "stop_after_steps": 2}
    plain = ferrotune.train(**options(llama, *lima, tmp_path / "a", packing=False, **small))
    checkpointed = ferrotune.train(**options(llama, *lima, tmp_path / "b", packing=False, gradient_checkpointing=True,
                                             **small))  # fmt: skip
    assert plain.steps == checkpointed.steps == 2
    first, second = (records(tmp_path / run, "train") for run in "ab")
    assert [r["loss"] for r in first] == pytest.approx([r["loss"] for r in second], rel=1e-5)
    assert all(r["pad_fraction"] == 0 for r in first)  # the first 8 conversations are all cut at 128 tokens
    from ferrotune.training import TrainConfig
    from ferrotune.training.modeling import build_model, load_tokenizer
    from ferrotune.training.tasks import task_for

    config = TrainConfig(**options(llama, *lima, tmp_path / "c", gradient_checkpointing=True)).validate()
    model = build_model(config, task_for("sft"), llama, None, load_tokenizer(llama))
    assert model.get_base_model().is_activation_checkpointing
    short = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}]
    import pyarrow as pa
    from ferrotune.training.tasks.sft import ConversationBatches

    for packing, keys in ((False, {"input_ids", "attention_mask", "labels"}),
                          (True, {"input_ids", "position_ids", "labels", "real_tokens"})):  # fmt: skip
        batch = next(iter(ConversationBatches(pa.Table.from_pylist(short), 2, 8, 0, seed=1, packing=packing)))
        assert set(batch) == keys
        if packing:  # one row: both conversations (in the epoch's order), positions restarting at each
            assert sorted(batch["position_ids"].tolist()[0]) == [0, 0, 1, 1, 2] and int(batch["real_tokens"]) == 5
        else:  # right padding, labels -100 on it
            assert batch["attention_mask"].sum().item() == 5 and (batch["labels"] == -100).sum().item() == 3


def test_drop_empty_errors_and_refused_options(llama, lima, tmp_path):
    from ferrotune.cli import main
    from ferrotune.errors import ConfigError, DataError
    from ferrotune.training import TrainConfig
    from ferrotune.training.data import load_task_data

    # Without --drop-empty: an error naming the file and line of the first conversation without a token to learn.
    config = TrainConfig(**options(llama, *lima, tmp_path / "x", drop_empty=False)).validate()
    with pytest.raises(DataError, match=r"train\.jsonl line \d+: the conversation has no token to learn .*--drop-emp"):
        load_task_data(config)
    no_answer = write_lines(tmp_path / "q.jsonl", [json.dumps({"messages": [{"role": "user", "content": "hi"}]})])
    with pytest.raises(DataError, match=r"q\.jsonl line 1: .*it has no assistant message"):
        load_task_data(TrainConfig(task="sft", model=str(llama), train=no_answer).validate())
    malformed = [
        ({"messages": []}, "is empty or missing in .*bad.jsonl line 2"),
        ({"messages": [{"content": "x"}]}, "bad.jsonl line 2: a message of column 'messages' has no role"),
    ]
    for row, message in malformed:
        good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
        path = write_lines(tmp_path / "bad.jsonl", [json.dumps(good), json.dumps(row)])
        with pytest.raises(DataError, match=message):
            load_task_data(TrainConfig(task="sft", model=str(llama), train=path).validate())
    assert main(["train", "--task", "sft", "--model", str(llama), "--train", lima[0], "--max-length", "128",
                 "--output-dir", str(tmp_path / "cli")]) == 2  # fmt: skip
    # Options of sft refused elsewhere, and other tasks' options refused by sft.
    for bad in ({"loss_on": "all"}, {"drop_empty": True}, {"messages_column": "m"}):
        with pytest.raises(ConfigError, match="for sft, not classification"):
            TrainConfig(task="classification", train=lima[0], **bad).validate()
    refusals = [({"text_column": "text"}, "text_column does not apply"),
                ({"prompt_column": "q"}, "go together"),
                ({"loss_on": "completion"}, "needs --prompt-column"),
                ({"loss_on": "assistants"}, "loss_on must be one of"),
                ({"model": None}, "sft needs --model"),
                ({"chat_template": str(tmp_path / "none.jinja")}, "is not a file")]  # fmt: skip
    for bad, message in refusals:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**{"task": "sft", "model": str(llama), "train": lima[0], **bad}).validate()


def test_a_token_spanning_the_answer_edge():
    """LIMA 53 and 267: the answer starts with whitespace that merges with the template's "assistant\\n" into one
    token, so the prompt's tokens are not a prefix of the conversation's: tokenize_conversations refuses by default,
    and boundaries="characters" (what sft uses) gives transformers' assistant masks (the token holding the answer's
    first character starts it), in the completion mode too."""
    import ferrotune
    import transformers
    from ferrotune.chat import ChatMaskError, tokenize_conversations
    from test_chat_masks import SMOLLM2_GENERATION

    require_sft_data()
    chats = [json.loads(line)["messages"] for line in lima_lines(BOUNDARY)]
    tokenizer = ferrotune.Tokenizer.from_pretrained(SMOLLM2)
    with pytest.raises(ChatMaskError, match="does not tokenize as a prefix"):
        tokenize_conversations(tokenizer, chats[:1])
    out = tokenize_conversations(tokenizer, chats, boundaries="characters")
    expected = transformers.AutoTokenizer.from_pretrained(SMOLLM2).apply_chat_template(
        chats, chat_template=SMOLLM2_GENERATION, return_dict=True, return_assistant_tokens_mask=True
    )
    assert out["input_ids"] == expected["input_ids"]
    assert [[int(v != -100) for v in labels] for labels in out["labels"]] == expected["assistant_masks"]
    completion = tokenize_conversations(tokenizer, [c[:1] for c in chats], completions=[c[1:2] for c in chats],
                                        loss_on="completion", boundaries="characters")  # fmt: skip
    assert completion["labels"] == out["labels"]  # one question, one answer: the same tokens


def test_readme_split_and_command(llama, tmp_path):
    """The README's LIMA split (its head/tail lines, run as written) and its command's options (the model replaced by
    the tiny one): 1,000 + 29 conversations, a valid sft config."""
    import shlex
    import subprocess

    from conftest import REPO_ROOT
    from ferrotune.cli import build_parser, config_from_arguments

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.strip() for line in readme.splitlines() if "../shared/data/sft/lima.jsonl > lima-" in line]
    assert len(lines) == 2
    for line in lines:
        subprocess.run(["bash", "-c", line.replace("../shared/data", str(DATA_DIR))], cwd=tmp_path, check=True)
    counts = [len((tmp_path / f"lima-{split}.jsonl").read_text().splitlines()) for split in ("train", "eval")]
    assert counts == [1000, 29]
    start = readme.index("ferrotune train --task sft --model path/to/chat-model")
    command = readme[start : readme.index("\n```", start)].replace("\\\n", " ")
    arguments = shlex.split(command.replace("path/to/chat-model", str(llama)))[1:]
    config = config_from_arguments(build_parser().parse_args(arguments))
    assert (config.kind, config.max_length, config.drop_empty, config.use_packing) == ("sft", 1024, True, True)


def test_the_template_trained_with_is_saved_and_chat_answers(llama, lima, tmp_path):
    """--chat-template FILE is written into the output folder (chat_template.jinja, what transformers and ferrotune
    load first), and `ferrotune chat` talks to the trained adapter with it."""
    import io

    import ferrotune
    import transformers
    from ferrotune.chatting import chat_loop, load_chat_model
    from test_chat_masks import SMOLLM2_GENERATION

    template = tmp_path / "template.jinja"
    template.write_text(SMOLLM2_GENERATION, encoding="utf-8")
    out = tmp_path / "run"
    ferrotune.train(**options(llama, *lima, out, max_train_examples=8, epochs=1, chat_template=str(template)))
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == SMOLLM2_GENERATION
    assert ferrotune.Tokenizer.from_pretrained(out).chat_template == SMOLLM2_GENERATION
    assert transformers.AutoTokenizer.from_pretrained(out).chat_template == SMOLLM2_GENERATION
    model, tokenizer = load_chat_model(out)
    history = chat_loop(model, tokenizer, io.StringIO("Hello\n"), io.StringIO(), max_new_tokens=3)
    assert [m["role"] for m in history] == ["user", "assistant"]
