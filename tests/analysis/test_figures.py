"""analysis.figures: every figure drawn from the tables alone, in every format."""

import json
import os

import configured
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from synthstudy import plotted

from analysis.figures.common import depth_colour, draw_lines, metric_label, tag_colour
from analysis.figures.per_tag import fig_per_tag
from analysis.figures.registry import draw_all, skipped_notes

EXPECTED = {
    "f1_layers_lm_synth_lm", "f1_layers_nmt_synth_source", "f1_layers_nmt_synth_target",
    "f2_convergence_synth", "f3_family_lm_synth", "f4_tagger_lm_synth",
    "f5_per_tag_lm_synth_lm", "f5_per_tag_nmt_synth_source", "f5_per_tag_nmt_synth_target",
    "f6_concentration_lm_synth_lm", "f6_concentration_nmt_synth_source",
    "f6_concentration_nmt_synth_target", "f6b_function_content", "f7_nmt_stages_nmt",
    "f8_compression_lm", "f9_pruning_lm", "f10_commit_lm", "f11_tickets_lm",
    "s1_token_count", "s3_cka_vs_svcca", "s4_sensitivity",
}


def test_plot_stage_draws_every_figure_from_the_tables():
    """run_plot reads only the analyze stage's parquet tables (no store, no model)."""
    out, summary, _ = plotted()
    assert set(summary["figures"]) == EXPECTED
    for name in EXPECTED:
        path = out / "figures" / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 1000, path
    captions = json.loads((out / "captions.json").read_text())
    assert set(captions) == EXPECTED and all(len(c) > 80 for c in captions.values())
    for name, caption in captions.items():  # first, one line saying what to look for
        look = caption.split("\n")[0]
        assert look.startswith("Look for: ") and len(look) < 200, name
    assert any("S2" in note for note in summary["not_drawn"])


def test_every_configured_format_is_written(tmp_path):
    _, _, tables = plotted()
    ps = configured.plot(formats=["png", "pdf"], dpi=40)
    drawn = draw_all({"sanity_tokens": tables["sanity_tokens"]}, tmp_path, ps)
    assert [d["name"] for d in drawn] == ["s1_token_count"]
    assert drawn[0]["files"] == ["s1_token_count.png", "s1_token_count.pdf"]
    assert (tmp_path / "s1_token_count.pdf").read_bytes()[:5] == b"%PDF-"


def test_missing_tables_are_reported_not_drawn():
    notes = skipped_notes({"convergence": pd.DataFrame()})
    assert any(n.startswith("F5") for n in notes) and any(n.startswith("F4") for n in notes)
    assert list(fig_per_tag({}, configured.plot())) == []


def test_ci_bands_drawn_when_tables_carry_intervals():
    df = pd.DataFrame(dict(step_a=[0, 1, 2] * 2, value=np.linspace(0, 1, 6),
                           ci_low=np.linspace(0, 1, 6) - 0.1, ci_high=np.linspace(0, 1, 6) + 0.1,
                           layer_a=["a"] * 3 + ["b"] * 3))
    fig, ax = plt.subplots()
    draw_lines(ax, df, "layer_a", lambda k: "red")
    assert len(ax.collections) == 2  # one band per line
    fig2, ax2 = plt.subplots()
    draw_lines(ax2, df.drop(columns=["ci_low", "ci_high"]), "layer_a", lambda k: "red")
    assert len(ax2.collections) == 0
    plt.close("all")


def test_colours_are_fixed_per_tag_and_depth_in_every_process():
    """The same tag (genres included) gets the same colour in another Python process with
    another hash seed (figures are drawn in worker processes), and distinct tags differ."""
    import subprocess
    import sys

    code = ("from analysis.figures.common import tag_colour; print([tag_colour(t) for t in "
            "('NOUN', 'VERB', 'news', 'fiction')])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2")}
    assert outs == {str([tag_colour(t) for t in ("NOUN", "VERB", "news",
                                                          "fiction")]) + "\n"}
    assert tag_colour("NOUN") != tag_colour("VERB")
    assert len({depth_colour(d) for d in range(4)}) == 4


def test_metric_labels_follow_the_settings():
    settings = pd.DataFrame({"key": ["variance", "variance_rule"], "value": ["0.9", '"s"']})
    assert metric_label("svcca", {"settings": settings}) == "SVCCA (90% of Σs)"
    assert metric_label("svcca_k20", {}) == "SVCCA k=20"


def test_s2_drawn_when_seed_pairs_exist(tmp_path):
    rows = [dict(model="lm", kind="lm", probe="p", side="lm", layer=layer, depth=d, seed_a=1,
                 seed_b=2, checkpoint=point, metric=m, value=v, baseline=0.05)
            for d, layer in enumerate(["embed", "lstm_1"])
            for point, v in (("init", 0.1), ("final", 0.8 - 0.1 * d))
            for m in ("svcca", "cka")]
    tables = {"seeds": pd.DataFrame(rows)}
    drawn = draw_all(tables, tmp_path, configured.plot(formats=["png"], dpi=40))
    assert [d["name"] for d in drawn] == ["s2_seed_to_seed"]
    assert "1 seed pairs" in drawn[0]["caption"]
    assert not any("S2" in n for n in skipped_notes(tables))


def test_all_metrics_on_request():
    from analysis.figures.common import present_metrics

    table = pd.DataFrame({"metric": ["cka", "rsa", "svcca"]})
    assert present_metrics(table, ["svcca", "cka"]) == ["svcca", "cka"]
    assert set(present_metrics(table, ["all"])) == {"cka", "rsa", "svcca"}
