"""analysis.runs: the stores an analysis reads."""

from synthstudy import (
    STEPS,
    build_study,
    synth_tokens,
)

from analysis import repstore
from analysis.runs import tagged_word_and_freq, usable_steps


def test_target_aligned_word_and_frequency_shift_within_sentences():
    tokens = synth_tokens(n_sent=3, length=4)
    word, freq = tagged_word_and_freq(tokens, "pos_target")
    assert word.iloc[0] == tokens.word.iloc[1].lower()
    assert freq.iloc[0] == tokens.train_freq.iloc[1]
    last = tokens.position == tokens.position.max()
    assert word[last].isna().all() and freq[last].isna().all()
    same, _ = tagged_word_and_freq(tokens, "pos")
    assert (same == tokens.word.str.lower()).all()


def test_usable_steps_skip_unfinished_checkpoints(tmp_path):
    runs = build_study(tmp_path)
    root = runs[0].stores["synth"]
    (repstore.step_dir(root, 8) / "done").unlink()
    assert 8 not in usable_steps(root)
    assert usable_steps(root) == [s for s in STEPS if s != 8]
