"""The data settings data_prep reads typed (data_prep.settings): the user's probe corpora are
checked by name and file before anything is read."""

import configured
import pytest

from data_prep.errors import DataError
from data_prep.prepare import user_probes
from data_prep.settings import UserProbe


def test_user_probes_need_a_free_name_and_an_existing_file(tmp_path):
    mine = tmp_path / "mine.conllu"
    mine.write_text("")
    probe = UserProbe(conllu=str(mine))
    assert user_probes(configured.data(probes={"mine": probe})) == {"mine": probe}
    assert user_probes(configured.data()) == {}
    with pytest.raises(DataError, match="data.probes.pud: the name of a built-in probe"):
        user_probes(configured.data(probes={"pud": probe}))
    with pytest.raises(DataError, match="gone: data.probes.gone.conllu: no such file"):
        user_probes(configured.data(probes={"gone": UserProbe(conllu=str(tmp_path / "gone"))}))
