"""``ferrotune chat``: the chat loop keeps the history, renders it with the tokenizer's template, streams each reply,
and answers as ``model.generate`` does on the same conversation; a model folder or a LoRA adapter folder loads.
The model is a tiny random Llama (no pretrained chat model is reachable): the replies are noise, the mechanics are
what is tested."""

from __future__ import annotations

import io
import shutil

import pytest
from test_chat_template import smollm_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny-llama")
    source = smollm_dir()
    vocab = transformers.AutoTokenizer.from_pretrained(source)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                      bos_token_id=vocab.bos_token_id, eos_token_id=vocab.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    return folder


def generated(model, tokenizer, messages, max_new_tokens):
    import torch

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.eos_token_id)  # fmt: skip
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1] :].tolist(), skip_special_tokens=True)


def test_chat_loop_keeps_the_history_and_streams(tiny_llama):
    from ferrotune.chatting import chat_loop, load_chat_model

    model, tokenizer = load_chat_model(tiny_llama)
    out = io.StringIO()
    history = chat_loop(model, tokenizer, io.StringIO("Hello there\n\nHow are you?\n/exit\nnever read\n"), out,
                        system="Be brief.", max_new_tokens=6)  # fmt: skip
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[1]["content"] == "Hello there" and history[3]["content"] == "How are you?"
    # Each reply is what generate gives for the conversation so far (the second one sees the first).
    assert history[2]["content"] == generated(model, tokenizer, history[:2], 6)
    assert history[4]["content"] == generated(model, tokenizer, history[:4], 6)
    printed = out.getvalue()
    assert history[2]["content"] in printed and history[4]["content"] in printed and "never read" not in printed

    out = io.StringIO()
    history = chat_loop(model, tokenizer, io.StringIO("first\n/reset\nsecond\n"), out, max_new_tokens=3)
    assert [m["content"] for m in history if m["role"] == "user"] == ["second"]
    assert "(history cleared)" in out.getvalue()


def test_chat_command_and_adapter_folders(tiny_llama, tmp_path, monkeypatch, capsys):
    import transformers
    from ferrotune.cli import main
    from ferrotune.errors import ConfigError
    from peft import LoraConfig, get_peft_model

    monkeypatch.setattr("sys.stdin", io.StringIO("Hi!\n"))
    assert main(["chat", str(tiny_llama), "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("> ")

    # A LoRA adapter folder (with the tokenizer files, as ferrotune train writes them) loads onto its base.
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama)
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    adapter.save_pretrained(tmp_path / "adapter")
    for name in TOKENIZER_FILES:
        if (tiny_llama / name).is_file():
            shutil.copyfile(tiny_llama / name, tmp_path / "adapter" / name)
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi!\n"))
    assert main(["chat", str(tmp_path / "adapter"), "--max-new-tokens", "4"]) == 0

    # A tokenizer without a chat template is refused before any model loads.
    (tmp_path / "plain").mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(tiny_llama / name, tmp_path / "plain" / name)
    from ferrotune.chatting import load_chat_model

    with pytest.raises(ConfigError, match="no chat template"):
        load_chat_model(tmp_path / "plain")
    assert main(["chat", str(tmp_path / "nowhere")]) == 2
