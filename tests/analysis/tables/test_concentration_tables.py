"""analysis.tables.concentration on the synthetic study."""

import configured
import numpy as np
import pandas as pd
from synthstudy import (
    study_tables,
    synth_tokens,
)

from analysis.tables.concentration import function_content_classes


def test_concentration_tables():
    conc, fc = study_tables()["concentration"], study_tables()["function_content"]
    nmt_tags = conc[conc.model == "nmt"].groupby(["side", "quantity"]).tag_column.first()
    assert nmt_tags.to_dict() == {("source", "act"): "pos", ("source", "grad"): "pos",
                                  ("target", "act"): "pos", ("target", "grad"): "pos_target"}
    conc, fc = conc[conc.model == "lm"], fc[fc.model == "lm"]
    whole = conc[conc.tag == "all"]
    assert (whole.n_tokens == len(synth_tokens())).all()
    assert set(conc.quantity) == {"act", "grad"}
    grads = conc[(conc.quantity == "grad") & (conc.tag != "all")]
    assert grads.tag_column.eq("pos_target").all() and "</s>" not in set(grads.tag)
    g = fc[fc.quantity == "grad"]
    assert (g.difference > 0.2).all() and (g.ci_low > 0).all()
    # the study has 3 x 5 function word types: at most two a bin, the bins merged to a few
    assert g.p_value.max() < 0.01 and (g.types_function <= 15).all()
    assert (g.class_column == "upos_target").all() and (g.unit == "type").all()
    a = fc[fc.quantity == "act"]
    assert (a.ci_low < 0.1).all()  # activations were not built with a function/content gap
    assert (a.class_column == "upos").all()
    assert (fc.types_function < fc.n_function).all() and (fc.types_content < fc.n_content).all()
    np.testing.assert_allclose(fc.function_mean - fc.content_mean, fc.difference, atol=1e-12)
    assert (fc.content_mean > 0).all()


def test_the_test_settings():
    s = configured.analysis()
    assert s.concentration.freq_bins >= 10 and s.concentration.n_perm >= 1000
    assert s.function_tags == ["ADP", "AUX", "CCONJ", "DET", "PART", "PRON", "SCONJ"]
    assert s.content_tags == ["NOUN", "PROPN", "VERB", "ADJ", "ADV"]


def test_function_content_classes_follow_the_tag_column():
    """Brown (12-tag upos): classes from xpos, of the token read for `pos` and of the token
    predicted for `pos_target`, whose word is the type; UD: from upos / upos_target."""
    brown = pd.DataFrame(dict(
        word=["The", "dog", "would", "not", "bark", "."], sent_index=0,
        pos=["DET", "NOUN", "VERB", "PRT", "VERB", "."],
        upos=["DET", "NOUN", "VERB", "PRT", "VERB", "."], xpos=["AT", "NN", "MD", "*", "VB", "."],
        train_freq=[9, 3, 5, 7, 2, 9]))
    brown["pos_target"] = brown["upos_target"] = [*brown.pos[1:], "</s>"]
    s = configured.analysis()
    classes, types, source = function_content_classes(brown, "pos", s)
    assert source == "xpos"
    assert list(classes) == ["function", "content", "function", "function", "content", "other"]
    assert list(types) == ["the", "dog", "would", "not", "bark", "."]
    classes, types, source = function_content_classes(brown, "pos_target", s)
    assert source == "xpos_target"
    assert list(classes) == ["content", "function", "function", "content", "other", "other"]
    assert list(types[:5]) == ["dog", "would", "not", "bark", "."] and pd.isna(types[5])
    ud = brown.assign(upos=["DET", "NOUN", "AUX", "PART", "VERB", "PUNCT"])
    ud["upos_target"] = [*ud.upos[1:], "</s>"]
    classes, _, source = function_content_classes(ud, "pos_target", s)
    assert source == "upos_target"
    assert list(classes) == list(np.r_[["content", "function", "function", "content"],
                                       ["other", "other"]])
