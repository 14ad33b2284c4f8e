"""Tiny Hugging Face causal LMs made in the test (no network): a tokenizer trained on a few
sentences, a GPT-NeoX (Pythia's architecture), GPT-2 or Llama (grouped-query attention) from a
config, trained a few optimiser steps, saved as revisions ``step0``, ``step2``, ``step4``.

Tokenizers (``TOKENIZERS``), each saved with the revision and loaded back with
``AutoTokenizer``: ``gpt2`` and ``gpt_neox`` are those classes (byte-level BPE, built from the
trained vocabulary and merges), ``bytelevel`` the same BPE saved as the generic fast class
(``PreTrainedTokenizerFast``: what a tokenizer saved from the ``tokenizers`` library becomes),
``metaspace`` a SentencePiece-style Unigram (Metaspace pre-tokenizer and decoder, BOS ``<s>``).
"""

import json
from pathlib import Path

import torch

TEXT = ["The most positive element to emerge from the Oslo meeting was the treaty .",
        "A dog ran in the park while the cats were sitting on the mat .",
        "Researchers study how representations form during training ."]
TOKENIZERS = ("gpt2", "gpt_neox", "bytelevel", "metaspace")
DEFAULT_TOKENIZER = {"gpt2": "gpt2", "gpt_neox": "gpt_neox", "llama": "metaspace"}


def _bytelevel_bpe(texts, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) * 4, trainer)
    return tok


def _metaspace_unigram(texts, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(list(texts) * 4, trainer)
    return tok


def tokenizer(texts=TEXT, vocab: int = 300, kind: str = "bytelevel"):
    """A tokenizer of class ``kind`` (see the module) learnt on ``texts``."""
    from transformers import GPT2Tokenizer, GPTNeoXTokenizer, PreTrainedTokenizerFast

    if kind == "metaspace":
        return PreTrainedTokenizerFast(tokenizer_object=_metaspace_unigram(texts, vocab),
                                       bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    bpe = _bytelevel_bpe(texts, vocab)
    if kind == "bytelevel":
        return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                       eos_token="<|endoftext|>", unk_token="<unk>")
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) for m in model["merges"]]
    cls = {"gpt2": GPT2Tokenizer, "gpt_neox": GPTNeoXTokenizer}[kind]
    return cls(vocab=model["vocab"], merges=merges)


def config(arch: str, tok):
    """A tiny ``arch`` config whose vocabulary and special tokens are ``tok``'s."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "gpt_neox":
        return GPTNeoXConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=128, **ids)
    if arch == "llama":
        return LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, intermediate_size=32,
                           max_position_embeddings=128, **ids)
    return GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=128, **ids)


def revisions(folder: Path, arch: str = "gpt_neox", steps=(0, 2, 4), texts=TEXT,
              vocab: int = 300, tokenizer_kind: str | None = None) -> list[Path]:
    """Save ``steps`` revisions of a tiny ``arch`` model, trained with Adam on ``texts``
    (whose subwords its tokenizer, ``tokenizer_kind`` or the architecture's own, learns:
    ``vocab`` of them), under ``folder``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tok = tokenizer(texts, vocab, tokenizer_kind or DEFAULT_TOKENIZER[arch])
    model = AutoModelForCausalLM.from_config(config(arch, tok))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = [torch.tensor([[tok.bos_token_id, *tok(t)["input_ids"]]]) for t in texts[:8]]
    saved, step = [], 0
    for target in sorted(steps):
        while step < target:
            loss = sum(model(input_ids=x, labels=x).loss for x in ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        out = Path(folder) / f"step{target}"
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        saved.append(out)
    return saved
