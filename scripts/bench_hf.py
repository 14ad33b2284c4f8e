"""Time and memory of the Hugging Face adapter per checkpoint: every hidden state at each probe
word, without and with the per-token gradients (a backward pass per subword position).

A model of the given shape is built from a config with random weights (no download): `tiny`
is the test suite's GPT-NeoX (16-d, 2 layers), `pythia70m` is Pythia-70M's shape (512-d,
6 layers, 50,304 entries); its tokenizer is a BPE learnt on the probe's own words (about 1.1
subwords per word; Pythia's runs about 1.3 on English text). Prints seconds per checkpoint
for the tokens read and, scaled linearly in sentences, for 5,000 tokens.

    python scripts/bench_hf.py --prepared ARTIFACTS/smoke/prepare/KEY --shape tiny --tokens 1000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pipeline.models.hf_causal_lm import hf_states  # noqa: E402
from pipeline.stages.extract import probe_rows  # noqa: E402


def model_of(shape: str, vocab: int):
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    sizes = {"tiny": dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32),
             "pythia70m": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                               intermediate_size=2048, rotary_pct=0.25)}[shape]
    vocab = 50304 if shape == "pythia70m" else vocab
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(GPTNeoXConfig(
        vocab_size=vocab, max_position_embeddings=2048, bos_token_id=0, eos_token_id=0,
        **sizes)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--shape", choices=("tiny", "pythia70m"), default="tiny")
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tinyhf import tokenizer

    tokens = pd.read_parquet(args.prepared / "probe_tokens.parquet")
    rows = probe_rows(tokens, "brown_probe", args.tokens)
    text = [" ".join(s.word.astype(str)) for _, s in rows.groupby("sent_index")]
    tok = tokenizer(text, vocab=5000)
    model = model_of(args.shape, len(tok))
    subwords = sum(len(tok(s.split(), is_split_into_words=True)["input_ids"]) for s in text)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.shape}: {params / 1e6:.1f}M parameters; {len(rows)} words in {len(text)} "
          f"sentences, {subwords / len(rows):.2f} subwords per word; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    for grads in (False, True):
        start = time.perf_counter()
        hf_states(model, tok, rows, grads, args.batch_size)
        seconds = time.perf_counter() - start
        print(f"  {'with' if grads else 'without'} gradients: {seconds:.2f} s per checkpoint "
              f"({seconds / len(rows) * 5000:.0f} s for 5,000 tokens)")
    print(f"  peak memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB")


if __name__ == "__main__":
    main()
