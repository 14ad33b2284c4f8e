"""pipeline.progress: the live line counts updates from every kind of fairseq log line, so it
is not stuck at 0 before the first training line nor after a resume."""

import json

from pipeline.progress import Progress, updates_in

VALID = ("2026-12-02 11:30:14 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 11.01 "
         "| ppl 2062.51 | wps 18017.5 | wpb 697.8 | bsz 20 | num_updates 49\n")
INNER = ("2026-12-02 11:30:15 | INFO | train_inner | epoch 001:      3 / 116 loss=12.945, "
         "ppl=7884.03, wps=2128.3, ups=3.04, wpb=700, bsz=20, num_updates=100, lr=20\n")
LOADED = ("2026-12-02 11:31:00 | INFO | fairseq.trainer | Loaded checkpoint /x/checkpoint_last.pt "
          "(epoch 2 @ 1500 updates)\n")


def test_updates_come_from_validation_training_and_checkpoint_lines():
    assert updates_in("") == 0
    assert updates_in(VALID) == 49  # before the first training line (every 100 updates)
    assert updates_in(VALID + INNER) == 100
    assert updates_in(INNER + LOADED) == 1500  # a resumed run starts at its checkpoint


def test_the_line_shows_updates_and_the_last_validation(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "train.log").write_text(LOADED)
    (tmp_path / "checkpoints" / "snapshots.jsonl").write_text(
        json.dumps({"step": 1500, "valid_loss": 7.0}) + "\n")
    line = Progress("m", 3000, tmp_path).line()
    assert line.startswith("train m: 1500/3000 updates (50%)")
    assert line.endswith("valid ppl 128.0 at step 1500")
