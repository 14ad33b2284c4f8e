"""Tiny Hugging Face causal LMs made in the test (no network): a byte-level BPE tokenizer
trained on a few sentences, a GPT-NeoX (Pythia's architecture) or GPT-2 from a config,
trained a few optimiser steps, saved as revisions ``step0``, ``step2``, ``step4``."""

from pathlib import Path

import torch

TEXT = ["The most positive element to emerge from the Oslo meeting was the treaty .",
        "A dog ran in the park while the cats were sitting on the mat .",
        "Researchers study how representations form during training ."]


def tokenizer(texts=TEXT, vocab: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<unk>")


def config(arch: str, vocab: int):
    from transformers import GPT2Config, GPTNeoXConfig

    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=128, bos_token_id=0, eos_token_id=0)
    return GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=128,
                      bos_token_id=0, eos_token_id=0)


def revisions(folder: Path, arch: str = "gpt_neox", steps=(0, 2, 4), texts=TEXT,
              vocab: int = 300) -> list[Path]:
    """Save ``steps`` revisions of a tiny ``arch`` model, trained with Adam on ``texts``
    (whose subwords its tokenizer learns, ``vocab`` of them), under ``folder``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tok = tokenizer(texts, vocab)
    model = AutoModelForCausalLM.from_config(config(arch, len(tok)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = [torch.tensor([[0, *tok(t)["input_ids"]]]) for t in texts[:8]]
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
