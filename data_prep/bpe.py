"""Joint sentencepiece BPE for the NMT model."""

from __future__ import annotations

from pathlib import Path


def train_bpe(texts: list[Path], prefix: Path, vocab_size: int, character_coverage: float,
              input_sentence_size: int) -> Path:
    """Train a BPE model on the given text files; returns the .model path."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=",".join(str(t) for t in texts), model_prefix=str(prefix),
        vocab_size=vocab_size, model_type="bpe", character_coverage=character_coverage,
        input_sentence_size=input_sentence_size, shuffle_input_sentence=False,
        num_threads=1, minloglevel=2, bos_id=-1, eos_id=-1, pad_id=-1,
        unk_id=0,
    )
    return prefix.with_suffix(".model")


def load_bpe(model: Path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model))
