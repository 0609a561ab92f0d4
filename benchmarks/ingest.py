"""Ingest benchmark: CSV -> Parquet of a generated listings file, pipeline vs pandas.

    python -m benchmarks.ingest                 # 1 GiB, as in the issue
    python -m benchmarks.ingest --size-mb 200   # quicker

The file is generated in a temporary folder (deleted afterwards) from the demo generator, so it
keeps the real file's quirks: names with quoted commas, quotes and line breaks, empty fields.
Each method runs in a child process of its own, so its peak resident memory (ru_maxrss of that
child, interpreter and imports included) is its own; the timing covers the conversion only.
Runs alternate pandas / pipeline, and the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import PROJECT_ROOT, Report, command_line, median, out

# Peak resident memory the pipeline's conversion must stay under (MiB).
MEMORY_LIMIT_MB = 512
_TEMPLATE_BLOCKS = 4
_TEMPLATE_ROWS = 50_000


def generate_csv(path: Path, size_mb: float, seed: int = 7) -> dict[str, int]:
    """Write a listings CSV of about `size_mb` MiB; return its exact row count and quirk counts.

    A few generated blocks (each a whole number of CSV records) are repeated until the size is
    reached, so the row count is known exactly without parsing the file.
    """
    from steps.ingest.demo_data import generate_listings

    rows_per_block = min(_TEMPLATE_ROWS, max(100, int(size_mb * 1024 * 1024 / 140 / 4)))
    blocks: list[bytes] = []
    counts: list[int] = []
    quirks = {"names_with_line_break": 0, "names_with_comma": 0, "empty_last_review": 0}
    header = ""
    for block in range(_TEMPLATE_BLOCKS):
        frame = generate_listings(rows_per_block, seed + block)
        text = frame.to_csv(index=False, lineterminator="\n")
        header, body = text.split("\n", 1)
        blocks.append(body.encode("utf-8"))
        counts.append(len(frame))
        names = frame["name"].fillna("")
        quirks["names_with_line_break"] += int(names.str.contains("\n").sum())
        quirks["names_with_comma"] += int(names.str.contains(",").sum())
        quirks["empty_last_review"] += int(frame["last_review"].isna().sum())
    target = int(size_mb * 1024 * 1024)
    rows = 0
    written = 0
    repeats = 0
    with path.open("wb") as handle:
        handle.write((header + "\n").encode("utf-8"))
        written += len(header) + 1
        while written < target:
            i = repeats % _TEMPLATE_BLOCKS
            handle.write(blocks[i])
            written += len(blocks[i])
            rows += counts[i]
            repeats += 1
    scale = repeats / _TEMPLATE_BLOCKS
    return {
        "rows": rows,
        "bytes": written,
        **{k: int(v * scale) for k, v in quirks.items()},
    }


def _worker(method: str, src: Path, dst: Path, compression: str) -> dict[str, Any]:
    """Run one conversion in this (child) process; report rows, seconds and peak memory."""
    import pyarrow.parquet as pq

    if method == "pandas":
        import pandas as pd

        started = time.perf_counter()
        frame = pd.read_csv(src)
        frame.to_parquet(dst)
        seconds = time.perf_counter() - started
        rows = len(frame)
        codec = "snappy (pandas default)"
    else:
        from steps.ingest.csv_to_parquet import convert_csv_to_parquet

        started = time.perf_counter()
        stats = convert_csv_to_parquet(src, dst, compression=compression)
        seconds = time.perf_counter() - started
        rows = stats.rows
        codec = compression
    metadata = pq.ParquetFile(dst).metadata
    return {
        "method": method,
        "rows": rows,
        "parquet_rows": metadata.num_rows,
        "row_groups": metadata.num_row_groups,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "codec": codec,
        "parquet_bytes": dst.stat().st_size,
    }


def _run_child(method: str, src: Path, dst: Path, compression: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.ingest",
        "--worker",
        method,
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--compression",
        compression,
    ]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    dst.unlink(missing_ok=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks.ingest", description=__doc__)
    parser.add_argument("--size-mb", type=float, default=1024.0, help="CSV size (MiB)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method")
    parser.add_argument("--compression", default="zstd", help="the pipeline's Parquet codec")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the CSV is generated")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", choices=["pandas", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dst", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        out(json.dumps(_worker(args.worker, args.src, args.dst, args.compression)))
        return 0
    report = Report("ingest", command_line())
    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=args.tmp_dir) as tmp:
        src = Path(tmp) / "listings.csv"
        started = time.perf_counter()
        generated = generate_csv(src, args.size_mb)
        out(
            f"generated {src.name}: {generated['bytes'] / 2**20:,.0f} MiB, "
            f"{generated['rows']:,} rows ({generated['names_with_line_break']:,} names with a "
            f"line break, {generated['names_with_comma']:,} with a comma, "
            f"{generated['empty_last_review']:,} empty last_review) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        runs: dict[str, list[dict[str, Any]]] = {"pandas": [], "pipeline": []}
        for repeat in range(args.repeats):
            for method in ("pandas", "pipeline"):
                result = _run_child(method, src, Path(tmp) / f"{method}.parquet", args.compression)
                runs[method].append(result)
                out(
                    f"run {repeat + 1}/{args.repeats} {method:8s} {result['seconds']:6.2f} s "
                    f"{generated['bytes'] / 1e6 / result['seconds']:6.0f} MB/s "
                    f"peak {result['peak_rss_mb']:,.0f} MiB"
                )

    megabytes = generated["bytes"] / 1e6
    summary: dict[str, dict[str, Any]] = {}
    for method, results in runs.items():
        seconds = median([r["seconds"] for r in results])
        summary[method] = {
            "seconds": seconds,
            "mb_per_s": megabytes / seconds,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "rows_exact": all(r["rows"] == generated["rows"] == r["parquet_rows"] for r in results),
            "codec": results[0]["codec"],
            "row_groups": results[0]["row_groups"],
            "parquet_mb": results[0]["parquet_bytes"] / 1e6,
        }
    base = summary["pandas"]["mb_per_s"]
    report.table(
        f"CSV -> Parquet, {megabytes:,.0f} MB, {generated['rows']:,} rows "
        f"(median of {args.repeats})",
        ["method", "codec", "rows exact", "seconds", "MB/s", "x pandas", "peak RSS MiB"],
        [
            [
                "pandas.read_csv().to_parquet()" if m == "pandas" else "convert_csv_to_parquet",
                s["codec"],
                s["rows_exact"],
                s["seconds"],
                s["mb_per_s"],
                s["mb_per_s"] / base,
                s["peak_rss_mb"],
            ]
            for m, s in summary.items()
        ],
    )
    pipeline = summary["pipeline"]
    report.target("rows exact", pipeline["rows_exact"], "== generated rows", pipeline["rows_exact"])
    report.target(
        "throughput vs pandas",
        pipeline["mb_per_s"] / base,
        ">= 1.0x",
        pipeline["mb_per_s"] >= base,
    )
    report.target(
        "peak RSS MiB",
        pipeline["peak_rss_mb"],
        f"< {MEMORY_LIMIT_MB}",
        pipeline["peak_rss_mb"] < MEMORY_LIMIT_MB,
    )
    report.extra = {"generated": generated, "summary": summary, "runs": runs}
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    sys.exit(main())
