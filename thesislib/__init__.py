"""thesislib: which training choices change how well CAM explanations agree with expert attention?

Rooms: `synth` (synthetic fundus data), `data` (LAG layout, splits, augmentation), `models`
(ResNets with the studied knobs), `train`, `explain` (CAM heatmaps), `metrics` (pure tensor
functions), `evaluation` (`evaluate`: per-image tables), `study` (configs, cached runs, grids),
`tables` (thesis-shaped tables, the thesis's own numbers, claims), `figures`, `report` (the
HTML report), `cli`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `thesislib.evaluate(model, data, methods)` without importing torch on `import thesislib`
    if name == "evaluate":
        from thesislib.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'thesislib' has no attribute {name!r}")
