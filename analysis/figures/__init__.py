"""Figures of the learning-dynamics study, drawn from the analysis tables alone.

Every function takes the dict of tables written by the analyze stage (analysis/dynamics.py;
optionally with ``ci_low``/``ci_high`` columns from scripts/aggregate.py, drawn as bands) and
yields :class:`Figure` objects with a caption. No model, array or representation is loaded
here, so every figure can be redrawn in seconds. Colours are fixed per layer depth, per tag,
per tag family and per metric, so they mean the same thing in every figure.

One module per figure family: ``layer_matrix`` (F1), ``convergence`` (F2 and k), ``families``
(F3, F4), ``per_tag`` (F5), ``concentration`` (F6, F6b), ``nmt`` (F7), ``sanity`` (S1-S4);
``common`` holds the colours, labels and panel helpers they share, and ``registry`` the ordered
:data:`FIGURES`, :func:`skipped_notes` and :func:`draw_all`.
"""

from analysis.figures.common import BASE_LABELS as BASE_LABELS
from analysis.figures.common import DEPTH_COLOURS as DEPTH_COLOURS
from analysis.figures.common import FAMILY_COLOURS as FAMILY_COLOURS
from analysis.figures.common import METRIC_ORDER as METRIC_ORDER
from analysis.figures.common import SIDE_LABELS as SIDE_LABELS
from analysis.figures.common import TAG_ORDER as TAG_ORDER
from analysis.figures.common import Figure, depth_colour, tag_colour
from analysis.figures.common import _lines as _lines
from analysis.figures.common import metric_label as metric_label
from analysis.figures.concentration import fig_concentration as fig_concentration
from analysis.figures.concentration import fig_function_content as fig_function_content
from analysis.figures.convergence import fig_convergence as fig_convergence
from analysis.figures.families import fig_family as fig_family
from analysis.figures.families import fig_tagger as fig_tagger
from analysis.figures.layer_matrix import fig_layer_matrix as fig_layer_matrix
from analysis.figures.nmt import fig_nmt_stages as fig_nmt_stages
from analysis.figures.per_tag import fig_per_tag as fig_per_tag
from analysis.figures.registry import FIGURES, PlotSettings, draw_all, skipped_notes
from analysis.figures.sanity import fig_cka_vs_svcca as fig_cka_vs_svcca
from analysis.figures.sanity import fig_sanity_tokens as fig_sanity_tokens
from analysis.figures.sanity import fig_seeds as fig_seeds
from analysis.figures.sanity import fig_sensitivity as fig_sensitivity

__all__ = ["FIGURES", "Figure", "PlotSettings", "depth_colour", "draw_all", "skipped_notes",
           "tag_colour"]
