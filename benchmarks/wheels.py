"""Fill a wheel folder with what an offline GPU machine needs beyond its stack (`make wheels`).

    python -m benchmarks.wheels [--dest wheels] [--list] [--skip NAME,...]

The GPU machine is assumed to have CPython 3.12 on manylinux x86_64 with torch, torchvision, numpy,
scipy, pandas, scikit-image, matplotlib, seaborn, tqdm and pyyaml (and what they pull in). It
lacks pytorch-grad-cam's dependency closure (`make gpu-check`) and that of papermill, nbformat,
nbconvert and ipykernel (`make report PARAMS=params/gpu`). pip resolves both sets for that target
(`pip install --dry-run --report`, metadata only); the difference is downloaded with `--no-deps`,
so torch and its CUDA libraries are never fetched; `--skip` leaves out what the target already has
(e.g. `--skip opencv-python-headless,scikit-learn`, 60 MB of the folder's 85, on an image that has both)
(grad-cam, a source archive on PyPI, is built into a pure-Python wheel without its dependencies). Needs PyPI; prints the folder's total size.
numba (in pyproject.toml) is not fetched: thesislib.metrics compiles its CPU kernels with it where it
imports and runs its torch code, with the same values, where it does not (CUDA tensors always do).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# grad-cam is fetched without dependencies (it requires torch, which pip would download to resolve);
# its own requirements besides torch, torchvision and the stack are listed here instead.
GRAD_CAM = "grad-cam>=1.5.4,<1.6"
NEEDED = ("ttach", "opencv-python-headless", "scikit-learn", "papermill", "nbformat", "nbconvert", "ipykernel")
GPU_STACK = ("numpy", "scipy", "pandas", "scikit-image", "matplotlib", "seaborn", "tqdm", "pyyaml")
# torch's own pure-Python requirements, present wherever torch is (not resolved: that fetches torch)
TORCH_DEPS = ("filelock", "typing-extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec",
              "setuptools", "pillow")
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:",
          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux2014_x86_64"]


def resolve(requirements) -> dict[str, str]:
    """name -> version pip would install for `requirements` on the target (nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--disable-pip-version-check", "--target", tmp, "--report", str(report), *TARGET,
                        *requirements], check=True)
        items = json.loads(report.read_text())["install"]
    return {_key(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def needed(skip=()) -> dict[str, str]:
    """What NEEDED installs on the target that GPU_STACK (and `skip`) do not already bring."""
    stack = set(resolve(GPU_STACK)) | set(TORCH_DEPS) | {_key(s) for s in skip}
    return {k: v for k, v in sorted(resolve(NEEDED).items()) if k not in stack}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default="wheels", help="wheel folder (default: wheels)")
    ap.add_argument("--list", action="store_true", help="print the pinned names only, download nothing")
    ap.add_argument("--skip", default="", help="comma-separated packages the target already has")
    args = ap.parse_args()
    pins = [f"{k}=={v}" for k, v in needed([s for s in args.skip.split(",") if s]).items()]
    if args.list:
        print("\n".join(pins))
        return
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--dest", str(dest), *TARGET, *pins], check=True)
    # grad-cam 1.5 is published as a source archive only: build its pure-Python wheel here
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--wheel-dir", str(dest), GRAD_CAM], check=True)
    wheels = sorted(dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in sorted(wheels, key=lambda w: -w.stat().st_size)[:5]:
        print(f"  {w.stat().st_size / 2**20:6.1f} MiB  {w.name}")
    print(f"{dest}: {len(wheels)} wheels, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
