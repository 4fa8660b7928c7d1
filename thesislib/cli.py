"""Command line: `thesislib synth`, `thesislib check-data`, `thesislib report`.

Expected failures (bad data folder, bad params, existing output) end with one line on stderr,
"thesislib: error: ...", and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _synth(args: argparse.Namespace) -> int:
    from thesislib.synth import SynthSpec, synthesize

    spec = SynthSpec(n=args.n, size=args.size, seed=args.seed, glaucoma_fraction=args.glaucoma_fraction,
                     label_noise=args.label_noise, spurious=args.spurious, map_size=args.map_size)
    out = synthesize(args.out, spec, force=args.force, progress=not args.quiet)
    print(f"wrote {spec.n} images and {spec.n} attention maps to {out}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from thesislib.data import scan
    from thesislib.layout import CLASSES

    records = scan(args.root)
    counts = {c: sum(r.label == i for r in records) for i, c in enumerate(CLASSES)}
    print(f"{args.root}: LAG layout, {len(records)} image/map pairs ("
          + ", ".join(f"{c}: {n}" for c, n in counts.items()) + ")")
    return 0


def _report(args: argparse.Namespace) -> int:
    from thesislib.report import build_report

    ok = build_report(params=args.params, data=args.data, out=args.out, notebooks=args.notebooks,
                      workdir=args.workdir)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thesislib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic fundus data set in the LAG layout")
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

    p = sub.add_parser("check-data", help="check that a folder is in the LAG layout and count its images")
    p.add_argument("root", type=Path)
    p.set_defaults(func=_check_data)

    p = sub.add_parser("report", help="run the notebooks with papermill and build reports/index.html")
    p.add_argument("--params", type=Path, default=Path("params/default"), help="params folder (default params/default)")
    p.add_argument("--data", default=None, help="LAG-layout data folder for every notebook (default: the params' "
                   "data, else $THESISLIB_DATA, else the embedded synthetic set)")
    p.add_argument("--out", type=Path, default=Path("reports/index.html"), help="report file")
    p.add_argument("--notebooks", nargs="*", default=None, help="only these notebooks (names like 01_depth)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where executed notebooks go (default runs/notebooks/<params name>)")
    p.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from thesislib.data import DataError
    from thesislib.study.config import ConfigError

    try:
        return args.func(args)
    except (DataError, ConfigError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"thesislib: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thesislib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
