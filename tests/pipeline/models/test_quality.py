"""Each adapter's ``quality`` on a loaded model: tiny fairseq models built with the adapter's own
fairseq-train flags from the smoke presets (LSTM LM, LSTM tagger, Transformer LM, Transformer
NMT, a fairseq series holding the NMT), trained for a few steps in float64 on tiny binarised
data with a rule to learn (LM: each word's successor; tagger: the next word's class; NMT: a
copy of such a sequence, whose first word only the source gives).

Known answers: the valid loss is fairseq's cross-entropy criterion summed over the first N
sequences one at a time; on a saved checkpoint, quality is the evaluation path's
(``evaluate.stream_eval`` on the valid split) to the bit; the BLEU of the model's own greedy
translations as references is 100 on the sentences within the limit; within a projection
block the identity changes nothing and the layer's mean (a constant) makes quality worse; a
copy pruned at 0% has the model's quality exactly.
"""

import math

import numpy as np
import pytest
import torch
from conftest import compose
from exactness import float64_softmax  # noqa: F401  float64 log-softmax in these tests

from pipeline import evaluate, pruning, translation
from pipeline.config import model_specs
from pipeline.models import adapter, complete
from pipeline.runtime import import_fairseq

WORDS = [f"w{i}" for i in range(30)]
PIECES = [f"\u2581w{i}" for i in range(30)]  # sentencepiece pieces: words after detokenising
TAGS = ["t0", "t1", "t2"]
FAIRSEQ = {"lstm_lm": "lstm_lm_deep", "lstm_tagger": "tagger_pos",
           "transformer_lm": "transformer_lm_small", "transformer_nmt": "transformer_nmt_small",
           "fairseq_series": "transformer_nmt_small"}
# (Adam's rate, steps) to learn the rule well enough that a constant layer is clearly worse
TRAINING = {"lstm_lm": (3e-2, 100), "lstm_tagger": (3e-2, 100), "transformer_lm": (1e-2, 100),
            "transformer_nmt": (1e-2, 150)}
LIMIT = 7  # sequences: fewer than the valid split's


def binarise(path, dictionary_entries: list[str], lines: list[list[str]]) -> None:
    """A fairseq dictionary (``dict.txt``-style entries) and an mmap dataset of ``lines``,
    each ending in </s> as fairseq-preprocess writes them."""
    from fairseq.data import Dictionary, indexed_dataset

    d = Dictionary()
    for entry in dictionary_entries:
        d.add_symbol(entry)
    builder = indexed_dataset.make_builder(f"{path}.bin", impl="mmap", vocab_size=len(d))
    for line in lines:
        builder.add_item(torch.IntTensor([d.index(t) for t in line] + [d.eos()]))
    builder.finalize(f"{path}.idx")


def write_dict(path, entries: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} {100 - i}\n" for i, w in enumerate(entries)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A prepare folder: the word stream and its tags (valid split), the NMT's valid pairs
    and test2016 text, with a rule each model can learn in a few steps."""
    import_fairseq()
    root = tmp_path_factory.mktemp("prepare")
    rng = np.random.default_rng(0)
    starts, lengths = rng.integers(0, 30, 40), rng.integers(4, 10, 40)
    stream = [[WORDS[(s + j) % 30] for j in range(n)] for s, n in zip(starts, lengths, strict=True)]
    tags = [[TAGS[int(w[1:]) % 3] for w in s] for s in stream]
    for name, entries, lines in (("lm", WORDS, stream), ("pos", TAGS, tags)):
        write_dict(root / "lm" / "bin" / name / "dict.txt", entries)
        binarise(root / "lm" / "bin" / name / "valid", entries, lines)
    pairs = [[PIECES[(s + j) % 30] for j in range(n)]
             for s, n in zip(rng.integers(0, 30, 60), rng.integers(4, 9, 60), strict=True)]
    nmt = root / "nmt" / "bin"
    for lang in ("en", "de"):
        write_dict(nmt / f"dict.{lang}.txt", PIECES)
        binarise(nmt / f"valid.en-de.{lang}", PIECES, pairs[:40])
    text = root / "nmt" / "text"
    text.mkdir(parents=True)
    for name in ("test.en", "test.de"):
        (text / name).write_text("".join(" ".join(p) + "\n" for p in pairs[40:]))
    for name in ("ref.test.en", "ref.test.de"):
        (text / name).write_text("".join(translation.detokenize(p) + "\n"
                                         for p in pairs[40:]))
    return root


def build(spec: dict, data):
    """A model as fairseq-train builds it from the adapter's flags, in float64, its task and
    the parsed flags."""
    from fairseq import options, tasks

    import pipeline.fairseq_plugin  # noqa: F401  the tagging task and tagger model

    argv = [str(a) for a in adapter(spec).fairseq_args(spec, data)] + ["--cpu"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    torch.manual_seed(0)
    task = tasks.setup_task(args)
    return task.build_model(args).double().eval(), task, args


def criterion(task):
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion

    return CrossEntropyCriterion(task, sentence_avg=False)


def train(model, task, lr: float, steps: int) -> None:
    """Adam on the valid split's batches (the rule is what matters, not held-out data)."""
    task.load_dataset("valid")
    batches = list(task.get_batch_iterator(task.dataset("valid"), max_sentences=8)
                   .next_epoch_itr(shuffle=False))
    loss_of = criterion(task)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss, size, _ = loss_of(model, batches[step % len(batches)])
        optimiser.zero_grad()
        (loss / size).backward()
        optimiser.step()
    model.eval()


@pytest.fixture(scope="module", params=list(FAIRSEQ))
def case(request, data):
    """(spec, trained float64 model, task, parsed flags) of one kind."""
    kind = request.param
    spec = dict(model_specs(compose("experiment=smoke"))[FAIRSEQ[kind]])
    model, task, args = build(spec, data)
    train(model, task, *TRAINING[spec["kind"]])
    if kind == "fairseq_series":
        spec = complete({**spec, "kind": kind, "adapter": "transformer_nmt",
                         "checkpoints": "unused", "dictionary": str(data / "nmt" / "bin")})
    return spec, model, task, args


def decoding() -> dict:
    """The translate config's decoding, as the compress stage passes it."""
    t = compose("experiment=smoke").translate
    return {k: t[k] for k in ("beam", "max_len_a", "max_len_b", "batch_size")}


def quality(case, data, limit=LIMIT, model=None, decode=True) -> dict[str, float]:
    spec, trained, task, _ = case
    return adapter(spec).quality(model or trained, task, spec, data, "cpu", limit,
                                 decoding() if decode else None)


def primary(case) -> tuple[str, bool]:
    spec = case[0]
    return next(iter(adapter(spec).quality_keys(spec).items()))


def test_quality_names_its_keys(case, data):
    """All of them given the decoding; without it the teacher-forced ones (no BLEU)."""
    spec = case[0]
    q = quality(case, data)
    assert list(q) == list(adapter(spec).quality_keys(spec))
    assert all(isinstance(v, float) and math.isfinite(v) for v in q.values())
    assert list(quality(case, data, decode=False)) == [k for k in q if k != "bleu"]


def test_the_valid_loss_is_fairseqs_criterion_on_the_first_n_sequences(case, data):
    """Summed one sequence at a time over items 0..N-1 (another batching and order), in
    float64: within 1e-10 relative (rounding of a few hundred float64 terms)."""
    spec, model, task, _ = case
    dataset, loss_of = task.dataset("valid"), criterion(task)
    for limit in (LIMIT, None):
        n = len(dataset) if limit is None else limit
        total = tokens = 0.0
        with torch.no_grad():
            for i in range(n):
                loss, _, log = loss_of(model, dataset.collater([dataset[i]]))
                total, tokens = total + float(loss), tokens + log["ntokens"]
        bits = total / tokens / math.log(2)
        got = evaluate.token_metrics(model, task, "valid", "cpu", limit)
        assert got["tokens"] == tokens
        assert got["loss_bits"] == pytest.approx(bits, rel=1e-10)
        q = quality(case, data, limit)
        if "valid_ppl" in q:
            assert q["valid_ppl"] == pytest.approx(2 ** bits, rel=1e-10)
        if "valid_loss" in q:
            assert q["valid_loss"] == pytest.approx(bits, rel=1e-10)


def test_tagger_accuracy_counts_the_first_n_sequences_word_tags(data, case):
    spec, model, task, _ = case
    if not spec.get("tags"):
        pytest.skip("a tagger's measure")
    dataset, eos = task.dataset("valid"), task.target_dictionary.eos()
    hits = words = 0
    with torch.no_grad():
        for i in range(LIMIT):
            sample = dataset.collater([dataset[i]])
            lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
            keep = sample["target"] != eos  # one sequence: no padding
            hits += int((lprobs.argmax(-1) == sample["target"])[keep].sum())
            words += int(keep.sum())
    assert quality(case, data)["valid_accuracy"] == hits / words


def save(args, model, path, monkeypatch) -> None:
    """A checkpoint as the pipeline's snapshots store one: the config (fairseq converts the
    flags with Hydra's pre-1.2 API, which refuses once compose has set a newer version base)
    and the weights."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from hydra.version import VersionBase
    from omegaconf import OmegaConf
    from packaging.version import Version

    monkeypatch.setattr(VersionBase.instance(), "version_base", Version("1.1"))
    cfg = OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True,
                                 enum_to_str=True)
    torch.save({"args": None, "cfg": cfg, "model": model.state_dict(), "criterion": None,
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion",
                                       "optimizer_name": "Adam", "lr_scheduler_state": {},
                                       "num_updates": 0}], "extra_state": {}}, path)


def test_on_a_saved_checkpoint_quality_is_the_evaluation_path_to_the_bit(case, data, tmp_path,
                                                                          monkeypatch):
    """``load`` then ``quality`` against ``evaluate.stream_eval`` (the train stage's
    evaluation) on the valid split, the same limit: the same float32 code path."""
    spec, model, task, args = case
    path = tmp_path / "checkpoint.pt"
    save(args, model, path, monkeypatch)
    kind = adapter(spec)
    loaded, loaded_task = kind.load(spec, path, data, "cpu")
    for limit in (LIMIT, None):
        q = kind.quality(loaded, loaded_task, spec, data, "cpu", limit, decoding())
        ref = evaluate.stream_eval(path, kind.load_overrides(spec, data), "valid", "cpu", limit)
        expected = {"valid_ppl": 2 ** ref["loss_bits"], "valid_accuracy": ref["accuracy"],
                    "valid_loss": ref["loss_bits"]}
        for key in set(q) - {"bleu"}:
            assert q[key] == expected[key], (key, limit)


def test_bleu_is_100_against_its_own_translations_within_the_limit(case, data, tmp_path):
    spec, model, task, _ = case
    if "bleu" not in adapter(spec).quality_keys(spec):
        pytest.skip("a translation model's measure")
    pairs = translation.load_pairs(data, "test2016", None)
    hyps = translation.translate(model, task.target_dictionary, pairs, **decoding())
    own = [translation.detokenize(h) for h in hyps]
    assert sum(len(t.split()) for t in own[:LIMIT]) >= 4 * LIMIT  # 4-grams to count
    text = tmp_path / "nmt" / "text"
    text.mkdir(parents=True)
    for name in ("test.en", "test.de", "ref.test.en"):
        (text / name).write_text((data / "nmt" / "text" / name).read_text())
    wrong = [" ".join(reversed(t.split())) + " w0" for t in own[LIMIT:]]
    (text / "ref.test.de").write_text("".join(t + "\n" for t in own[:LIMIT] + wrong))
    assert quality(case, tmp_path, LIMIT)["bleu"] == pytest.approx(100.0, abs=1e-9)
    assert quality(case, tmp_path, None)["bleu"] < 90


def layers(case) -> list[str]:
    spec = case[0]
    return [name for name, _, _ in adapter(spec).layers(spec)]


def test_within_the_identity_projection_quality_is_unchanged(case, data):
    spec, model, _, _ = case
    reference = quality(case, data)
    for layer in layers(case):
        with adapter(spec).project(model, spec, layer, lambda x: x):
            assert quality(case, data) == reference, layer


def test_a_layer_replaced_by_its_mean_makes_quality_worse(case, data):
    """x ↦ 0·x + c, c the layer's mean state on the evaluation data: no information passes
    the layer, so the model is no better than one constant prediction per position."""
    spec, model, _, _ = case
    key, higher = primary(case)
    reference = quality(case, data)[key]
    kind = adapter(spec)
    for layer in layers(case):
        seen = []
        with kind.project(model, spec, layer, lambda x, seen=seen: seen.append(
                x.reshape(-1, x.shape[-1])) or x):
            quality(case, data)
        mean = torch.cat(seen).mean(0)
        with kind.project(model, spec, layer, lambda x, c=mean: 0 * x + c):
            worse = quality(case, data)[key]
        if higher:
            assert worse < reference - 0.2, (layer, worse, reference)
        else:
            assert worse > reference + 0.5 * abs(reference), (layer, worse, reference)


def test_a_copy_pruned_at_0_percent_has_the_models_quality_exactly(case, data):
    pruned = pruning.global_magnitude_masks(case[1], 0.0)
    assert quality(case, data, model=pruned) == quality(case, data)


def test_a_kind_without_a_quality_measure_says_so():
    spec = {"kind": "hf_causal_lm"}
    with pytest.raises(NotImplementedError, match="hf_causal_lm.*no quality measure"):
        adapter(spec).quality(None, None, spec, None, "cpu", None)
    assert adapter(spec).quality_keys(spec) == {}


def test_a_limit_below_one_is_refused(case, data):
    with pytest.raises(ValueError, match="limit 0"):
        quality(case, data, 0)
