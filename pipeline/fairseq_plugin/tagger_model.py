"""`lstm_tagger`: fairseq's lstm_lm with its output layer sized for the tag vocabulary, so a
tagger has exactly the LM's architecture below the softmax."""

from __future__ import annotations

from fairseq.models import register_model, register_model_architecture
from fairseq.models.lstm import Linear
from fairseq.models.lstm_lm import LSTMLanguageModel
from fairseq.models.lstm_lm import base_architecture as lm_base_architecture


@register_model("lstm_tagger")
class LSTMTagger(LSTMLanguageModel):
    @classmethod
    def build_model(cls, args, task):
        if args.share_decoder_input_output_embed:
            raise ValueError("a tagger cannot share input and output embeddings")
        model = super().build_model(args, task)
        decoder = model.decoder
        out_dim = decoder.fc_out.in_features
        decoder.fc_out = Linear(out_dim, len(task.target_dictionary))
        return model


@register_model_architecture("lstm_tagger", "lstm_tagger")
def base_architecture(args):
    lm_base_architecture(args)
