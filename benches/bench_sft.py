"""Chat SFT data preparation on CPU: LIMA conversations (1x and 20x) from the JSONL file to training batches.

  transformers     `tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True,
                   return_assistant_tokens_mask=True)` over the data (Jinja2 in Python, then the Rust tokenizer)
  trl              TRL's SFTTrainer dataset preparation (`SFTTrainer._prepare_dataset`: datasets.map tokenization with
                   assistant masks, then best-fit-decreasing packing, `packing_strategy="bfd"`) on the same data
  ferrotune        ferrotune's loader, from the JSONL file to packed batches: `ferrotune.StreamingLoader(file,
                   tokenizer, messages_column="messages", truncation=True, max_length=2048, packing=True,
                   max_tokens=16384, on_empty="drop", return_tensors="np", shuffle_buffer=1024, rows_per_unit=1024)`
                   iterated to its last batch. Window by window it reads the conversations, renders the chat template,
                   tokenizes, masks (labels -100 outside the assistant's answers) and packs them best-fit into flat
                   batches of up to 16,384 tokens (8 rows of 2048), `DataCollatorWithFlattening`'s keys, in Rust
  ferrotune_1core  the same loader with RAYON_NUM_THREADS=1 in its process: the packed tokens/s one core sustains, to
                   set beside the ~300,000 tokens/s per GPU that fine-tuning a 0.5B model on one H100/H200 consumes
                   (the issue's figure, not measured here; the loader must never fall under it)
  ferrotune_units8192  the same loader with rows_per_unit left at its default, 8192 (peak RSS and first batch only
                   differ)

Window: shuffle_buffer=1024 conversations. The loader reads, tokenizes and plans a whole window before it yields that
window's first batch, so the time to the first batch is the line index of the file plus one window's work, whatever
the size of the file; the goal is under 1 s on the 20x data. LIMA's conversations average ~660 tokens, so a window of
1024 is ~675k tokens: a fraction of a second on 2 cores, with room for a loaded machine, where a window of 2048 would
take twice as long. Packing is best-fit within a window, and 1024 conversations already fill the 16,384-token batches
almost completely (98.5% of their tokens on 20x: 841 batches); a larger window buys little packing and costs
first-batch time. rows_per_unit=1024: the JSONL reader parses a whole unit of lines into Arrow and keeps it while
windows are taken from it; with the default 8192 that is 8 windows' worth of parsed conversations held at once (and
parsed before the first batch), which LIMA 1x (1,029 lines) never reaches but 20x does: peak RSS then grows with the
file up to 8192 lines. Units of one window keep it flat, and shuffle better (the unit order is what is shuffled
beyond a window). The ferrotune_units8192 row shows the difference.

The SmolLM2 tokenizer (../shared/data/tokenizers/smollm2-135m-instruct) with its ChatML template, given
`{% generation %}` blocks around each assistant turn (the masks transformers and TRL need; ferrotune finds the same
masks from the message structure of the plain template, boundaries="characters"), max length 2048. Before timing, on
the first data size: ferrotune's ids and loss masks (`ferrotune.chat.tokenize_conversations`, one list per
conversation) are checked identical to transformers' on every conversation, and the loader's packed batches are
checked to hold exactly those conversations (each one's labels, -100 at its first token, as in any packed batch).

Each path and data size runs --repeats times, each run in its own process; libraries are imported and the tokenizer
loaded before the clock starts. Reported: conversations/s and tokens/s from the JSONL file to the last batch (min of
the repeats), the time to the first batch of that run, the peak RSS (max over the repeats; the RSS when the clock
started, libraries loaded, is kept beside it), the fraction of tokens with loss, the cores used (CPU time of all the
process's threads over the wall time: under 2 on 2 cores when other jobs hold one), and the time of transformers and
of TRL over the path's (x transformers, x TRL). The load average of the machine is recorded per run.

Run from the repository root:  python benches/bench_sft.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_sft.json"
PATHS = ("transformers", "trl", "ferrotune", "ferrotune_1core", "ferrotune_units8192")
MAX_LENGTH = 2048
BATCH_ROWS = 8
BATCH_TOKENS = BATCH_ROWS * MAX_LENGTH  # the loader's packed batches: 8 rows of 2048 tokens, flattened
SHUFFLE_BUFFER = 1024  # conversations per window: see the docstring
ROWS_PER_UNIT = 1024
GPU_TOKENS_PER_S = 300_000  # what fine-tuning a 0.5B model consumes per H100/H200 GPU (the figure)
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
    parser.add_argument("--repeats", type=int, default=2, help="runs per path and size (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 conversations, 1x and 2x, 1 repeat")
    parser.add_argument("--worker", nargs=2, metavar=("PATH", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.copies, args.repeats = args.limit or 64, "1,2", 1
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {list(PATHS)}")
    args.copies = [int(c) for c in args.copies.split(",")]
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tokenizer_dir(data_dir: Path) -> Path:
    return data_dir / "tokenizers" / "smollm2-135m-instruct"


def read_jsonl(path: Path) -> list[list[dict]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["messages"] for line in handle]


def rss_mb(field: str = "VmRSS") -> float:
    """The process's resident set now (VmRSS) or its peak (VmHWM). Not ru_maxrss: Linux carries the peak of the
    forked parent's memory over the exec into the child's ru_maxrss, so every worker would report the parent's."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


# --------------------------------------------------------------------------------------------------
# The paths, each from the file to its final product


def run_transformers(path: Path, data_dir: Path) -> dict:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(data_dir))
    rss_start, cpu = rss_mb(), time.process_time()
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
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    del first
    tokens = sum(map(len, out["input_ids"]))
    learned = sum(map(sum, out["assistant_masks"]))
    return {"seconds": seconds, "first_batch": first_batch, "conversations": len(chats), "tokens": tokens,
            "learned": learned, "cpu_seconds": cpu, "rss_start_mb": rss_start, "ids": out["input_ids"],
            "masks": out["assistant_masks"]}  # fmt: skip


def run_trl(path: Path, data_dir: Path) -> dict:
    import types

    import datasets
    import transformers
    from trl import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(data_dir))
    rss_start, cpu = rss_mb(), time.process_time()
    start = time.perf_counter()
    dataset = datasets.load_dataset("json", data_files=str(path), split="train").select_columns(["messages"])
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(output_dir=scratch, max_length=MAX_LENGTH, packing=True, packing_strategy="bfd",
                           assistant_only_loss=True, report_to=[], use_cpu=True)  # fmt: skip
        trainer = types.SimpleNamespace(_tokenizer=tokenizer, completion_only_loss=None,
                                        chat_template=GENERATION_TEMPLATE)  # fmt: skip
        packed = SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, config, True, None, "train")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    lengths = [len(ids) for ids in packed["input_ids"]]
    # TRL 1.16 folds the assistant masks into "labels" (-100 where no loss applies) and drops them.
    if "labels" in packed.column_names:
        learned = sum(sum(1 for label in labels if label != -100) for labels in packed["labels"])
    else:
        learned = sum(map(sum, packed["assistant_masks"])) if "assistant_masks" in packed.column_names else None
    return {"seconds": seconds, "first_batch": seconds, "conversations": len(dataset), "tokens": sum(lengths),
            "learned": learned, "rows": len(lengths), "cpu_seconds": cpu, "rss_start_mb": rss_start}  # fmt: skip


def ferrotune_loader(path: Path, tokenizer, rows_per_unit: int = ROWS_PER_UNIT):
    import ferrotune

    return ferrotune.StreamingLoader(str(path), tokenizer, messages_column="messages", truncation=True,
                                     max_length=MAX_LENGTH, packing=True, max_tokens=BATCH_TOKENS, on_empty="drop",
                                     return_tensors="np", shuffle_buffer=SHUFFLE_BUFFER,
                                     rows_per_unit=rows_per_unit)  # fmt: skip


def run_ferrotune(path: Path, data_dir: Path, rows_per_unit: int = ROWS_PER_UNIT) -> dict:
    import ferrotune
    import ferrotune.streaming  # noqa: F401  (torch: imported before the clock, as the other paths' libraries)
    import pyarrow.compute  # noqa: F401  (the loader imports it on first use)
    import pyarrow.json  # noqa: F401

    tokenizer = ferrotune.Tokenizer.from_pretrained(tokenizer_dir(data_dir))
    rss_start, cpu = rss_mb(), time.process_time()
    start = time.perf_counter()
    loader = ferrotune_loader(path, tokenizer, rows_per_unit)
    iterator = iter(loader)
    batch = next(iterator)
    first_batch = time.perf_counter() - start
    learned = int((batch["labels"] != -100).sum())
    for batch in iterator:
        learned += int((batch["labels"] != -100).sum())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = loader.stats
    return {"seconds": seconds, "first_batch": first_batch, "conversations": stats["examples"],
            "tokens": stats["tokens"], "learned": learned, "batches": stats["batches"], "dropped": stats["dropped"],
            "cpu_seconds": cpu, "rss_start_mb": rss_start}  # fmt: skip


RUNNERS = {
    "transformers": run_transformers,
    "trl": run_trl,
    "ferrotune": run_ferrotune,
    "ferrotune_1core": run_ferrotune,  # RAYON_NUM_THREADS=1 in its environment
    "ferrotune_units8192": lambda path, data_dir: run_ferrotune(path, data_dir, rows_per_unit=8192),
}


def worker(name: str, file: str, data_dir: Path) -> None:
    """One run of one path in this process: its figures, its CPU time and the peak RSS of the process."""
    load = os.getloadavg()
    result = RUNNERS[name](Path(file), data_dir)
    result.pop("ids", None), result.pop("masks", None)
    result["peak_rss_mb"] = rss_mb("VmHWM")
    result["load_average_1min"] = load[0]
    print(json.dumps(result))


def measure(name: str, file: Path, repeats: int, data_dir: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if name == "ferrotune_1core":
        env["RAYON_NUM_THREADS"] = "1"
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--data-dir", str(data_dir), "--worker", name, str(file)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{name} on {file.name} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = dict(min(runs, key=lambda run: run["seconds"]))
    best["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    best["all_seconds"] = [run["seconds"] for run in runs]
    best["all_first_batch"] = [run["first_batch"] for run in runs]
    best["all_load_average_1min"] = [run["load_average_1min"] for run in runs]
    best["conversations_per_s"] = best["conversations"] / best["seconds"]
    best["tokens_per_s"] = best["tokens"] / best["seconds"]
    best["cores_used"] = best["cpu_seconds"] / best["seconds"]  # CPU time of all threads over the wall time
    best["loss_fraction"] = best["learned"] / best["tokens"] if best.get("learned") is not None else None
    return best


def check_identity(file: Path, data_dir: Path) -> None:
    """ferrotune's ids and masks (structure masks of the plain template) equal transformers' (generation blocks) on
    every conversation, and the loader's packed batches hold exactly those conversations."""
    import ferrotune
    from ferrotune.chat import tokenize_conversations

    expected = run_transformers(file, data_dir)
    tokenizer = ferrotune.Tokenizer.from_pretrained(tokenizer_dir(data_dir))
    out = tokenize_conversations(tokenizer, read_jsonl(file), max_length=MAX_LENGTH, on_empty="drop",
                                 boundaries="characters")  # fmt: skip
    if out["dropped"]:
        raise SystemExit(f"ferrotune dropped {out['dropped']} conversation(s) with nothing to learn")
    masks = [[int(label != -100) for label in labels] for labels in out["labels"]]
    assert out["input_ids"] == expected["ids"], "ids differ from transformers'"
    assert masks == [list(m) for m in expected["masks"]], "loss masks differ from transformers' assistant_masks"
    # In a pack nothing predicts a conversation's first token: its label is -100 there.
    want = Counter((tuple(ids), (-100, *(i if m else -100 for i, m in zip(ids[1:], mask[1:]))))
                   for ids, mask in zip(expected["ids"], expected["masks"]))  # fmt: skip
    got: Counter = Counter()
    for batch in ferrotune_loader(file, tokenizer):
        ids, labels, bounds = batch["input_ids"][0], batch["labels"][0], batch["cu_seq_lens_q"]
        assert ids.shape[0] <= BATCH_TOKENS
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            got[(tuple(ids[start:end].tolist()), tuple(labels[start:end].tolist()))] += 1
    assert got == want, "the loader's packed batches do not hold exactly transformers' conversations"


def build_identity() -> dict[str, str | None]:
    """The commit checked out and a digest of the built extension: a rebuild during the run shows as a change."""
    import hashlib

    import ferrotune

    extension = next(Path(ferrotune.__file__).parent.glob("_core*.so"), None)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = None
    digest = hashlib.sha256(extension.read_bytes()).hexdigest()[:16] if extension else None
    return {"git_commit": commit, "extension_sha256": digest}


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "trl", "ferrotune", "datasets", "tokenizers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def table(results: dict) -> str:
    header = ["data", "path", "conversations/s", "tokens/s", "first batch s", "peak RSS MB (at start)", "loss tokens",
              "cores used", "x transformers", "x TRL"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, rows in results.items():
        for name, row in rows.items():
            ratios = [f"{rows[base]['seconds'] / row['seconds']:.1f}" if base in rows else "-"
                      for base in ("transformers", "trl")]  # fmt: skip
            share = f"{row['loss_fraction']:.1%}" if row.get("loss_fraction") is not None else "-"
            cells = [size, name, f"{row['conversations_per_s']:,.0f}", f"{row['tokens_per_s']:,.0f}",
                     f"{row['first_batch']:.2f}", f"{row['peak_rss_mb']:,.0f} ({row['rss_start_mb']:,.0f})", share,
                     f"{row['cores_used']:.2f}", *ratios]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker:
        worker(args.worker[0], args.worker[1], args.data_dir)
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
    load_before, build = os.getloadavg(), build_identity()
    with tempfile.TemporaryDirectory() as scratch:
        for copies in args.copies:
            file = Path(scratch) / f"lima_x{copies}.jsonl"
            file.write_text("".join(lines) * copies, encoding="utf-8")
            if copies == args.copies[0]:
                check_identity(file, args.data_dir)
                progress("ferrotune's ids and loss masks equal transformers' on every conversation, and the loader's "
                         "packed batches hold exactly those conversations")  # fmt: skip
            for name in paths:
                row = measure(name, file, args.repeats, args.data_dir)
                results.setdefault(f"x{copies}", {})[name] = row
                progress(f"x{copies} {name}: {json.dumps(row)}")
    report = {
        "benchmark": "sft", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(), "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "settings": {"limit": args.limit, "copies": args.copies, "repeats": args.repeats, "max_length": MAX_LENGTH,
                     "batch_rows": BATCH_ROWS, "max_tokens": BATCH_TOKENS, "shuffle_buffer": SHUFFLE_BUFFER,
                     "rows_per_unit": ROWS_PER_UNIT, "quick": args.quick},
        "gpu_reference_tokens_per_s": GPU_TOKENS_PER_S,
        "build": build, "results": results,
    }  # fmt: skip
    if build_identity()["extension_sha256"] != build["extension_sha256"]:
        report["build"]["changed_during_run"] = True
        progress("warning: ferrotune's extension was rebuilt during the run: the figures mix two builds")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"LIMA ({args.limit or 'all'} conversations) x {args.copies}, SmolLM2 tokenizer, max length {MAX_LENGTH}; "
          f"{os.cpu_count()} cores, load average {load_before[0]:.2f} at the start; "
          f"{json.dumps(report['versions'])}\n")  # fmt: skip
    print(table(results))
    print("\nx transformers, x TRL: seconds of that path / seconds of this one (from the file to the last batch)")
    for size, rows in results.items():
        if "ferrotune_1core" in rows:
            rate = rows["ferrotune_1core"]["tokens_per_s"]
            print(f"{size}: one core sustains {rate:,.0f} packed tokens/s, {rate / GPU_TOKENS_PER_S:.1f}x the "
                  f"~{GPU_TOKENS_PER_S:,} tokens/s a 0.5B model's fine-tuning consumes per H100/H200")  # fmt: skip
    sizes = [size for size in results if "ferrotune" in results[size]]
    if len(sizes) > 1:
        peaks = ", ".join(f"{size} {results[size]['ferrotune']['peak_rss_mb']:,.0f} MB" for size in sizes)
        print(f"ferrotune peak RSS: {peaks}")
    print(f"raw results: {args.json}")
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
