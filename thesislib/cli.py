"""Command line: `thesislib synth`, `check-data`, `report`, `params`, `sweep`.

Expected failures (bad data folder, bad params, existing output, a folder that cannot be written,
a full disk) end with one line on stderr, "thesislib: error: ...", and exit status 2; no
traceback. Checking a data folder does not import torch, so it answers at once.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from thesislib import __version__

__all__ = ["main", "build_parser", "ENVIRONMENT"]

# Every environment variable the package reads, and what it sets; each subcommand's --help lists
# the ones it reads.
ENVIRONMENT = {
    "THESISLIB_DATA": "data folder when none is given (default: the embedded synthetic set)",
    "THESISLIB_RUNS": "runs folder: trained runs, decoded-data cache, executed notebooks (default: <project>/runs)",
    "THESISLIB_WORKERS": "processes that compute runs (default: one per CPU core; 1 on a GPU)",
    "THESISLIB_THREADS": "torch threads per run on the CPU (default 1; results are reproducible per thread count)",
    "JUPYTER_PATH": "searched for kernels; the report prepends its own kernel for this Python",
}


def _env_help(*names: str) -> str:
    """The --help epilog that names the environment variables a subcommand reads."""
    if not names:
        return "environment variables: none are read."
    width = max(map(len, names))
    return "environment variables:\n" + "\n".join(f"  {n:<{width}}  {ENVIRONMENT[n]}" for n in names)


def _synth(args: argparse.Namespace) -> int:
    from thesislib.synth import SynthSpec, synthesize

    spec = SynthSpec(n=args.n, size=args.size, seed=args.seed, glaucoma_fraction=args.glaucoma_fraction,
                     label_noise=args.label_noise, spurious=args.spurious, map_size=args.map_size)
    out = synthesize(args.out, spec, force=args.force, progress=not args.quiet)
    print(f"wrote {spec.n} images and {spec.n} attention maps to {out}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from thesislib.data import DataError, check, resolve_root

    root = args.root or os.environ.get("THESISLIB_DATA")
    if not root:
        raise DataError("check-data: no data folder; expected a folder argument or THESISLIB_DATA set to one")
    print(check(resolve_root(root), skip_corrupt=args.skip_corrupt))
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.data is not None and not str(args.data).startswith("synthetic"):
        from thesislib.data import resolve_root, scan

        scan(resolve_root(args.data))  # a bad data folder fails at once, before torch is imported
    from thesislib.report import build_report

    ok = build_report(params=args.params, data=args.data, out=args.out, notebooks=args.notebooks,
                      workdir=args.workdir, sets=args.sets, command=args.command_line)
    return 0 if ok else 1


def _params(args: argparse.Namespace) -> int:
    import yaml

    from thesislib.report import params_for

    print(yaml.safe_dump(params_for(args.file, args.sets), sort_keys=False), end="")
    return 0


def _add_set(p: argparse.ArgumentParser) -> None:
    """The repeatable --set KEY=VALUE option of `report` and `params`."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="change a parameter after the notebook's params are merged (study design, the scale's "
                        "shared.yaml, its own file); "
                        "VALUE is YAML, a dotted KEY sets inside a mapping (--set 'seeds=[0,1,2]' "
                        "--set base.epochs=12); repeatable, applied in order")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thesislib", description=__doc__.splitlines()[0],
                                     epilog="Each command's --help names the environment variables it reads.")
    parser.add_argument("--version", action="version", version=f"thesislib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("synth", help="write a synthetic fundus data set in the LAG layout",
                       epilog=_env_help(), formatter_class=raw)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="seed; the same seed gives identical files")
    p.add_argument("--label-noise", type=float, default=0.05, help="share of images filed under the wrong class")
    p.add_argument("--glaucoma-fraction", type=float, default=0.35, help="share of glaucoma images")
    p.add_argument("--spurious", type=float, default=None,
                   help="corner-marker shortcut: P(marker | glaucoma) = p, P(marker | healthy) = 1 - p (off by default)")
    p.add_argument("--map-size", type=int, default=None, help="attention-map side (default: LAG's ratio)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)

    p = sub.add_parser("check-data", help="check that a folder is in the LAG layout, that every file reads, and count",
                       description="Check a data folder as the study reads it: the LAG layout, an attention map "
                                   "for every image, every file decodable, photos 8-bit RGB, maps 8-bit grayscale, "
                                   "enough pairs per class for train/val/test; count blank maps and maps of another "
                                   "size or aspect ratio than their image.",
                       epilog=_env_help("THESISLIB_DATA"), formatter_class=raw)
    p.add_argument("root", nargs="?", default=None,
                   help="data folder, or a synthetic set's name such as synthetic-n240-s64 (default: $THESISLIB_DATA)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="count unreadable pairs instead of stopping at the first (as skip_corrupt: true in params)")
    p.set_defaults(func=_check_data)

    p = sub.add_parser("report", help="run the notebooks with papermill and build reports/index.html",
                       epilog=_env_help("THESISLIB_DATA", "THESISLIB_RUNS", "THESISLIB_WORKERS", "THESISLIB_THREADS",
                                        "JUPYTER_PATH"), formatter_class=raw)
    p.add_argument("--params", type=Path, default=Path("params/default"), help="params folder (default params/default)")
    p.add_argument("--data", default=None, help="LAG-layout data folder for every notebook (default: the params' "
                   "data, else $THESISLIB_DATA, else the embedded synthetic set)")
    p.add_argument("--out", type=Path, default=Path("reports/index.html"), help="report file")
    p.add_argument("--notebooks", nargs="*", default=None, help="only these notebooks (names like 01_depth)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where executed notebooks go (default $THESISLIB_RUNS/notebooks/<params name>)")
    _add_set(p)
    p.set_defaults(func=_report)

    p = sub.add_parser("params", help="print a notebook's params as they run: its layers merged, --set applied",
                       description="Print, as YAML, the params a notebook runs with from one params file: the "
                                   "study design (params/study/<notebook>.yaml) and its scale's shared.yaml "
                                   "merged under it, then the --set changes, checked as `thesislib report` "
                                   "checks them. Feed it to papermill with -f.",
                       epilog=_env_help(), formatter_class=raw)
    p.add_argument("file", type=Path, help="a notebook's params file, e.g. params/default/01_depth.yaml")
    _add_set(p)
    p.set_defaults(func=_params)

    p = sub.add_parser("readme", help="rewrite the README's first look from a report's summary.json",
                       description="Rewrite the README's first-look block from the summary.json that "
                                   "`thesislib report` writes beside the report, and keep its facts in "
                                   "docs/first-look.json (the tests re-render the block from it).",
                       epilog=_env_help(), formatter_class=raw)
    p.add_argument("--summary", type=Path, default=Path("reports/summary.json"),
                   help="a report's summary.json (default reports/summary.json, from `make report`)")
    p.add_argument("--readme", type=Path, default=None, help="the README to rewrite (default: the project's)")
    p.set_defaults(func=_readme)

    from thesislib.sweep import add_parser as add_sweep_parser  # imports nothing heavy

    add_sweep_parser(sub)
    return parser


def _readme(args) -> int:
    from thesislib.paths import project_root
    from thesislib.summary import write_readme

    root = project_root()
    readme = args.readme or root / "README.md"
    block = write_readme(args.summary, readme, readme.parent / "docs" / "first-look.json")
    print(f"rewrote the first look of {readme}:\n{block}")
    return 0


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or an unusable disk, not a bug: reported in one line.

    DataError and ConfigError are ValueErrors, WriteError an OSError; RunError is looked up only
    where its module is loaded (a command that never imported it cannot have raised it), so
    nothing here imports torch.
    """
    types: list[type[BaseException]] = [ValueError, OSError]
    runs = sys.modules.get("thesislib.study.runs")
    if runs is not None:
        types.append(runs.RunError)
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(sys.argv if argv is None else ["thesislib", *map(str, argv)])
    try:
        return args.func(args)
    except _expected_errors() as err:
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        print(f"thesislib: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thesislib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
