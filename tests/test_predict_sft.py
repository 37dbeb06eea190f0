"""``ferrotune predict`` on chat models (``--task sft``): conversations in, ``{"generated_text": ...}`` out, in input
order. Batches are left-padded and each reply equals ``model.generate`` on that conversation alone (greedy). The
model is a tiny RANDOM Llama trained a few steps on LIMA (no pretrained chat model is reachable): the replies are
noise, the mechanics are what is tested."""

from __future__ import annotations

import io
import json
import re

import pytest
from test_train_sft import lima_lines, options, require_sft_data, tiny_model, write_lines

pytest.importorskip("peft")

# A template unlike SmolLM2's, put in a model folder as --chat-template FILE leaves it: predict must render with it.
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ '### ' + m['role'] + ':\\n' + m['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant:\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A LoRA adapter trained two steps on a tiny Llama with the SmolLM2 tokenizer and its chat template."""
    import ferrotune

    require_sft_data()
    folder = tmp_path_factory.mktemp("predict-sft")
    model = tiny_model(folder / "llama")
    train = write_lines(folder / "train.jsonl", lima_lines(range(8)))
    ferrotune.train(**options(model, train, None, folder / "run", eval=None, stop_after_steps=2, learning_rate=1e-2))
    return folder / "run"


@pytest.fixture(scope="module")
def loaded(run):
    from ferrotune.chatting import load_chat_model

    return load_chat_model(run)


def conversations() -> list:
    """Prompts of different lengths (so batches are padded): LIMA questions, a plain text, a multi-turn
    conversation, a system message, and one ending with an assistant message (continued)."""
    lima = [json.loads(line)["messages"] for line in lima_lines(range(1000, 1003))]
    return [
        lima[0][:1],
        "Name three colours.",
        [lima[1][0], {"role": "assistant", "content": lima[1][1]["content"][:200]},
         {"role": "user", "content": "Shorter, please."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": lima[2][0]["content"][:40]}],
        [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "One, two,"}],
    ]  # fmt: skip


def alone(model, tokenizer, chat, **options) -> str:
    """transformers on one conversation: the template's prompt (continued when it ends with an assistant message),
    greedy model.generate, the new tokens decoded."""
    import torch

    chat = [{"role": "user", "content": chat}] if isinstance(chat, str) else chat
    last = chat[-1]["role"] == "assistant"
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=not last, continue_final_message=last,
                                           return_tensors="pt", return_dict=True)  # fmt: skip
    with torch.no_grad():
        output = model.generate(**prompt, **{"do_sample": False, "pad_token_id": tokenizer.pad_token_id, **options})
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1] :].tolist(), skip_special_tokens=True)


def predicted(model, tokenizer, chats, batch_size=64, **generate_kwargs) -> list[str]:
    """The sft task's predict on a loaded model (what ferrotune.predict calls after loading the folder)."""
    from ferrotune.training.tasks import task_for

    results = task_for("sft").predict(model, tokenizer, chats, None, batch_size=batch_size, max_length=None,
                                      label_names=None, generate_kwargs=generate_kwargs)  # fmt: skip
    return [result["generated_text"] for result in results]


def test_batched_replies_equal_each_conversation_alone(run, loaded):
    """ferrotune.predict: length-sorted, left-padded batches give every conversation, in input order, the reply that
    greedy generation gives it alone; also when a row of a batch stops early (at its EOS) and the others go on."""
    import ferrotune

    model, tokenizer = loaded
    chats = conversations()
    expected = [alone(model, tokenizer, chat, max_new_tokens=6) for chat in chats]
    assert len(set(expected)) == len(chats)  # distinct replies: the order is checked too
    results = ferrotune.predict(run, chats, batch_size=4, generate_kwargs={"max_new_tokens": 6})
    assert results == [{"generated_text": text} for text in expected]
    # The token the first conversation generates third, made the EOS: that row stops there, the others go on, and
    # it is padded with that token (an ordinary one, so the padding would show in the text if it were not cut off).
    stop = tokenizer(expected[0], add_special_tokens=False)["input_ids"][2]
    early = {"max_new_tokens": 6, "eos_token_id": stop, "pad_token_id": stop}
    expected = [alone(model, tokenizer, chat, **early) for chat in chats]
    assert len(tokenizer(expected[0], add_special_tokens=False)["input_ids"]) == 3
    assert any(len(text) > len(expected[0]) for text in expected[1:])
    assert predicted(model, tokenizer, chats, **early) == expected
    # One conversation (a list of message dicts) is one result.
    assert predicted(model, tokenizer, chats[0], **early) == expected[:1]
    # The model card shows the call.
    assert f'ferrotune.predict("{run.name}", ["a message to answer"])' in (run / "README.md").read_text()


def test_the_folder_template_renders_the_prompts(run, tmp_path):
    """A full model folder (the adapter merged) whose chat_template.jinja is another template, as training with
    --chat-template FILE leaves it: predict renders the prompts with that template."""
    import ferrotune
    import torch
    import transformers
    from ferrotune.prediction import merge

    full = merge(run, tmp_path / "full")
    (full / "chat_template.jinja").write_text(PLAIN_TEMPLATE, encoding="utf-8")
    model = transformers.AutoModelForCausalLM.from_pretrained(full).eval()
    tokenizer = ferrotune.Tokenizer.from_pretrained(full)
    questions = ["Hi", "What is the capital of France?"]
    expected = []
    for question in questions:
        ids = tokenizer(f"### user:\n{question}\n### assistant:\n", add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected.append(tokenizer.decode(output[0, ids["input_ids"].shape[1] :].tolist(), skip_special_tokens=True))
    results = ferrotune.predict(full, questions, generate_kwargs={"max_new_tokens": 6})
    assert results == [{"generated_text": text} for text in expected]


def test_predict_command(run, loaded, tmp_path, monkeypatch, capsys):
    """`ferrotune predict` on a JSONL file of conversations (the training format), on a column of prompts, and on
    stdin lines: one JSON line per input, in input order."""
    from ferrotune.cli import main

    model, tokenizer = loaded
    chats = [chat for chat in conversations() if not isinstance(chat, str)]
    rows = [{"id": i, "messages": chat, "prompt": chat[-1]["content"]} for i, chat in enumerate(chats)]
    path = write_lines(tmp_path / "chats.jsonl", [json.dumps(row) for row in rows])
    expected = predicted(model, tokenizer, chats, max_new_tokens=5)
    assert main(["predict", str(run), "--input", path, "--max-new-tokens", "5", "--batch-size", "2"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"generated_text": text} for text in expected
    ]
    prompts = [row["prompt"] for row in rows]
    expected = predicted(model, tokenizer, prompts, max_new_tokens=5)
    assert main(["predict", str(run), "--input", path, "--text-column", "prompt", "--max-new-tokens", "5"]) == 0
    assert [json.loads(line)["generated_text"] for line in capsys.readouterr().out.splitlines()] == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi there\n\nName three colours.\n"))
    assert main(["predict", str(run), "--max-new-tokens", "5"]) == 0
    expected = predicted(model, tokenizer, ["Hi there", "Name three colours."], max_new_tokens=5)
    assert [json.loads(line)["generated_text"] for line in capsys.readouterr().out.splitlines()] == expected


def test_bad_conversations_name_their_file_and_line(run, loaded, tmp_path, capsys):
    from ferrotune.chatting import generation_options, prompt_ids
    from ferrotune.cli import main
    from ferrotune.errors import ConfigError, InputTypeError, InvalidInputError

    good = {"messages": [{"role": "user", "content": "Hi"}]}
    bad = [
        ({"messages": []}, r"is empty or missing in .*bad\.jsonl line 2"),
        ({"messages": [{"content": "x"}]}, r"bad\.jsonl line 2: a message of column 'messages' has no role"),
        ({"other": 1}, r"is empty or missing in .*bad\.jsonl line 2"),
        # Rendering fails after the model loads: still the file and line, with the reason.
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]},
         r"bad\.jsonl line 2: continue_final_message is set but the final message has no \"content\""),
    ]  # fmt: skip
    for row, message in bad:
        path = write_lines(tmp_path / "bad.jsonl", [json.dumps(good), json.dumps(row)])
        assert main(["predict", str(run), "--input", path, "--max-new-tokens", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ferrotune predict: error: ") and re.search(message, err), err
    path = write_lines(tmp_path / "chats.jsonl", [json.dumps(good)])
    for flags, message in ((["--messages-column", "chat"], "column 'chat' is not in"),
                           (["--text-pair-column", "x"], "--text-pair-column does not apply"),
                           (["--text-column", "a", "--messages-column", "b"], "not both")):  # fmt: skip
        assert main(["predict", str(run), "--input", path, *flags]) == 2
        assert message in capsys.readouterr().err
    # In Python the error names the conversation (from 0).
    model, tokenizer = loaded
    assert generation_options(tokenizer, temperature=0.7, top_p=0.9) == {
        "max_new_tokens": 256, "do_sample": True, "temperature": 0.7, "pad_token_id": tokenizer.pad_token_id,
        "top_p": 0.9,
    }  # fmt: skip
    with pytest.raises(InputTypeError, match="conversation 1: a conversation is a text or a non-empty list"):
        prompt_ids(tokenizer, ["Hi", [{"content": "no role"}]])
    with pytest.raises(InvalidInputError, match="conversation 0: continue_final_message"):
        prompt_ids(tokenizer, [[{"role": "assistant"}]])
    with pytest.raises(ConfigError, match="no text pairs"):
        from ferrotune.training.tasks import task_for

        task_for("sft").predict(model, tokenizer, ["Hi"], ["there"], batch_size=1, max_length=None, label_names=None)
    # Generation options are refused, before anything loads, for a folder whose task does not generate replies.
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "ferrotune_task.json").write_text(json.dumps({"kind": "classification", "base_model": "x"}))
    assert main(["predict", str(classifier), "--max-new-tokens", "5"]) == 2
    assert "--max-new-tokens: for chat models (sft)" in capsys.readouterr().err
    import ferrotune

    with pytest.raises(ConfigError, match="generate_kwargs is for chat models"):
        ferrotune.predict(classifier, ["Hi"], generate_kwargs={"max_new_tokens": 5})


def test_readme_commands(run, tmp_path, monkeypatch, capsys):
    """The README's sft predict commands run as written (the folder replaced by the tiny run, the input made)."""
    import shlex

    from conftest import REPO_ROOT
    from ferrotune.cli import main

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### `ferrotune predict`") : readme.index("### `ferrotune chat`")]
    commands = [line for line in section.splitlines() if line.startswith(("ferrotune ", "printf "))]
    lines = [line.split("  #")[0] for line in commands if "runs/lima-sft" in line]
    assert len(lines) == 2
    write_lines(tmp_path / "questions.jsonl", [json.dumps({"messages": [{"role": "user", "content": "Hi"}]})])
    monkeypatch.chdir(tmp_path)
    for line in lines:
        if " | " in line:  # printf '...' | ferrotune predict ...
            text, line = line.split(" | ", 1)
            monkeypatch.setattr("sys.stdin", io.StringIO(shlex.split(text)[1].replace("\\n", "\n")))
        arguments = shlex.split(line.replace("runs/lima-sft", str(run)))
        assert arguments[:2] == ["ferrotune", "predict"]
        assert main([*arguments[1:], "--max-new-tokens", "4"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1
