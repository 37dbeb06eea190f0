"""Chat SFT data preparation on CPU: LIMA conversations (1x and 20x) from the JSONL file to training batches.

  transformers  `tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True,
                return_assistant_tokens_mask=True)` over the data (Jinja2 in Python, then the Rust tokenizer)
  trl           TRL's SFTTrainer dataset preparation (`SFTTrainer._prepare_dataset`: datasets.map tokenization with
                assistant masks, then best-fit-decreasing packing, `packing_strategy="bfd"`) on the same data
  ferrotune     what `ferrotune train --task sft` does before the first step: read the JSONL, render and tokenize in
                Rust with the loss masks (`ferrotune.chat.tokenize_conversations`), then pack whole conversations
                into rows and build every batch (`ConversationBatches`)

The SmolLM2 tokenizer (../shared/data/tokenizers/smollm2-135m-instruct) with its ChatML template, given
`{% generation %}` blocks around each assistant turn (the masks transformers and TRL need; ferrotune finds the same
masks from the message structure of the plain template, tested equal), max length 2048. Before timing, ferrotune's
ids and masks are checked identical to transformers' on every conversation. Reported per path and data size:
conversations/s and tokens/s (from the JSONL file to the last batch, min of --repeats, each path in its own
process), time to the first batch, peak RSS of that process, and the fraction of tokens with loss.

Run from the repository root:  python benches/bench_sft.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_sft.json"
PATHS = ("transformers", "trl", "ferrotune")
MAX_LENGTH = 2048
BATCH_ROWS = 8
GENERATION_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\n'}}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + "
    "'<|im_end|>' + '\n' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of %(default)s")
    parser.add_argument("--copies", default="1,20", help="data sizes, in copies of LIMA (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="first N conversations of LIMA (default: all 1,029)")
    parser.add_argument("--repeats", type=int, default=2, help="timings, min of N (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 conversations, 1x and 2x, 1 repeat")
    parser.add_argument("--worker", nargs=3, metavar=("PATH", "FILE", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.copies, args.repeats = args.limit or 64, "1,2", 1
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    args.copies = [int(c) for c in args.copies.split(",")]
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tokenizer_dir(data_dir: Path) -> Path:
    return data_dir / "tokenizers" / "smollm2-135m-instruct"


def read_jsonl(path: Path) -> list[list[dict]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["messages"] for line in handle]


# --------------------------------------------------------------------------------------------------
# The three paths, each from the file to its final product


def run_transformers(path: Path, data_dir: Path) -> dict:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(data_dir))
    start = time.perf_counter()
    chats = read_jsonl(path)
    first = tokenizer.apply_chat_template(
        chats[:BATCH_ROWS],
        chat_template=GENERATION_TEMPLATE,
        return_dict=True,
        return_assistant_tokens_mask=True,
        truncation=True,
        max_length=MAX_LENGTH,
    )
    first_batch = time.perf_counter() - start
    out = tokenizer.apply_chat_template(
        chats,
        chat_template=GENERATION_TEMPLATE,
        return_dict=True,
        return_assistant_tokens_mask=True,
        truncation=True,
        max_length=MAX_LENGTH,
    )
    seconds = time.perf_counter() - start
    del first
    tokens = sum(map(len, out["input_ids"]))
    learned = sum(map(sum, out["assistant_masks"]))
    return {"seconds": seconds, "first_batch": first_batch, "conversations": len(chats), "tokens": tokens,
            "learned": learned, "ids": out["input_ids"], "masks": out["assistant_masks"]}  # fmt: skip


def run_trl(path: Path, data_dir: Path) -> dict:
    import types

    import datasets
    import transformers
    from trl import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(data_dir))
    start = time.perf_counter()
    dataset = datasets.load_dataset("json", data_files=str(path), split="train").select_columns(["messages"])
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(output_dir=scratch, max_length=MAX_LENGTH, packing=True, packing_strategy="bfd",
                           assistant_only_loss=True, report_to=[], use_cpu=True)  # fmt: skip
        trainer = types.SimpleNamespace(_tokenizer=tokenizer, completion_only_loss=None,
                                        chat_template=GENERATION_TEMPLATE)  # fmt: skip
        packed = SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, config, True, None, "train")
    seconds = time.perf_counter() - start
    lengths = [len(ids) for ids in packed["input_ids"]]
    learned = sum(map(sum, packed["assistant_masks"])) if "assistant_masks" in packed.column_names else None
    return {"seconds": seconds, "first_batch": seconds, "conversations": len(dataset), "tokens": sum(lengths),
            "learned": learned, "rows": len(lengths)}  # fmt: skip


def run_ferrotune(path: Path, data_dir: Path) -> dict:
    import ferrotune
    import pyarrow as pa
    from ferrotune.chat import tokenize_conversations
    from ferrotune.sources import DataFiles
    from ferrotune.training.tasks.sft import ConversationBatches

    tokenizer = ferrotune.Tokenizer.from_pretrained(tokenizer_dir(data_dir))
    start = time.perf_counter()
    chats = DataFiles(path, "jsonl").read(["messages"]).column("messages").to_pylist()
    out = tokenize_conversations(tokenizer, chats, max_length=MAX_LENGTH, on_empty="drop", boundaries="characters")
    encoded = pa.table({"input_ids": pa.array(out["input_ids"], pa.list_(pa.int64())),
                        "labels": pa.array(out["labels"], pa.list_(pa.int64()))})  # fmt: skip
    batches = ConversationBatches(encoded, BATCH_ROWS, MAX_LENGTH, tokenizer.pad_token_id or 0, seed=0)
    iterator = iter(batches)
    next(iterator)
    first_batch = time.perf_counter() - start
    rows = 1 + sum(1 for _ in iterator)
    seconds = time.perf_counter() - start
    tokens = sum(map(len, out["input_ids"]))
    learned = sum(sum(1 for label in labels if label != -100) for labels in out["labels"])
    return {"seconds": seconds, "first_batch": first_batch, "conversations": len(chats), "tokens": tokens,
            "learned": learned, "batches": rows, "dropped": out["dropped"], "ids": out["input_ids"],
            "masks": [[int(label != -100) for label in labels] for labels in out["labels"]]}  # fmt: skip


RUNNERS = {"transformers": run_transformers, "trl": run_trl, "ferrotune": run_ferrotune}


def worker(name: str, file: str, repeats: int, data_dir: Path) -> None:
    """One path in this process: min of the repeats; peak RSS of the process."""
    best = None
    for _ in range(repeats):
        result = RUNNERS[name](Path(file), data_dir)
        result.pop("ids", None), result.pop("masks", None)
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    best["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(best))


def check_identity(file: Path, data_dir: Path) -> None:
    """ferrotune's ids and masks (structure masks of the plain template) equal transformers' (generation blocks)."""
    expected, got = run_transformers(file, data_dir), run_ferrotune(file, data_dir)
    if got["dropped"]:
        raise SystemExit(f"ferrotune dropped {got['dropped']} conversation(s) with nothing to learn")
    assert got["ids"] == expected["ids"], "ids differ from transformers'"
    assert got["masks"] == [list(m) for m in expected["masks"]], "loss masks differ from transformers' assistant_masks"


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "trl", "ferrotune", "datasets", "tokenizers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), args.data_dir)
        return 0
    lima = args.data_dir / "sft" / "lima.jsonl"
    if not lima.is_file() or not (tokenizer_dir(args.data_dir) / "tokenizer.json").is_file():
        progress(f"LIMA or the SmolLM2 tokenizer not found under {args.data_dir}: nothing to benchmark")
        return 1
    paths = [p for p in args.paths if p != "trl" or _has("trl")]
    if "trl" in args.paths and "trl" not in paths:
        progress("trl is not installed: its path is skipped (pip install trl)")
    lines = lima.read_text(encoding="utf-8").splitlines(keepends=True)[: args.limit]
    results: dict[str, dict] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        for copies in args.copies:
            file = Path(scratch) / f"lima_x{copies}.jsonl"
            file.write_text("".join(lines) * copies, encoding="utf-8")
            if copies == args.copies[0]:
                check_identity(file, args.data_dir)
                progress("ferrotune's ids and loss masks equal transformers' on every conversation")
            for name in paths:
                command = [sys.executable, __file__, "--data-dir", str(args.data_dir), "--worker", name, str(file),
                           str(args.repeats)]  # fmt: skip
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                row = json.loads(output.strip().splitlines()[-1])
                results.setdefault(f"x{copies}", {})[name] = row
                progress(f"x{copies} {name}: {json.dumps(row)}")
    report = {
        "benchmark": "sft", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(), "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "settings": {"limit": args.limit, "copies": args.copies, "repeats": args.repeats, "max_length": MAX_LENGTH,
                     "batch_rows": BATCH_ROWS, "quick": args.quick},
        "results": results,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"LIMA ({args.limit or 'all'} conversations) x {args.copies}, SmolLM2 tokenizer, max length {MAX_LENGTH}; "
          f"{os.cpu_count()} cores; {json.dumps(report['versions'])}\n")  # fmt: skip
    header = ["data", "path", "conversations/s", "tokens/s", "first batch s", "peak RSS MB", "loss tokens", "x"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for size, rows in results.items():
        for name, row in rows.items():
            speedup = rows["ferrotune"]["seconds"] and row["seconds"] / rows["ferrotune"]["seconds"]
            share = f"{row['learned'] / row['tokens']:.1%}" if row.get("learned") is not None else "-"
            rate = row["seconds"]
            cells = [size, name, f"{row['conversations'] / rate:,.0f}", f"{row['tokens'] / rate:,.0f}",
                     f"{row['first_batch']:.3f}", f"{row['peak_rss_mb']:.0f}", share, f"{speedup:.1f}"]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
    print("\nx: seconds of the path / seconds of ferrotune (from the file to the last batch)")
    print(f"raw results: {args.json}")
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
