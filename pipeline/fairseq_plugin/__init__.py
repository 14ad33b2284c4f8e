"""fairseq --user-dir plugin: the next-tag tagging task, the LSTM tagger model, and the hook that
writes analysis checkpoints exactly on the configured schedule. Imported by fairseq-train."""

from pipeline.fairseq_plugin import schedule_hook, tagger_model, tagging_task  # noqa: F401
