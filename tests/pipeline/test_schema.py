"""The config schema: unknown keys, wrong types and out-of-range values, in an experiment
file or on the command line, stop the run before any work, naming the key and where it was
set; every shipped experiment passes."""

import dataclasses
import pickle
import typing
from pathlib import Path

import pandas as pd
import pytest
from conftest import compose, run_pipeline
from omegaconf import OmegaConf, open_dict

from analysis.fields import REQUIRED
from analysis.settings import AnalysisSettings
from pipeline.config import CONFIG_DIR, typed
from pipeline.models import get, kinds
from pipeline.schema import GROUPS, ConfigError, TopConfig, validate

EXPERIMENTS = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes_and_every_group_is_its_schema_field_for_field(experiment,
                                                                             tmp_path):
    # byo_example reads the user's checkpoints: without them it says which setting is missing
    given = [f"model.theirs.revisions=[{tmp_path}]"] if experiment == "byo_example" else []
    cfg = compose(f"experiment={experiment}", f"artifacts_dir={tmp_path}", "mirror=null",
                  *given)
    validate(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    for group, schema in GROUPS.items():  # every key a field, every field a value, unchanged
        settings = typed(plain[group], schema)
        assert dataclasses.asdict(settings) == plain[group], group
        assert pickle.loads(pickle.dumps(settings)) == settings  # as a forked job receives it


def test_byo_example_names_the_missing_revisions_the_experiment_and_how_to_give_them(tmp_path):
    exp = Path(CONFIG_DIR, "experiment", "byo_example.yaml")
    line = next(i for i, text in enumerate(exp.read_text().splitlines(), 1)
                if text.strip().startswith("revisions: ???"))
    with pytest.raises(ConfigError) as err:
        validate(compose("experiment=byo_example", f"artifacts_dir={tmp_path}", "mirror=null"))
    assert str(err.value).startswith(
        f"config error: model.theirs.revisions is required by experiment byo_example "
        f"({exp}:{line}: revision folders,")
    assert str(err.value).endswith("give it on the command line, e.g. "
                                   "'model.theirs.revisions=[...]'")


@pytest.mark.parametrize("override, message", [
    ("seed=abc", "seed: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.schedule.log_points=-1", "train.schedule.log_points: -1 must be >= 0"),
    ("extract.max_tokens_per_probe=0", "extract.max_tokens_per_probe: 0 must be >= 1"),
    ("+analysis.per_tag.max_nn=50", "analysis.per_tag.max_nn: unknown key; analysis.per_tag "
                                    "has: freq_bins, max_n, metrics, min_n, min_tags, "
                                    "random_subsets; did you mean max_n?"),
    ("+model.tagger_pos.hiden=3", "model.tagger_pos.hiden: unknown key; model.tagger_pos has: "
                                  "adaptive_softmax_cutoff,"),
    ("+data.probes.mine.maxsent=3", "data.probes.mine.maxsent: unknown key; data.probes.mine "
                                    "has: conllu, max_sentences; did you mean max_sentences?"),
    ("+sed=1", "sed: unknown key; the top level has: aggregate, analysis, artifacts_dir,"),
    ("+data.probes.pud.conllu=/dev/null", "data.probes.pud: the name of a built-in probe"),
    ("+data.probes.mine.conllu=/absent.conllu", "data.probes.mine.conllu: /absent.conllu does "
                                                "not exist"),
    ("model.lstm_lm_paper.dropout=1.5", "model.lstm_lm_paper.dropout: 1.5 must be < 1"),
    ("analysis.variance_rule=sum", "analysis.variance_rule: 'sum' is not one of ['s2', 's']"),
    ("plot.metrics=[svca]", "plot.metrics: ['svca'] are not computed by analysis.metrics"),
    ("analysis.metrics=[svcca,ckaa]", "analysis.metrics: unknown metric 'ckaa'"),
    ("model.lstm_lm_paper.lr_scheduler=cosine", "model.lstm_lm_paper.lr_scheduler: 'cosine' "
                                                "is not one of ['reduce_lr_on_plateau'"),
    ("model.transformer_nmt_small.end_lr=-1", "model.transformer_nmt_small.end_lr: -1"),
])
def test_bad_values_are_refused_naming_the_key(override, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(compose("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null",
                         override))
    assert message in str(err.value)


def schema_nodes(schema: type, prefix: str) -> dict[str, type]:
    """Every dataclass node of a schema by dotted key (a ``dict[str, X]`` field's entries as
    ``KEY.any``), the schema itself included."""
    out = {prefix: schema}
    for name, kind in typing.get_type_hints(schema).items():
        if typing.get_origin(kind) is dict:
            name, kind = f"{name}.any", typing.get_args(kind)[1]
        if dataclasses.is_dataclass(kind):
            out.update(schema_nodes(kind, f"{prefix}.{name}"))
    return out


def test_an_unknown_key_anywhere_lists_the_keys_there(tmp_path):
    cfg = compose("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null")
    nodes = {k: v for group, schema in GROUPS.items() for k, v in schema_nodes(schema,
                                                                                group).items()}
    nodes.update({f"model.{name}": get(spec.kind).Config for name, spec in cfg.model.items()})
    assert "data.probes.any" in nodes and "analysis.claims.c1" in nodes
    for key, schema in nodes.items():
        bad = cfg.copy()
        with open_dict(bad):
            OmegaConf.update(bad, f"{key}.zz_unknown", 1, force_add=True)
        with pytest.raises(ConfigError) as err:
            validate(bad)
        fields = ", ".join(sorted(f.name for f in dataclasses.fields(schema)))
        assert f"config error: {key}.zz_unknown: unknown key; {key} has: {fields} (" \
            in str(err.value), key


def test_an_artifacts_dir_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for where in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(ConfigError, match=f"artifacts_dir: {tmp_path / 'file'} is a file, "
                                              "not a folder"):
            validate(compose("experiment=smoke", f"artifacts_dir={where}", "mirror=null"))


def test_a_mirror_that_is_no_folder_is_refused(tmp_path):
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    for mirror, what in ((tmp_path / "absent", "does not exist"), (not_dir, "is not a folder")):
        with pytest.raises(ConfigError, match=f"mirror: {mirror} {what}"):
            validate(compose("experiment=smoke", f"mirror={mirror}"))


def test_typo_in_an_experiment_file_stops_before_any_work_naming_key_and_file(tmp_path):
    exp = tmp_path / "conf" / "experiment"
    exp.mkdir(parents=True)
    (exp / "typo.yaml").write_text("# @package _global_\ndefaults:\n  - smoke\nname: typo\n"
                                   "analysis:\n  claims:\n    threshold: 0.5\n")
    art = tmp_path / "art"
    result = run_pipeline("experiment=typo", f"artifacts_dir={art}",
                          f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    assert result.returncode != 0
    assert "config error: analysis.claims.threshold: unknown key; analysis.claims has: " \
        "alpha, c1, c3, c4, c5, c6, c7, c8, convergence_threshold," in result.stderr
    assert ("did you mean convergence_threshold? "
            f"(set in {exp / 'typo.yaml'})") in result.stderr
    assert not (art / "typo" / "prepare").exists()  # no work was started


def test_a_stage_whose_input_was_not_run_says_so_without_a_traceback(tmp_path, mirror):
    result = run_pipeline("experiment=smoke", f"mirror={mirror}", f"artifacts_dir={tmp_path}",
                          "stages=[plot]")
    text = result.stdout + result.stderr
    assert result.returncode == 1, text[-3000:]
    assert "stage plot needs analyze, which has not been run for this config" in text
    assert "add it to stages=[...]" in text and "Traceback" not in text


def test_command_line_errors_name_the_override(tmp_path):
    result = run_pipeline("experiment=smoke", f"artifacts_dir={tmp_path}", "seed=abc")
    assert result.returncode != 0
    assert "(set in the command line (seed=abc))" in result.stderr
    assert not (tmp_path / "smoke" / "prepare").exists()  # (Hydra made only its log dir)


def test_one_name_per_setting_and_values_that_must_agree_are_interpolated():
    cfg = compose("experiment=default", "extract.max_tokens_per_probe=1234")
    assert cfg.analysis.max_tokens == 1234
    assert "threshold" not in cfg.analysis.claims and "convergence_threshold" in cfg.analysis.claims


def test_figures_may_ask_for_every_metric(tmp_path):
    from analysis.comparisons import display_key, metric_specs
    from analysis.figures.common import present_metrics

    given = ("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null")
    cfg = compose(*given, "plot.metrics=[all]", "plot.per_tag_metrics=[all]")
    validate(cfg)  # "all" for the panels' lists ...
    with pytest.raises(ConfigError, match=r"plot.primary_metric: \['all'\] are not computed"):
        validate(compose(*given, "plot.primary_metric=all"))  # ... not for F7's one metric
    computed = [s.name for s in metric_specs(typed(cfg.analysis, AnalysisSettings))]
    table = pd.DataFrame({"metric": computed[::-1]})
    assert present_metrics(table, list(cfg.plot.metrics)) == sorted(computed, key=display_key)


def own_values(schema: type, prefix: str = "") -> dict[str, object]:
    """The fields of a schema dataclass (and of the dataclasses it nests) that hold a value of
    their own, a default or a default factory, by dotted key."""
    out = {}
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if f.default_factory is not dataclasses.MISSING:
            out[key] = f.default_factory()
        elif f.default is not dataclasses.MISSING and not (isinstance(f.default, str)
                                                           and f.default == REQUIRED):
            out[key] = f.default
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(own_values(hints[f.name], f"{key}."))
    return out


def test_every_value_is_written_in_one_place():
    """A group's values are in its conf/ file alone (its schema holds none, so a key left out
    of the YAML stops the run), a trained kind's in its presets (its Config holds none). Only
    entries a user writes inline (an external kind's preset, a data.probes entry) keep their
    optional keys' values in their schema, and no conf/ file restates one."""
    assert not {group: own_values(schema) for group, schema in {**GROUPS, "": TopConfig}.items()
                if own_values(schema)}
    inline = {kind: own_values(get(kind).Config) for kind in kinds() if get(kind).external}
    assert not {kind: own_values(get(kind).Config) for kind in kinds()
                if not get(kind).external and own_values(get(kind).Config)}
    restated = []
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml")):
        models = OmegaConf.to_container(OmegaConf.load(path)).get("model") or {}
        for name, spec in models.items():
            restated += [f"{path.name}: model.{name}.{key}" for key, value in spec.items()
                         if key in inline.get(spec.get("kind"), {})
                         and inline[spec["kind"]][key] == value]
    assert not restated


def test_the_one_place_check_finds_a_second_value():
    @dataclasses.dataclass
    class Inner:
        a: int = 3

    @dataclasses.dataclass
    class Group:
        inner: Inner = dataclasses.field(default_factory=Inner)
        b: list = dataclasses.field(default_factory=list)
        c: int = REQUIRED

    assert own_values(Group) == {"inner": Inner(), "inner.a": 3, "b": []}
