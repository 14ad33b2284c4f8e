"""What the server process that starts in-process jobs (pipeline.jobs) imports once, so that
every job forks with it loaded instead of importing it again (about 3 s a job on 2 cores).
Importing fairseq resets the root log level (runtime R4): the level is kept."""

import logging

_level = logging.getLogger().level
import fairseq  # noqa: E402, F401
import pandas  # noqa: E402, F401
import pyarrow.parquet  # noqa: E402, F401

logging.getLogger().setLevel(_level)
