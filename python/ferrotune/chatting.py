"""``ferrotune chat MODEL``: talk to a causal LM with a chat template, the history kept (the course's chat loop).

``MODEL`` is a folder written by ``ferrotune train`` (a LoRA adapter, loaded onto its base model with PEFT, or a full
model) or any local causal-LM folder whose tokenizer has a chat template. Each line read is a user message; the
conversation so far goes through ``apply_chat_template(add_generation_prompt=True)`` (rendered in Rust), the reply is
generated (greedy unless ``--temperature``) and streamed as it comes, then kept in the history. ``/reset`` clears the
history, ``/exit`` (or the end of the input) stops.

:func:`replies` answers many conversations at once (``ferrotune predict`` on an sft model): their prompts
(:func:`prompt_ids`) in length-sorted batches, padded on the LEFT so that every prompt ends where generation starts
(transformers' requirement for decoder-only batched generation), each answer the same as :func:`reply` gives alone.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import IO, Any

from .errors import ChatTemplateError, ConfigError, InputTypeError, InvalidInputError, ModelFileNotFoundError


def load_chat_model(folder: str | Path, base_model: str | Path | None = None) -> tuple[Any, Any]:
    """(model in eval mode, ferrotune tokenizer) of a training output folder or a plain causal-LM folder."""
    import transformers

    from .tokenizer import Tokenizer
    from .training.modeling import quiet_transformers

    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ModelFileNotFoundError(f"{folder} holds no model (no config.json or adapter_config.json)")
    tokenizer = Tokenizer.from_pretrained(folder)
    if tokenizer.chat_template is None:
        raise ConfigError(
            f"the tokenizer of {folder} has no chat template: chat needs one (tokenizer_config.json's chat_template "
            "or chat_template.jinja)"
        )
    with quiet_transformers():
        if (folder / "adapter_config.json").is_file():
            from peft import PeftModel

            from .prediction import read_task, resolve_base_model

            base_path = (
                resolve_base_model(folder, read_task(folder), base_model)
                if (folder / "ferrotune_task.json").is_file()
                else Path(  # fmt: skip
                    base_model or json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
                )
            )
            base = transformers.AutoModelForCausalLM.from_pretrained(base_path)
            model = PeftModel.from_pretrained(base, folder)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    return model.eval(), tokenizer


def reply(model: Any, tokenizer: Any, messages: list[dict], *, max_new_tokens: int = 256, temperature: float = 0.0,
          stream: IO[str] | None = None) -> str:  # fmt: skip
    """The assistant's answer to ``messages`` (decoded without special tokens), written to ``stream`` as it is
    generated when one is given."""
    import torch

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)  # fmt: skip
    options = generation_options(tokenizer, max_new_tokens=max_new_tokens, temperature=temperature)
    if stream is not None:
        options["streamer"] = _Streamer(tokenizer, stream)
    with torch.no_grad():
        output = model.generate(input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"], **options)
    new_tokens = output[0, prompt["input_ids"].shape[1] :].tolist()
    return tokenizer.decode(new_tokens, skip_special_tokens=True)


def generation_options(tokenizer: Any, max_new_tokens: int = 256, temperature: float = 0.0,
                       **generate_kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """``model.generate``'s options for replies: ``max_new_tokens``, greedy unless ``temperature`` > 0 (then sampling
    at that temperature), padding with the tokenizer's pad token (its EOS when it has none); any other
    ``generate_kwargs`` (``top_p``, ``num_beams``, ``do_sample``, ...) passed on as given, over these."""
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0}
    if temperature > 0:
        options["temperature"] = temperature
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        options["pad_token_id"] = pad
    return {**options, **generate_kwargs}


def prompt_ids(tokenizer: Any, conversations: list[Any]) -> list[list[int]]:
    """The token ids of each conversation's prompt, rendered by the tokenizer's chat template with the generation
    prompt (``add_generation_prompt=True``). A text is one user message. A conversation that ends with an assistant
    message has that message continued instead (``continue_final_message``), as ``pipeline("text-generation")``
    does. Errors name the conversation (``conversation N: ...``, from 0)."""
    prompts = []
    for index, chat in enumerate(conversations):
        if isinstance(chat, str):
            chat = [{"role": "user", "content": chat}]
        if not (isinstance(chat, (list, tuple)) and chat
                and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in chat)):  # fmt: skip
            raise InputTypeError(
                f"conversation {index}: a conversation is a text or a non-empty list of {{'role', 'content'}} "
                f"message dicts, not {str(chat)[:80]!r}"
            )
        last = chat[-1]["role"] == "assistant"
        try:
            ids = tokenizer.apply_chat_template(list(chat), add_generation_prompt=not last, continue_final_message=last,
                                                return_dict=False)  # fmt: skip
        except (ChatTemplateError, InvalidInputError) as error:  # one conversation rendered: name it in the batch
            message = re.sub(r"^conversation \d+: ", "", str(error))
            kind = ChatTemplateError if isinstance(error, ChatTemplateError) else InvalidInputError
            raise kind(f"conversation {index}: {message}") from error
        prompts.append(list(ids))
    return prompts


def replies(model: Any, tokenizer: Any, conversations: list[Any], *, batch_size: int = 8,
            **options: Any) -> list[str]:  # fmt: skip
    """The assistant's answer to each conversation (a text is one user message), in input order: the prompts of
    :func:`prompt_ids` in length-sorted batches, left-padded, through ``model.generate(**options)`` (see
    :func:`generation_options`); each answer decoded without special tokens, up to its first EOS (a batch fills
    the rows that stopped early with padding). ``model``: the transformers model, or the PeftModel around it."""
    import numpy as np
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if options.get("num_return_sequences", 1) != 1:
        raise ConfigError("replies gives one answer per conversation: num_return_sequences must be 1")
    prompts = prompt_ids(tokenizer, conversations)
    eos = options.get("eos_token_id", model.generation_config.eos_token_id)
    stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    device = next(model.parameters()).device
    order = np.argsort([len(ids) for ids in prompts], kind="stable")
    answers = [""] * len(prompts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer.pad([{"input_ids": prompts[i]} for i in chosen], padding_side="left",
                                  return_tensors="pt")  # fmt: skip
            output = model.generate(input_ids=batch["input_ids"].to(device),
                                    attention_mask=batch["attention_mask"].to(device), **options)  # fmt: skip
            for i, row in zip(chosen, output[:, batch["input_ids"].shape[1] :].tolist()):
                end = next((at + 1 for at, token in enumerate(row) if token in stops), len(row))
                answers[i] = tokenizer.decode(row[:end], skip_special_tokens=True)
    return answers


class _Streamer:
    """transformers' streamer protocol (``put`` / ``end``): the reply's text written as tokens arrive (the full text
    decoded each time, the new characters written, so multi-byte characters come out whole)."""

    def __init__(self, tokenizer: Any, stream: IO[str]) -> None:
        self.tokenizer, self.stream = tokenizer, stream
        self.tokens: list[int] = []
        self.written = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate's first call carries the prompt
            self.prompt_seen = True
            return
        self.tokens.extend(int(token) for token in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character still incomplete
            return
        self.stream.write(text[self.written :])
        self.stream.flush()
        self.written = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        self.stream.write(text[self.written :] + "\n")
        self.stream.flush()


def chat_loop(model: Any, tokenizer: Any, lines: IO[str], out: IO[str], *, system: str | None = None,
              max_new_tokens: int = 256, temperature: float = 0.0, prompt: str = "> ") -> list[dict]:  # fmt: skip
    """Reads user messages from ``lines`` until ``/exit`` or the end, answers each one; returns the history."""
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    while True:
        out.write(prompt)
        out.flush()
        line = lines.readline()
        if not line:
            out.write("\n")
            break
        message = line.rstrip("\n")
        if message.strip() == "/exit":
            break
        if message.strip() == "/reset":
            history = history[:1] if system else []
            out.write("(history cleared)\n")
            continue
        if not message.strip():
            continue
        history.append({"role": "user", "content": message})
        answer = reply(model, tokenizer, history, max_new_tokens=max_new_tokens, temperature=temperature, stream=out)
        history.append({"role": "assistant", "content": answer})
    return history


def run_chat(arguments: Any) -> int:
    model, tokenizer = load_chat_model(arguments.model, arguments.base_model)
    chat_loop(model, tokenizer, sys.stdin, sys.stdout, system=arguments.system,
              max_new_tokens=arguments.max_new_tokens, temperature=arguments.temperature)  # fmt: skip
    return 0


def add_chat_arguments(parser: Any) -> None:
    parser.add_argument("model", help="a folder written by ferrotune train (adapter or full model), or a causal-LM "
                        "folder whose tokenizer has a chat template")  # fmt: skip
    parser.add_argument("--system", help="a system message put first in the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest reply, in tokens [default: 256]")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy [default: 0]")
    parser.add_argument("--base-model", metavar="DIR", help="the base model's folder, when an adapter's is elsewhere")
