"""The report's methods section and the scope box shown beside every comparison with the thesis.

Each text is written once, here; `thesislib.report.page.stitch` shows the methods after the
contents and the scope box at the top of every section in THESIS_SECTIONS. The scope box warns
what a synthetic or reduced-scale run can and cannot say about the thesis's claims; at the
thesis's scale on real data it says that instead.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["THESIS_SECTIONS", "at_thesis_scale", "scope_box", "methods_section", "METHODS_ANCHOR"]

THESIS_SECTIONS = ("01_depth", "02_optimisation", "03_cam_methods", "04_regularisation", "05_precode",
                   "06_correlation")  # the sections that set our numbers beside the thesis's
METHODS_ANCHOR = "methods"
THESIS_PARAMS = "thesis"  # the params folder of the thesis's grid (params/thesis)


def at_thesis_scale(header: dict) -> bool:
    """True where the report ran the thesis's grid (params/thesis, without --set) on data of one's own
    rather than the synthetic set."""
    params = str(header.get("params", ""))
    data = str(header.get("data", ""))
    return Path(params).name == THESIS_PARAMS and "synthetic" not in data


def scope_box(header: dict) -> str:
    """HTML: what this run can and cannot say about the thesis's claims, one text for every section."""
    if at_thesis_scale(header):
        text = ("<b>Scope.</b> This run trains the thesis's grid (full-width ResNets at 224 px, its epochs, "
                "batch sizes and seeds) on the data named in the header: a like-for-like comparison with the "
                "thesis's numbers, within the differences <a href='#methods'>Methods</a> lists (our split, "
                "test-set scoring, seeds).")
    else:
        text = ("<b>Scope.</b> These runs are small (reduced-width ResNets, few epochs and seeds) and, unless the "
                "header names other data, trained on synthetic fundus-like images whose class evidence lies at the "
                "optic disc by construction. They test whether the thesis's claims hold as patterns of method and "
                "setting under a known ground truth, and they exercise every step of the analysis; they cannot "
                "confirm or refute the thesis's numbers on LAG, and a verdict here is about these runs only. "
                "Runs that did not learn inform no verdict. At the thesis's scale on real data "
                "(<code>params/thesis</code>) this box says so instead of warning.")
    return f"<div class='scope-box'>{text}</div>"


def methods_section(header: dict, facts: dict, *, protocol: str, data: dict[str, str]) -> str:
    """Markdown of the methods: the data used and its hash, the models, the metrics with their
    formulas, Otsu's threshold, how verdicts are reached, and the data files of the report.

    Args:
        header: the report's header (params, data, data_hash).
        facts: `thesislib.summary.facts` (input size, split).
        protocol: the link to docs/PROTOCOL.md, relative to the report.
        data: {"results": link, "per_image": link} to the CSV files beside the report.
    """
    data_hash = header.get("data_hash") or "not recorded"
    split = facts.get("split")
    split_text = ""
    if split:
        split_text = " Split (not glaucoma / glaucoma): " + "; ".join(
            f"{part} {counts[0]} / {counts[1]}" for part, counts in split.items()) + "."
    size = f" at {facts['input_size']} px" if facts.get("input_size") else ""
    files = []
    if data.get("results"):
        files.append(f"[results.csv]({data['results']}) (one row per run and method: the run's settings, seed, "
                     "whether it learned, and every summary metric in %)")
    if data.get("per_image"):
        files.append(f"[per_image.csv]({data['per_image']}) (one row per scored test image, run and method: the "
                     "metrics each table averages)")
    return "\n".join([
        f"## Methods\n\n<a id='{METHODS_ANCHOR}'></a>\n",
        f"**Data.** {header.get('data', '')}, content hash `{data_hash}` (the hash every run's id "
        f"covers); inputs{size}.{split_text} The synthetic set is fundus-like photos in LAG's layout whose class "
        "evidence (cup-to-disc ratio, rim thinning) lies at the optic disc, with expert-like fixation maps over it.",
        "",
        "**Models.** ResNet-18, 34 and 50 trained from scratch with cross-entropy, by Adam unless a section varies "
        "the optimiser; the checkpoint with the lowest validation loss is scored on the test split. Width, stem, "
        "epochs, batch size and seeds are in each section's params file (linked in the contents).",
        "",
        "**Maps.** Each explainer's map of the predicted class at the last residual stage, upsampled to the input "
        "and scaled to [0, 1]; reference maps (the data prior, a centred Gaussian, noise, Sobel edges, the "
        "ceiling) are scored exactly like them.",
        "",
        "**Otsu.** Each map H and expert map M is binarised at Otsu's threshold: the t that maximises the "
        "between-class variance w₀(t) w₁(t) (μ₀(t) − μ₁(t))² of its 256-bin histogram (as scikit-image "
        "computes it); foreground is value > t.",
        "",
        "**Metrics** (in %, the mean over images, then the mean ± sd over seeds):\n",
        "- IoU (A) = |H ∩ M| / |H ∪ M| of the binarised maps; IoU (BB) the same for the boxes enclosing each "
        "foreground.",
        "- Average Drop = max(0, Y − O) / Y and Increase in Confidence = 1[O > Y], with Y the explained class's "
        "probability for the image and O for the image multiplied by the map.",
        "- Pointing game = 1[the map's maximum lies in M]; relevance mass = Σ over M of the map / Σ of the map.",
        "- Accuracy, ROC AUC and F1 of the classifier on the same test images.",
        "",
        f"**Verdicts.** Each claim is judged at 95 % on the seeds' values: a paired t-test where the design pairs "
        "two settings by seed, Welch's test otherwise; \"every\" claims by intersection-union, \"some\" by Holm, "
        "equivalence by two one-sided tests within each metric's margin. Agrees, disagrees and equivalent are "
        "decided (shown in bold); inconclusive says how many seeds would decide it; runs that never learned "
        f"inform no verdict. The rules: [the study protocol]({protocol}).",
        "",
        ("**Data files.** " + "; ".join(files) + ".") if files else "",
    ])
