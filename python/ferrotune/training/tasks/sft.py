"""Chat supervised fine-tuning (SFT) of a causal LM: the loss on the assistant's tokens only
(``AutoModelForCausalLM``, PEFT's ``CAUSAL_LM``; TRL's ``SFTTrainer`` with ``assistant_only_loss`` in spirit).

Data: a ``messages`` column (``--messages-column``) of OpenAI-style conversations, lists of ``{"role", "content"}``;
or a prompt column and a completion column (``--prompt-column`` / ``--completion-column``), each a list of messages
or a string (a string prompt is one user message, a string completion one assistant message). The conversations are
rendered by the model folder's chat template (or ``--chat-template FILE``) and tokenized by
:func:`ferrotune.chat.tokenize_conversations` before the model is loaded: ``input_ids``, and ``labels`` = the ids where
the loss applies and -100 elsewhere (``--loss-on assistant`` (default): every assistant message with the end-of-turn
tokens the template writes after it; ``last_assistant``; ``all``; ``completion``: the completion after the prompt,
the default with prompt/completion columns). A conversation longer than ``--max-length`` tokens is cut (right). One
left with no token to learn (no assistant message, or its answer cut away) is an error naming its file and line, or
with ``--drop-empty`` is left out, counted (the run's log, ``metrics.jsonl``'s summary, ``TrainResult.dropped``).

Batches: packed by default (:class:`ConversationBatches`): whole conversations share rows of up to ``max_length`` tokens
(the core's best-fit decreasing packing, in a new shuffled order each epoch), ``batch_size`` rows per batch, rows padded
to the longest of the batch. Each conversation's ``position_ids`` restart at 0, and the batch carries no attention mask:
transformers' ``create_causal_mask`` then finds the documents from the position ids (``find_packed_sequence_indices``)
and builds the block-diagonal causal mask for eager and SDPA attention alike (flash attention reads the same position
ids); it does so only without a KV cache, so training runs the model with ``use_cache=False``
(:meth:`ChatSFT.configure_model`). Each conversation's first label is -100, so no token predicts across a document
boundary (the causal shift); the padding of a row is one more document, with labels -100. ``--no-packing`` gives padded
batches of conversations (right padding, length-bucketed). Evaluation runs per conversation, padded.

The loss is the cross-entropy over the learned tokens (labels != -100, shifted: token t predicts t+1), mean over
them; the metric is perplexity = exp(eval loss). ``ferrotune predict`` generates the assistant's reply to each
conversation (:meth:`ChatSFT.predict`): ``{"generated_text": ...}``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .base import MODEL_INPUTS, Task, column, first_row

SFT = "sft"
IGNORED = -100  # labels the loss ignores (transformers' convention)
DEFAULT_MESSAGES_COLUMN = "messages"
# Models whose folder cannot be a causal LM for chat: encoders (AutoModelForCausalLM would bolt a new head on them).
ENCODER_TYPES = frozenset({
    "bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta", "mpnet",
    "camembert", "modernbert",
})  # fmt: skip


class ChatSFT(Task):
    kind = SFT
    model_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    pipeline_tag = "text-generation"
    label_column = None  # the labels come from the chat template's structure
    packs_documents = True
    chats = True
    default_max_length = 1024

    # ---- Options

    def check_config(self, config: Any) -> None:
        super().check_config(config)
        for name in ("text_column", "text_pair_column", "label_column", "label_names"):
            if getattr(config, name):
                raise ConfigError(
                    f"sft reads conversations (--messages-column, or --prompt-column and --completion-column): {name} "
                    "does not apply"
                )
        prompt, completion = config.prompt_column, config.completion_column
        if bool(prompt) != bool(completion):
            raise ConfigError("--prompt-column and --completion-column go together (one of them is missing)")
        if prompt and config.messages_column:
            raise ConfigError("give a --messages-column, or --prompt-column and --completion-column, not both")
        if config.loss_on == "completion" and not prompt:
            raise ConfigError(
                "--loss-on completion needs --prompt-column and --completion-column (the loss on the completion only)"
            )
        if config.chat_template and not Path(config.chat_template).expanduser().is_file():
            raise ConfigError(f"--chat-template {config.chat_template} is not a file (a Jinja chat template)")
        check_causal_model(config)

    def loss_on(self, config: Any) -> str:
        return config.loss_on or ("completion" if config.prompt_column else "assistant")

    # ---- Columns and rows

    def columns(self, config: Any, preset: Any) -> dict[str, str]:
        if config.prompt_column:
            return {"prompt": config.prompt_column, "completion": config.completion_column}
        return {"messages": config.messages_column or DEFAULT_MESSAGES_COLUMN}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """The columns as they are (checked: a list of messages per row, or for prompt/completion a string),
        renamed by role; the conversations are tokenized by :meth:`prepare_examples`."""
        import pyarrow as pa

        examples = {}
        for role, name in columns.items():
            values = column(table, name, role, source)
            conversations(values, name, role, source, strings=role != "messages")
            examples[role] = values
        return pa.table(examples), label_names

    def prepare_examples(self, config: Any, table: Any, source: Any) -> tuple[Any, int]:
        """Token ids and labels of every conversation (:func:`ferrotune.chat.tokenize_conversations` with the run's
        template, ``--loss-on`` and ``--max-length``): a table of ``input_ids`` and ``labels`` (the first label of
        each conversation -100), and the count of conversations dropped (``--drop-empty``)."""
        import pyarrow as pa

        from ...chat import ChatMaskError, ChatTemplateError, encode_conversations
        from ..modeling import check_model_folder, load_tokenizer

        tokenizer = load_tokenizer(check_model_folder(config.model_path()))
        template = chat_template(config, tokenizer)
        loss_on = self.loss_on(config)
        if "prompt" in table.column_names:
            prompts = [as_messages(value, "user") for value in table.column("prompt").to_pylist()]
            completions = [as_messages(value, "assistant") for value in table.column("completion").to_pylist()]
            if loss_on == "completion":
                chats, answers = prompts, completions
            else:
                chats, answers = [p + c for p, c in zip(prompts, completions)], None
        else:
            chats, answers = table.column("messages").to_pylist(), None
        try:
            rows, kept, dropped_indices = encode_conversations(
                tokenizer, chats, completions=answers, loss_on=loss_on, max_length=config.max_length,
                on_empty="drop", chat_template=template, boundaries="characters",
            )  # fmt: skip
        except (ChatMaskError, ChatTemplateError) as error:
            found = re.match(r"conversation (\d+)", str(error))
            where = source.where(int(found.group(1))) if found else str(source)
            raise DataError(f"{where}: {error}") from error
        dropped = dropped_indices.tolist()
        if dropped and not config.drop_empty:
            first = dropped[0]
            learned = {"assistant": "assistant message", "last_assistant": "assistant message",
                       "completion": "completion"}.get(loss_on, "token")  # fmt: skip
            has_answer = loss_on not in ("assistant", "last_assistant") or any(
                isinstance(m, dict) and m.get("role") == "assistant" for m in chats[first]
            )
            reason = (f"its {learned} is cut away by --max-length {config.max_length}" if has_answer
                      else "it has no assistant message")  # fmt: skip
            raise DataError(
                f"{source.where(first)}: the conversation has no token to learn ({reason}); {len(dropped)} such "
                f"conversation(s) in {source}: pass --drop-empty to leave them out (counted), or fix the data"
            )
        if not len(kept):
            raise DataError(f"{source}: every conversation was dropped (no token to learn): nothing to train on")
        ids, starts, _ = rows.ragged()
        labels = rows.labels()
        labels[starts[:-1]] = IGNORED  # nothing in the conversation predicts its first token
        # int32 offsets as pa.list_ has them, int64 (large lists) past 2**31 tokens
        lists = pa.ListArray if starts[-1] < 2**31 else pa.LargeListArray
        offsets = pa.array(starts.astype(np.int32 if lists is pa.ListArray else np.int64))
        return pa.table({
            "input_ids": lists.from_arrays(offsets, pa.array(ids)),
            "labels": lists.from_arrays(offsets, pa.array(labels)),
        }), len(dropped)  # fmt: skip

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("perplexity",), "perplexity"

    # ---- Model

    def configure_model(self, model: Any, config: Any) -> None:
        """Training runs without a KV cache (``use_cache=False`` on every forward, by a hook: the saved config is
        left as it is): transformers only detects packed documents from the position ids when there is no cache."""

        def no_cache(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return args, {**kwargs, "use_cache": False}

        model.base_model.register_forward_pre_hook(no_cache, with_kwargs=True)

    def lora_targets(self, model: Any) -> list[str] | None:
        """Every linear projection of the attention and MLP blocks (q/k/v/o, gate/up/down for Llama, Qwen2, Mistral;
        c_attn, c_proj, c_fc for GPT-2): the names of the decoder's Linear / Conv1D modules, the output layer left
        out."""
        return linear_projections(model)

    # ---- Batches and loss

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: Any = None) -> Any:
        """The tokenized conversations (:meth:`prepare_examples` did the work)."""
        return table.select(["input_ids", "labels"])

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        return ConversationBatches(self.encode(tokenizer, table, config.max_length, config), config.batch_size,
                                   config.max_length, tokenizer.pad_token_id, config.seed, packing=config.use_packing,
                                   bucketed=config.bucketing == "length", rank=rank, world=world)  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        pad_id = tokenizer.pad_token_id
        return lambda rows: padded_rows(token_rows(rows), np.arange(rows.num_rows), pad_id)

    def prepare_batch(self, batch: dict, device: Any) -> dict:
        """Model inputs and labels on ``device``; a packed batch has no attention mask (the position ids tell the
        documents apart) and keeps its count of real tokens for the step's record."""
        return {
            key: value.to(device) for key, value in batch.items() if key in (*MODEL_INPUTS, "labels", "real_tokens")
        }

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORED,
            reduction="sum",
        )  # fmt: skip

    def loss_items(self, batch: dict) -> int:
        """The learned tokens."""
        return int((batch["labels"][:, 1:] != IGNORED).sum())

    # ---- Metrics and prediction

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        return None  # the loss is all perplexity needs

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        return {"perplexity": math.exp(min(loss, 50.0))}

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], pairs: list[str] | None, *, batch_size: int,
                max_length: int | None, label_names: list[str] | None,
                generate_kwargs: dict[str, Any] | None = None) -> list[Any]:  # fmt: skip
        """``{"generated_text": ...}`` per conversation, in input order: the assistant's reply (the new text only, as
        ``pipeline("text-generation", return_full_text=False)``), generated from the folder's chat template with the
        generation prompt, greedy with ``max_new_tokens=256`` unless ``generate_kwargs`` say otherwise
        (:func:`ferrotune.chatting.replies`). A conversation is a list of ``{"role", "content"}`` messages, a text
        one user message; one conversation (a list of message dicts) gives one result. Prompts are not cut
        (``max_length`` does not apply), as the pipeline leaves them."""
        from ...chatting import generation_options, replies

        if pairs is not None:
            raise ConfigError("sft generates from one conversation (or prompt) per input: it takes no text pairs")
        if texts and isinstance(texts[0], dict):  # one conversation
            texts = [texts]
        if tokenizer.chat_template is None:
            raise ConfigError(
                "the tokenizer of this folder has no chat template (tokenizer_config.json's chat_template or "
                "chat_template.jinja): copy the one the model was trained with into the folder"
            )
        options = generation_options(tokenizer, **(generate_kwargs or {}))
        return [{"generated_text": text} for text in replies(model, tokenizer, texts, batch_size=batch_size, **options)]


# --------------------------------------------------------------------------------------------------
# Data


def check_causal_model(config: Any) -> None:
    """A model folder is needed (the default model is an encoder), holding a decoder (read from config.json alone; a
    missing folder or file is reported later, by the model folder checks)."""
    if not config.model:
        raise ConfigError(
            "sft needs --model: a local causal LM folder (Llama, Qwen2, Mistral, GPT-2, ...) with a tokenizer; the "
            "default model is an encoder"
        )
    path = Path(config.model).expanduser() / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        model_type, encoder_decoder = values.get("model_type"), values.get("is_encoder_decoder")
    except (OSError, ValueError, AttributeError):
        return
    if encoder_decoder or model_type in ENCODER_TYPES:
        raise ConfigError(
            f"{config.model} holds a {model_type!r} model, not a decoder-only causal LM: --task sft trains "
            "AutoModelForCausalLM models (Llama, Qwen2, Mistral, GPT-2, ...)"
        )


def chat_template(config: Any, tokenizer: Any) -> str:
    """The template source: ``--chat-template FILE``, else the tokenizer's (its default one, for a dict)."""
    from ...chat import get_chat_template

    if config.chat_template:
        return Path(config.chat_template).expanduser().read_text(encoding="utf-8")
    if tokenizer.chat_template is None:
        raise ConfigError(
            f"the tokenizer of {config.model} has no chat template (tokenizer_config.json's chat_template or "
            "chat_template.jinja): pass --chat-template FILE"
        )
    try:
        return get_chat_template(tokenizer)
    except Exception as error:  # several named templates without a default
        raise ConfigError(f"{error} (or pass --chat-template FILE)") from error


def conversations(values: Any, name: str, role: str, source: Any, strings: bool) -> None:
    """Checks a column of conversations: a list of message structs (with a ``role``) per row, no row missing or
    empty; ``strings``: a text per row is accepted too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = values.type
    if strings and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        bad = pc.is_null(values)
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type):
        if kind.value_type.get_field_index("role") < 0:
            raise DataError(f"{role} column {name!r} of {source} holds messages without a 'role' field ({kind})")
        bad = pc.or_(pc.is_null(values), pc.equal(pc.list_value_length(values), 0))
        roles = pc.struct_field(pc.list_flatten(values), "role")
        if roles.null_count:
            row = pc.list_parent_indices(values)[first_row(pc.is_null(roles))].as_py()
            raise DataError(f"{source.where(row)}: a message of column {name!r} has no role")
    else:
        wanted = "a list of {role, content} messages" + (" or a text" if strings else "")
        raise DataError(f"{role} column {name!r} of {source} holds {kind}, not {wanted} per row")
    bad = pc.fill_null(bad, True)
    if pc.any(bad).as_py():
        raise DataError(
            f"{role} column {name!r} is empty or missing in {source.where(first_row(bad))} ({pc.sum(bad).as_py()} "
            f"such row(s) in {source}): fill it in or remove the row"
        )


def as_messages(value: Any, role: str) -> list[dict]:
    """A prompt or completion as messages: a text is one message of ``role``."""
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def linear_projections(model: Any) -> list[str]:
    """The leaf names of the Linear / Conv1D modules of a causal LM other than its output layer, in module order."""
    import torch
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings()
    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not output:
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no linear projections to adapt: pass --lora-targets")
    return names


# --------------------------------------------------------------------------------------------------
# Batches


def token_rows(encoded: Any) -> Any:
    """The core's rows of a table of ``input_ids`` and ``labels`` (what the core pads and packs)."""
    from ... import _core
    from ...sources import arrow_column

    return _core.TokenRows.from_arrow(arrow_column(encoded, "input_ids", "ids"),
                                      labels=arrow_column(encoded, "labels", "ids"))  # fmt: skip


def padded_rows(rows: Any, indices: np.ndarray, pad_id: int) -> dict:
    """Rows ``indices`` padded on the right by the core: input_ids, attention_mask, labels (-100 on the padding)."""
    import torch

    ids, mask, _, labels = rows.collate(np.asarray(indices, dtype=np.int64), pad_id=pad_id, padding_side="right")
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels)}  # fmt: skip


def packed_batch(rows: Any, packs: list[list[int]], pad_id: int) -> dict:
    """Rows of whole conversations (``packs``: the conversations of each row), each flattened by the core
    (``DataCollatorWithFlattening``'s layout: each conversation's first label -100, position ids restarting at 0),
    padded to the longest row: input_ids, position_ids (the padding counting on as one more document), labels (-100
    on the padding) and real_tokens (the count of tokens that are not padding). No attention mask: the position ids
    carry the documents."""
    import torch

    lengths = rows.lengths()
    flat = []
    for pack in packs:
        pieces = np.array([[i, 0, lengths[i]] for i in pack], dtype=np.int64).reshape(-1, 3)
        flat.append(rows.pack(pieces, separator_id=IGNORED)[:3])
    width = max(len(ids) for ids, _, _ in flat)
    ids = np.full((len(flat), width), pad_id, dtype=np.int64)
    positions = np.tile(np.arange(width, dtype=np.int64), (len(flat), 1))
    target = np.full((len(flat), width), IGNORED, dtype=np.int64)
    real = 0
    for i, (row_ids, row_labels, row_positions) in enumerate(flat):
        n = len(row_ids)
        ids[i, :n], target[i, :n], positions[i, :n] = row_ids, row_labels, row_positions
        positions[i, n:] = np.arange(width - n)
        real += n
    return {"input_ids": torch.from_numpy(ids), "position_ids": torch.from_numpy(positions),
            "labels": torch.from_numpy(target), "real_tokens": torch.tensor(real)}  # fmt: skip


class ConversationBatches:
    """Training batches of tokenized conversations: a new order each epoch (seed, epoch), this rank's share (every
    ``world``-th batch). Packed: whole conversations in rows of up to ``max_length`` tokens (the core's best-fit
    decreasing packing, shuffled), ``batch_size`` rows a batch (:func:`packed_batch`); else ``batch_size``
    conversations padded by the core (length-bucketed when ``bucketed``, as
    :class:`~.token_classification.SentenceBatches`). Resumable: ``state_dict`` is the position after the last batch
    yielded."""

    WINDOW_BATCHES = 50

    def __init__(self, encoded: Any, batch_size: int, max_length: int, pad_id: int, seed: int, *, packing: bool = True,
                 bucketed: bool = True, rank: int = 0, world: int = 1) -> None:  # fmt: skip
        self.rows = token_rows(encoded)
        self.lengths = self.rows.lengths()
        self.batch_size, self.max_length, self.pad_id, self.seed = batch_size, max_length, pad_id, seed
        self.packing, self.bucketed, self.rank, self.world = packing, bucketed, rank, world
        self._epoch, self._position, self._resume = 0, (0, 0), None
        self._plans: dict[int, list] = {}

    def plan(self, epoch: int) -> list:
        """This rank's batches of an epoch: lists of rows (lists of conversation indices) when packed, else lists
        of conversation indices."""
        if epoch not in self._plans:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.lengths))
            if self.packing:
                seed = int(rng.integers(2**63))
                packs = self.rows.plan_packs(self.max_length, shuffle=True, seed=seed)
                rows = [pack[:, 0].tolist() for pack in packs]
                batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
            else:
                if self.bucketed:
                    window = self.batch_size * self.WINDOW_BATCHES
                    order = np.concatenate([
                        chunk[np.argsort(self.lengths[chunk], kind="stable")]
                        for chunk in (order[i : i + window] for i in range(0, len(order), window))
                    ])  # fmt: skip
                batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
                if self.bucketed:
                    batches = [batches[i] for i in rng.permutation(len(batches))]
            self._plans = {epoch: batches[self.rank :: self.world]}
        return self._plans[epoch]

    def count_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if self._resume is None or self._resume[0] < self._epoch:
            self._position = (self._epoch, 0)

    def batch(self, entry: Any) -> dict:
        if self.packing:
            return packed_batch(self.rows, entry, self.pad_id)
        return padded_rows(self.rows, np.asarray(entry), self.pad_id)

    def __iter__(self) -> Iterator[dict]:
        epoch, start = self._epoch, 0
        if self._resume is not None and self._resume[0] >= epoch:
            if self._resume[0] > epoch:
                return
            start = self._resume[1]
        for number, entry in enumerate(self.plan(epoch)[start:], start + 1):
            self._position, self._resume = (epoch, number), None
            yield self.batch(entry)

    def state_dict(self) -> dict[str, Any]:
        epoch, batch = self._resume if self._resume is not None else self._position
        return {"kind": "conversation-batches", "epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ...errors import StateDictError

        if not isinstance(state, dict) or state.get("kind") != "conversation-batches":
            raise StateDictError("not an sft loader state")
        self._resume = (int(state["epoch"]), int(state["batch"]))
