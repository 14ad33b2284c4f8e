"""The analysis tables, one module per family (``convergence``: F1, F2, F4 and k; ``per_tag``:
F5 and the tag families of F3; ``concentration``: F6; ``sanity``: S1, S2, S4; ``nmt``: F7's
stages; ``bookkeeping``: checkpoints, sizes, settings, models), the rows and columns they share
(``rows``) and the ``registry`` of every table: its name, key columns and how it pools over
seeds."""
