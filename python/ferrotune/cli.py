"""The ``ferrotune`` command line: ``ferrotune train ...`` and ``ferrotune predict ...``.

``train``'s flags are generated from :class:`ferrotune.TrainConfig`, one flag per field (``lora_r`` is
``--lora-r``); ``--config FILE`` reads a YAML/JSON file of the same options, and flags given explicitly win.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import warnings
from typing import Any

from .errors import ChatTemplateError, DataError, FerrotuneError, InvalidInputError
from .training.config import TrainConfig, read_config_file, split_list

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _flag_type(annotation: str):
    """argparse type and action for a TrainConfig field annotation (a string: annotations are postponed)."""
    if annotation.startswith("bool"):
        return {"action": argparse.BooleanOptionalAction}
    if annotation.startswith("list[str]"):
        return {"type": split_list, "metavar": "A,B"}
    if annotation.startswith("int"):
        return {"type": int}
    if annotation.startswith("float"):
        return {"type": float}
    return {"type": str}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of options (the same names); flags given here win")
    for config_field in dataclasses.fields(TrainConfig):
        default = config_field.default if config_field.default is not dataclasses.MISSING else None
        help_text = config_field.metadata.get("help", "")
        if default is not None and not isinstance(default, bool):
            help_text += f" [default: {default}]"
        parser.add_argument(
            "--" + config_field.name.replace("_", "-"),
            dest=config_field.name,
            default=argparse.SUPPRESS,  # absent flags do not override the config file
            help=help_text,
            **_flag_type(str(config_field.type)),
        )


def config_from_arguments(arguments: argparse.Namespace) -> TrainConfig:
    values = vars(arguments).copy()
    for name in ("command", "config"):
        values.pop(name, None)
    base = read_config_file(arguments.config) if getattr(arguments, "config", None) else {}
    return TrainConfig.from_dict({**base, **values}).validate()


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a folder written by ferrotune train (its output dir, or best/)")
    parser.add_argument("--input", help="file of examples (TSV/CSV/JSONL/Parquet...); default: lines of stdin")
    parser.add_argument("--text-column", help="column of the texts in --input [default: text]; a chat model: of the "
                        "prompts (a text is one user message)")  # fmt: skip
    parser.add_argument("--text-pair-column", help="column of the second texts of pairs in --input")
    parser.add_argument("--messages-column", help="a chat model (sft): column of the conversations in --input, lists "
                        "of {role, content} messages [default: messages]")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, help="a chat model: longest reply, in tokens [default: 256]")
    parser.add_argument("--temperature", type=float, help="a chat model: sampling temperature; 0 = greedy "
                        "[default: 0]")  # fmt: skip
    parser.add_argument("--format", help="format of --input (default: from its extension)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per batch [default: 64]")
    parser.add_argument("--merge", metavar="DIR", help="write the adapter merged into its base model to DIR, and stop")
    parser.add_argument("--base-model", metavar="DIR", help="the base model's folder, when it is no longer where the "
                        "trained folder says (ferrotune_task.json)")  # fmt: skip


def _read_inputs(arguments: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    if arguments.input:
        from .errors import ColumnNotFoundError
        from .sources import CsvOptions, DataFiles

        files = DataFiles(arguments.input, arguments.format, CsvOptions(quoting=False))  # as training reads its data
        text_column = arguments.text_column or "text"
        wanted = list(filter(None, (text_column, arguments.text_pair_column)))
        for _, columns in files.columns():
            for name in wanted:
                if name not in columns:
                    raise ColumnNotFoundError(f"column {name!r} is not in {arguments.input}; columns: {columns}")
        table = files.read(wanted)
        texts = [str(t) for t in table.column(text_column).to_pylist()]
        pairs = None
        if arguments.text_pair_column:
            pairs = [str(t) for t in table.column(arguments.text_pair_column).to_pylist()]
        return texts, pairs
    # stdin: one example per line; a tab separates the two texts of a pair.
    lines = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if lines and all("\t" in line for line in lines):
        texts, pairs = zip(*(line.split("\t", 1) for line in lines))
        return list(texts), list(pairs)
    return lines, None


def _read_conversations(arguments: argparse.Namespace) -> tuple[list[Any], Any]:
    """A chat model's inputs and their files (None for stdin): the conversations of --input's --messages-column
    (default ``messages``), or its --text-column of prompts, each row a list of messages or a text (one user
    message), checked as training checks them (errors name the file and line); from stdin, each line is one user
    message."""
    from .errors import ColumnNotFoundError, ConfigError

    if arguments.text_pair_column:
        raise ConfigError("--text-pair-column does not apply to a chat model: it answers one conversation per input")
    if arguments.messages_column and arguments.text_column:
        raise ConfigError("give --messages-column (conversations) or --text-column (prompts), not both")
    if not arguments.input:
        if arguments.messages_column or arguments.text_column:
            raise ConfigError("--messages-column and --text-column name columns of --input (stdin: one prompt a line)")
        return [line.rstrip("\n") for line in sys.stdin if line.strip()], None
    from .sources import CsvOptions, DataFiles
    from .training.tasks.sft import DEFAULT_MESSAGES_COLUMN, conversations

    name = arguments.text_column or arguments.messages_column or DEFAULT_MESSAGES_COLUMN
    files = DataFiles(arguments.input, arguments.format, CsvOptions(quoting=False))
    for file, columns in files.columns():
        if name not in columns:
            raise ColumnNotFoundError(f"column {name!r} is not in {file}; columns: {columns}")
    values = files.read([name]).column(name)
    conversations(values, name, "prompt" if arguments.text_column else "messages", files, strings=True)
    return values.to_pylist(), files


def _generate_kwargs(arguments: argparse.Namespace, chats: bool) -> dict[str, Any] | None:
    """--max-new-tokens and --temperature as ``model.generate``'s options (a chat model only)."""
    from .errors import ConfigError

    given = {"max_new_tokens": arguments.max_new_tokens, "temperature": arguments.temperature}
    if not chats:
        flags = [f"--{key.replace('_', '-')}" for key, value in given.items() if value is not None]
        if arguments.messages_column:
            flags.append("--messages-column")
        if flags:
            raise ConfigError(f"{', '.join(flags)}: for chat models (sft), not this folder's task")
        return None
    return {key: value for key, value in given.items() if value is not None}


def run_train(arguments: argparse.Namespace) -> int:
    from .training import train

    config = config_from_arguments(arguments)
    result = train(config)
    metrics = {k.removeprefix("eval_"): round(v, 4) for k, v in result.eval_metrics.items()}
    if not result.main_process:
        pass
    elif config.log == "json":
        dropped = {"dropped": result.dropped} if result.dropped else {}
        print(json.dumps({"type": "result", "status": result.status, "steps": result.steps, "dev": metrics,
                          "output_dir": str(result.output_dir), **dropped}))  # fmt: skip
    elif result.status == "finished":
        print(f"trained {result.steps} steps in {result.train_seconds:.0f} s; dev metrics: {json.dumps(metrics)}")
        if result.dropped:
            print(
                "left out (no token to learn): " + ", ".join(f"{n} {k} example(s)" for k, n in result.dropped.items())
            )
        print(f"model written to {result.output_dir}")
    else:
        print(f"{result.status} after {result.steps} steps; continue with --resume {result.checkpoint}")
    return 130 if result.status == "interrupted" else 0


def run_predict(arguments: argparse.Namespace) -> int:
    from . import prediction as predict_module

    if arguments.merge:
        folder = predict_module.merge(arguments.model_dir, arguments.merge, arguments.base_model)
        print(f"merged model written to {folder}")
        return 0
    from pathlib import Path

    task = predict_module.read_task(Path(arguments.model_dir))  # a wrong folder fails before the inputs are read
    from .training.tasks import task_for

    trained = task_for(task["kind"])
    trained.check_predicts()  # so does a model predict cannot serve
    generate_kwargs = _generate_kwargs(arguments, trained.chats)
    if (Path(arguments.model_dir) / "adapter_config.json").is_file():
        predict_module.resolve_base_model(arguments.model_dir, task, arguments.base_model)
    if trained.chats:
        texts, files = _read_conversations(arguments)
        try:
            results = predict_module.predict(
                arguments.model_dir, texts, batch_size=arguments.batch_size, base_model=arguments.base_model,
                generate_kwargs=generate_kwargs,
            )  # fmt: skip
        except (InvalidInputError, ChatTemplateError) as error:  # "conversation N: ..." -> its file and line
            found = re.match(r"conversation (\d+): ", str(error))
            if files is None or found is None:
                raise
            raise DataError(f"{files.where(int(found.group(1)))}: {str(error)[found.end() :]}") from error
    else:
        texts, pairs = _read_inputs(arguments)
        results = predict_module.predict(arguments.model_dir, texts, pairs, batch_size=arguments.batch_size,
                                         base_model=arguments.base_model)  # fmt: skip
    for result in results:
        print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferrotune", description="Fine-tune and run models, fed by ferrotune.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="fine-tune a model (LoRA by default)"))
    predict_help = "classify, tag or translate texts, or answer conversations, with a trained model"
    add_predict_arguments(commands.add_parser("predict", help=predict_help))
    from .chatting import add_chat_arguments

    add_chat_arguments(commands.add_parser("chat", help="talk to a chat model (its template, the history kept)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # ferrotune trains local models: never wait on the Hub
    arguments = build_parser().parse_args(argv)
    # ferrotune's own warnings (a torn metrics line dropped on resume, ...) as one plain line, like its errors.
    show_warning = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
        if filename.startswith(_PACKAGE_DIR):
            print(f"ferrotune {arguments.command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            show_warning(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    try:
        if arguments.command == "chat":
            from .chatting import run_chat

            return run_chat(arguments)
        return run_train(arguments) if arguments.command == "train" else run_predict(arguments)
    except FerrotuneError as error:
        print(f"ferrotune {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show_warning


def console_main() -> Any:
    sys.exit(main())
