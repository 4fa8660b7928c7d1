"""thesislib: which training choices change how well CAM explanations agree with expert attention?

Rooms: `synth` (synthetic fundus data), `data` (LAG layout, splits, augmentation), `models`
(ResNets with the studied knobs), `train`, `explain` (CAM heatmaps), `references` (reference
maps: prior, ceiling, ...), `metrics` (pure tensor functions and the metric registry),
`evaluation` (`evaluate`: per-image tables), `study` (configs, cached runs, grids), `thesis` (the
thesis's own numbers), `claims` (claims and verdicts), `tables` (our tables), `stats`, `figures`,
`report` (the HTML report), `cli`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `thesislib.evaluate(model, data, methods)` without importing torch on `import thesislib`
    if name == "evaluate":
        from thesislib.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'thesislib' has no attribute {name!r}")
