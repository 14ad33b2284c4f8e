"""Figures of the learning-dynamics study, drawn from the analysis tables alone.

Every figure function takes the dict of tables the analyze stage writes (optionally with
``ci_low``/``ci_high`` columns from the aggregate stage, drawn as bands) and yields
:class:`~analysis.figures.common.Figure` objects with a caption. No model, array or
representation is loaded here, so every figure can be redrawn in seconds. Colours are fixed per
layer depth, per tag, per tag family and per metric, so they mean the same thing in every
figure.

One module per figure family: ``layer_matrix`` (F1), ``convergence`` (F2 and k), ``families``
(F3, F4), ``per_tag`` (F5), ``concentration`` (F6, F6b), ``nmt`` (F7), ``sanity`` (S1-S4);
``common`` holds the colours, labels and panel helpers they share, and ``registry`` the ordered
:data:`~analysis.figures.registry.FIGURES`, the notes on figures not drawn and ``draw_all``.
"""
