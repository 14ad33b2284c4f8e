"""`next_tag_tagging`: read a word stream, predict the tag of the *next* word (Saphra & Lopez).

The words and their tags are binarised as two parallel streams of identical shape (one tag per
word, `</s>` after each sentence). Both are cut into the same token blocks as the language
modelling task cuts the words, so a tagger sees exactly the LM's inputs: at position t it reads
word t-1 and predicts the tag of word t, where the LM predicts word t.
"""


import os
from dataclasses import dataclass, field

import numpy as np
from fairseq.data import Dictionary, MonolingualDataset, TokenBlockDataset, data_utils
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask


@dataclass
class NextTagConfig(LanguageModelingConfig):
    tags_data: str = field(default="", metadata={"help": "binarised tag stream (dir)"})


class NextTagDataset(MonolingualDataset):
    """MonolingualDataset whose targets come from the parallel tag blocks."""

    def __init__(self, words: TokenBlockDataset, tags: TokenBlockDataset, vocab, tag_vocab,
                 shuffle: bool):
        super().__init__(words, words.sizes, vocab, tag_vocab, add_eos_for_other_targets=False,
                         shuffle=shuffle, targets=["future"])
        self.tags = tags

    def __getitem__(self, index):
        source, _, _ = self.dataset[index]
        _, tag_target, _ = self.tags[index]
        return {"id": index, "source": source, "target": tag_target}


@register_task("next_tag_tagging", dataclass=NextTagConfig)
class NextTagTaggingTask(LanguageModelingTask):
    @classmethod
    def setup_task(cls, args, **kwargs):
        words = Dictionary.load(os.path.join(args.data, "dict.txt"))
        tags = Dictionary.load(os.path.join(args.tags_data, "dict.txt"))
        return cls(args, words, output_dictionary=tags, targets=["future"])

    def _blocks(self, path: str, dictionary) -> TokenBlockDataset:
        ds = data_utils.load_indexed_dataset(path, dictionary, self.args.dataset_impl)
        if ds is None:
            raise FileNotFoundError(f"no binarised data at {path}")
        return TokenBlockDataset(ds, ds.sizes, self.args.tokens_per_sample,
                                 pad=dictionary.pad(), eos=dictionary.eos(),
                                 break_mode=self.args.sample_break_mode, include_targets=True)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        words = self._blocks(os.path.join(self.args.data, split), self.dictionary)
        tags = self._blocks(os.path.join(self.args.tags_data, split), self.output_dictionary)
        if not np.array_equal(words.sizes, tags.sizes):
            raise ValueError(f"{split}: word and tag streams differ in shape "
                             f"({self.args.data} vs {self.args.tags_data})")
        self.datasets[split] = NextTagDataset(words, tags, self.dictionary,
                                              self.output_dictionary, shuffle=True)
