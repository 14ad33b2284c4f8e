"""Time of the Hugging Face adapter per checkpoint: every hidden state at each probe word without
gradients, and with the per-token gradients by both methods side by side (one backward pass per
batch through the vertical attention, and one per subword position), with their ratio.

A model of the given shape is built from a config with random weights (no download): `tiny`
is the test suite's GPT-NeoX (16-d, 2 layers), `pythia70m` is Pythia-70M's shape (512-d,
6 layers, 8 heads, 50,304 entries); its tokenizer is a byte-level BPE learnt on the probe's own
words, `--vocab` subwords (2,500 on 5,000 Brown words: about 1.3 subwords per word, as
Pythia's on English text). The checkpoint's
load is timed on the model saved once to a temporary folder.

The per-position method is slow, so all three are first timed on the same first
`--compare-tokens` probe tokens (whole sentences: the ratio is measured there), then without
gradients and one pass on `--tokens`; the per-position time at `--tokens` is scaled from the
comparison linearly in sentences. Prints the load average before and after, and the cost per
checkpoint and for Pythia's 154 revisions.

    python scripts/bench_hf.py --prepared ARTIFACTS/default/prepare/KEY --shape pythia70m
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pipeline.models.hf_causal_lm import HFCausalLM, hf_states  # noqa: E402
from pipeline.models.hf_words import word_pieces  # noqa: E402
from pipeline.stages.extract import probe_rows  # noqa: E402

REVISIONS = 154  # Pythia's checkpoints


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


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def load_seconds(model) -> float:
    """Seconds to read a checkpoint of ``model``'s size into it (saved once, safetensors)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        return timed(lambda: HFCausalLM().load_weights(model, Path(tmp), "cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--probe", default="brown_probe")
    parser.add_argument("--shape", choices=("tiny", "pythia70m"), default="pythia70m")
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--compare-tokens", type=int, default=500)
    parser.add_argument("--vocab", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tinyhf import tokenizer

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    tokens = pd.read_parquet(args.prepared / "probe_tokens.parquet")
    rows = probe_rows(tokens, args.probe, args.tokens)
    small = probe_rows(tokens, args.probe, args.compare_tokens)
    text = [" ".join(s.word.astype(str)) for _, s in rows.groupby("sent_index")]
    tok = tokenizer(text, vocab=args.vocab, kind="gpt_neox")
    model = model_of(args.shape, len(tok))
    subwords = sum(len(word_pieces(tok, s.split()).ids) - 1 for s in text)
    params = sum(p.numel() for p in model.parameters())
    n_small = small.sent_index.nunique()
    print(f"{args.shape}: {params / 1e6:.1f}M parameters; {args.threads} thread(s); batches of "
          f"{args.batch_size}; {len(rows)} words in {len(text)} sentences of {args.probe} "
          f"({len(rows) / len(text):.1f} words, {subwords / len(text):.1f} subwords each: "
          f"{subwords / len(rows):.2f} per word)")

    def run(on, grads, one_pass=None):
        return timed(lambda: hf_states(model, tok, on, grads, args.batch_size, "last",
                                       one_pass))

    load = load_seconds(model)
    print(f"  reading a checkpoint: {load:.2f} s")
    print(f"side by side on the first {len(small)} words ({n_small} sentences):")
    plain = run(small, False)
    one = run(small, True, True)
    each = run(small, True, False)
    print(f"  without gradients        {plain:8.1f} s\n"
          f"  gradients, one pass      {one:8.1f} s\n"
          f"  gradients, per position  {each:8.1f} s\n"
          f"  per position / one pass  {each / one:8.1f}x "
          f"(gradients' own cost: {(each - plain) / max(one - plain, 1e-9):.1f}x)")
    print(f"on {len(rows)} words ({len(text)} sentences):")
    plain_all = run(rows, False)
    one_all = run(rows, True, True)
    each_all = each * len(text) / n_small
    print(f"  without gradients        {plain_all:8.1f} s (measured)\n"
          f"  gradients, one pass      {one_all:8.1f} s (measured)\n"
          f"  gradients, per position  {each_all:8.1f} s (scaled from the comparison)")
    per = {"without gradients": plain_all, "with gradients (one pass)": one_all,
           "with gradients (per position)": each_all}
    print(f"per checkpoint (reading included) and for {REVISIONS} revisions:")
    for what, seconds in per.items():
        total = load + seconds
        print(f"  {what:31s} {total / 60:7.2f} min   {REVISIONS * total / 3600:7.2f} h")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
