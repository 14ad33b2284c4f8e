"""Each adapter's projection hook (``project``) on its own kind, in float64: tiny untrained
fairseq models built with the adapter's own fairseq-train flags from the smoke presets (LSTM LM,
LSTM tagger, Transformer LM, Transformer NMT encoder and decoder, a fairseq series holding the
NMT) and tiny Hugging Face revisions (GPT-NeoX, GPT-2, Llama), every layer of each.

Known answers: the identity leaves the output unchanged to the bit; removing one direction u
leaves the states the adapter's ``states`` records for that layer orthogonal to u (the hook
point is the recorded state) and every layer below it as unhooked, and changes the output;
after the block, also one left by an exception, the output is the unhooked model's to the bit.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose
from exactness import assert_rows_close, float64_softmax  # noqa: F401
from tinyhf import TEXT, revisions

from pipeline.config import model_specs
from pipeline.models import adapter, complete, words
from pipeline.models import transformer_nmt as tn
from pipeline.runtime import import_fairseq

WORDS = [f"w{i}" for i in range(30)]
LENGTHS = (5, 9, 3, 7)  # sentences of unequal length: batches of 2 are padded
FAIRSEQ = {"lstm_lm": "lstm_lm_deep", "lstm_tagger": "tagger_pos",
           "transformer_lm": "transformer_lm_small", "transformer_nmt": "transformer_nmt_small",
           "fairseq_series": "transformer_nmt_small"}
HF = ("gpt_neox", "gpt2", "llama")


@dataclass
class Case:
    """A model of one kind, its probe rows and ``run``: its output on one fixed batch."""

    spec: dict
    model: object
    task: object
    rows: pd.DataFrame
    run: Callable

    def states(self) -> dict[str, np.ndarray]:
        kind = adapter(self.spec)
        label = kind.label_column(self.spec, {})  # a tagger without gold labels: ''
        return kind.states(self.model, self.task, self.spec, self.rows, label, False, 2)[0]

    def project(self, layer: str, fn):
        return adapter(self.spec).project(self.model, self.spec, layer, fn)


def sentences(rng: np.random.Generator) -> list[list[str]]:
    return [list(rng.choice(WORDS, n)) for n in LENGTHS]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A prepare folder holding only the dictionaries that building the models reads."""
    root = tmp_path_factory.mktemp("prepare")
    entries = "".join(f"{w} {100 - i}\n" for i, w in enumerate(WORDS))
    for path in ("lm/bin/lm/dict.txt", "lm/bin/pos/dict.txt", "nmt/bin/dict.en.txt",
                 "nmt/bin/dict.de.txt"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(entries)
    return root


def fairseq_model(spec: dict, data):
    """An untrained model as fairseq-train builds it from the adapter's flags, in float64."""
    import_fairseq()
    from fairseq import options, tasks

    import pipeline.fairseq_plugin  # noqa: F401  the tagging task and tagger model

    argv = [str(a) for a in adapter(spec).fairseq_args(spec, data)] + ["--cpu"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    torch.manual_seed(0)
    task = tasks.setup_task(args)
    return task.build_model(args).double().eval(), task


def fairseq_case(kind: str, data) -> Case:
    spec = dict(model_specs(compose("experiment=smoke"))[FAIRSEQ[kind]])
    model, task = fairseq_model(spec, data)
    if kind == "fairseq_series":
        spec = complete({**spec, "kind": kind, "adapter": "transformer_nmt",
                         "checkpoints": "unused", "dictionary": "unused"})
    rng = np.random.default_rng(0)
    d = task.source_dictionary
    if kind in ("transformer_nmt", "fairseq_series"):
        rows = pd.DataFrame([dict(side=side, sent_index=i, token=w)
                             for side in ("source", "target")
                             for i, s in enumerate(sentences(rng)) for w in s])
        ((_, src, prev, *_),) = list(tn.nmt_batches(tn.side_sentences(rows, "source"),
                                                    tn.side_sentences(rows, "target"), d, 4))
        return Case(spec, model, task, rows,
                    lambda m: m(src, (src != d.pad()).sum(1), prev)[0])
    rows = pd.DataFrame([dict(side="lm", sent_index=i, token=w)
                         for i, s in enumerate(sentences(rng)) for w in s])
    ((inp, _, _),) = list(words.batches(words.sentences(rows), d, task.target_dictionary, "",
                                        len(LENGTHS)))
    return Case(spec, model, task, rows, lambda m: m(inp)[0])


def hf_case(arch: str, folder) -> Case:
    pytest.importorskip("transformers")
    (revision,) = revisions(folder / "revs", arch, steps=(0,))
    spec = complete({"kind": "hf_causal_lm", "revisions": [str(folder / "revs")],
                     "steps": None, "subword": "mean", "dtype": "float64"})
    model, tokenizer = adapter(spec).load(spec, revision, None, "cpu")
    rows = pd.DataFrame([dict(side="lm", sent_index=i, position=j, word=w)
                         for i, s in enumerate(TEXT) for j, w in enumerate(s.split())])
    ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id,
                         *tokenizer(TEXT[0])["input_ids"]]])
    return Case(spec, model, tokenizer, rows, lambda m: m(input_ids=ids).logits)


@pytest.fixture(scope="module", params=[*FAIRSEQ, *(f"hf_{a}" for a in HF)])
def case(request, data, tmp_path_factory) -> Case:
    name = request.param
    if name.startswith("hf_"):
        return hf_case(name.removeprefix("hf_"), tmp_path_factory.mktemp(name))
    return fairseq_case(name, data)


def layers(case: Case) -> list[tuple[str, int]]:
    return [(name, dim) for name, _, dim in adapter(case.spec).layers(case.spec)]


def without(u: torch.Tensor):
    """x ↦ x − (x·u) uᵀ: the projection removing the unit direction u."""
    return lambda x: x - (x @ u.to(x)).unsqueeze(-1) * u.to(x)


def unit(dim: int, seed: int) -> torch.Tensor:
    u = torch.randn(dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_the_identity_leaves_the_output_unchanged_to_the_bit(case):
    with torch.no_grad():
        reference = case.run(case.model)
        for layer, dim in layers(case):
            widths = []

            def identity(x, widths=widths):
                widths.append(x.shape[-1])
                return x

            with case.project(layer, identity):
                out = case.run(case.model)
            assert torch.equal(out, reference), layer
            assert widths and set(widths) == {dim}, (layer, widths)  # it ran, on that state


def test_removing_a_direction_leaves_the_recorded_states_orthogonal_to_it(case):
    """The recorded states are stored as float32 by some kinds: rounding each entry moves
    s·u by at most eps(dtype)/2·‖s‖, so |s·u| ≤ eps·‖s‖ holds by construction (1e-10·‖s‖ where
    they are float64); unhooked, |s·u| is of the order of ‖s‖/√dim."""
    with torch.no_grad():
        reference, before = case.run(case.model), case.states()
        names = [name for name, _ in layers(case)]
        for depth, (layer, dim) in enumerate(layers(case)):
            u = unit(dim, depth)
            with case.project(layer, without(u)):
                after, out = case.states(), case.run(case.model)
            s = after[layer].astype(np.float64)
            bound = max(np.finfo(after[layer].dtype).eps, 1e-10) * np.linalg.norm(s, axis=1)
            assert (np.abs(s @ u.numpy()) <= bound).all(), layer
            s0 = before[layer].astype(np.float64)
            assert (np.abs(s0 @ u.numpy()) > 1e3 * bound).any(), layer  # the test can fail
            for below in names[:depth]:  # the layers it feeds nothing to are as unhooked
                assert np.array_equal(after[below], before[below]), (layer, below)
            assert not torch.equal(out, reference), layer


def test_the_hook_is_removed_after_the_block_and_after_an_exception(case):
    with torch.no_grad():
        reference = case.run(case.model)
        case.states()  # transformers installs its recording hooks on the first call
        hooks = hook_count(case.model)
        for depth, (layer, dim) in enumerate(layers(case)):
            with case.project(layer, without(unit(dim, depth))):
                assert not torch.equal(case.run(case.model), reference), layer
            assert torch.equal(case.run(case.model), reference), layer
            with pytest.raises(RuntimeError, match="inside"):
                with case.project(layer, without(unit(dim, depth))):
                    case.run(case.model)
                    raise RuntimeError("inside the block")
            assert torch.equal(case.run(case.model), reference), layer
            assert hook_count(case.model) == hooks, layer


def test_an_unknown_layer_names_the_known_ones(case):
    first = layers(case)[0][0]
    with pytest.raises(ValueError, match=f"no layer 'nope'.*'{first}'"):
        case.project("nope", lambda x: x)


def test_nmt_decoder_hooks_act_per_step_in_incremental_decoding(data):
    """Greedy decoding reads the decoder one step at a time: within a projection block, the
    incremental steps give the full teacher-forced pass's outputs (rows within 1e-10)."""
    case = fairseq_case("transformer_nmt", data)
    d = case.task.source_dictionary
    ((_, src, prev, *_),) = list(tn.nmt_batches(tn.side_sentences(case.rows, "source"),
                                                tn.side_sentences(case.rows, "target"), d, 4))
    real = prev != d.pad()
    model = case.model
    with torch.no_grad():
        for depth, (layer, dim) in enumerate(layers(case)):
            if not layer.startswith("dec"):
                continue
            with case.project(layer, without(unit(dim, depth))):
                enc = model.encoder(src, src_lengths=(src != d.pad()).sum(1))
                full = model.decoder(prev, encoder_out=enc)[0]
                state: dict = {}
                steps = torch.cat([model.decoder(prev[:, : t + 1], encoder_out=enc,
                                                 incremental_state=state)[0]
                                   for t in range(prev.shape[1])], 1)
            assert_rows_close(steps[real], full[real], rtol=1e-10)
