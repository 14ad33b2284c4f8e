"""analysis.tables.concentration on the synthetic study."""

from synthstudy import (
    study_tables,
    synth_tokens,
)


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
    a = fc[fc.quantity == "act"]
    assert (a.ci_low < 0.1).all()  # activations were not built with a function/content gap
