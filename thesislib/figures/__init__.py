"""Figures: the report's plots (samples, augmentation, Otsu, galleries, curves, scatter plots).

Each function draws one figure with matplotlib/seaborn and returns it; notebooks only call them.
Every figure carries its caption (`caption_of`): what a point, bar or line is, how many seeds or
images it rests on and what its error bars are. The report numbers the captions and uses them as
the images' alt text. Colours are fixed per method (`method_palette`) and per family
(`family_palette`), so a method has one colour in every figure; settings take a sequential
palette (`setting_palette`) that no method uses. Legends sit outside the data area.
"""

from __future__ import annotations

from thesislib.figures.images import augmentations, gallery, mean_maps, otsu_examples, pick_rows, samples, _class_name  # noqa: F401
from thesislib.figures.plots import (by_setting, curves, loss_curves, method_bars, randomisation, scatter,
                                     threshold_curve, timing)
from thesislib.figures.style import (CAPTION_KEY, METHOD_COLOURS, NOT_LEARNED, caption_of, family_palette,
                                     method_palette, setting_palette)

__all__ = ["samples", "augmentations", "otsu_examples", "gallery", "curves", "loss_curves", "scatter", "timing",
           "pick_rows", "by_setting", "method_bars", "mean_maps", "randomisation", "threshold_curve",
           "METHOD_COLOURS", "method_palette", "family_palette", "setting_palette", "caption_of", "CAPTION_KEY"]
