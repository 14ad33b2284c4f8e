"""analysis.repstore: writes appear whole or not at all, and broken stores are named."""

import numpy as np
import pandas as pd
import pytest

from analysis import repstore


def small_store(root):
    tokens = pd.DataFrame({"side": ["lm"] * 5, "sent_index": 0, "word_index": range(5)})
    repstore.write_tokens(root, tokens, {"embed": {"side": "lm", "dim": 3}})
    for step in (0, 10):
        repstore.write_arrays(root, step, "act", {"embed": np.ones((5, 3))})
        (repstore.step_dir(root, step) / "done").write_text("x")
    return root


def test_a_sound_store_has_no_problems(tmp_path):
    assert repstore.problems(small_store(tmp_path), [0, 10], gradients=False) == []
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temporary file left behind


def test_missing_step_truncated_array_and_misshapen_array_are_named(tmp_path):
    root = small_store(tmp_path)
    (repstore.step_dir(root, 0) / "done").unlink()
    path = repstore.step_dir(root, 10) / "act" / "embed.npy"
    path.write_bytes(path.read_bytes()[:-20])
    found = repstore.problems(root, [0, 10], gradients=False)
    assert any("step_0000000: missing or unfinished" in p for p in found)
    assert any(str(path) in p and "unreadable" in p for p in found)
    np.save(path, np.ones((4, 3)))
    assert any("4 rows for 5 tokens" in p for p in repstore.problems(root, [10], False))
    assert any("grad/embed.npy: missing" in p for p in repstore.problems(root, [10], True))


def test_reading_a_truncated_array_names_the_file(tmp_path):
    root = small_store(tmp_path)
    path = repstore.step_dir(root, 10) / "act" / "embed.npy"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=f"{path}: unreadable"):
        repstore.load(root, 10, "embed")
