"""python -m benchmarks [--quick] [--device cpu|cuda] [--only NAME ...] [--threads N]

Prints one line per figure, `name: ratio (ours vs baseline) - detail`, and writes them to
benchmarks/RESULTS.md (RESULTS-gpu.md on CUDA) with the device, torch version, date and commit.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmarks import common, gpu, gradients, metrics, scorecam, training

FIGURES = {"score-cam": scorecam.run, "gradients": gradients.run, "metrics": metrics.run,
           "training": training.run, "gpu": gpu.run}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="Measured speed ratios, ours vs baseline.")
    ap.add_argument("--quick", action="store_true", help="smaller inputs: a few minutes on a 2-core CPU")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="run only these figures")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)")
    ap.add_argument("--out", help="results file (default benchmarks/RESULTS.md, RESULTS-gpu.md on CUDA)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible to torch", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    bench = common.Bench(torch.device(args.device), args.quick)
    figures, t0 = [], time.perf_counter()
    for name in args.only or FIGURES:
        t = time.perf_counter()
        out = FIGURES[name](bench)
        for fig in out if isinstance(out, list) else [out]:
            print(fig.line(), flush=True)
            figures.append(fig)
        print(f"  ({name}: {time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    out = args.out or common.HERE / ("RESULTS-gpu.md" if args.device == "cuda" else "RESULTS.md")
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + f" --device {args.device}" + \
        (f" --only {' '.join(args.only)}" if args.only else "")
    common.write_results(common.Path(out), "Benchmarks", figures, bench.device, command,
                         extra=f"Total {time.perf_counter() - t0:.0f} s.")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
