"""analysis.settings: typed from the config, with no value of their own."""

import configured
import pytest

from analysis.settings import AnalysisSettings


def test_settings_from_config_are_typed_and_a_missing_key_is_an_error():
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from pipeline.config import typed

    conf = OmegaConf.structured(configured.analysis())
    cfg = OmegaConf.merge(conf, {"fixed_k": [10], "fractions": [0, 1],
                                 "claims": {"c3": {"permutations": 7}}, "per_tag": {"max_n": 7},
                                 "concentration": {"ci": 0.9, "n_boot": 11},
                                 "sanity": {"model": "m", "token_counts": [5]}, "seed": 4})
    s = typed(cfg, AnalysisSettings)
    assert s.fixed_k == [10] and s.fractions == [0.0, 1.0]
    assert all(isinstance(f, float) for f in s.fractions)
    assert (s.per_tag.max_n, s.concentration.ci, s.concentration.n_boot) == (7, 0.9, 11)
    assert (s.sanity.model, s.sanity.token_counts, s.seed) == ("m", [5], 4)
    assert s.claims.c3.permutations == 7 and s.per_tag.min_n == configured.analysis().per_tag.min_n
    # the schema holds no value of its own: a key the config leaves out is an error
    partial = OmegaConf.to_container(conf)
    del partial["per_tag"]["min_n"]
    with pytest.raises(MissingMandatoryValue, match="min_n"):
        typed(partial, AnalysisSettings)
