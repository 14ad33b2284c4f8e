"""The stages, one module each, and their registry (pipeline.stages.registry):

    prepare ─► train ─┬─► extract ─┬─► compress ─┬─► analyze ─► plot
                      │             └─────────────┤      └─────► aggregate (seeds pooled)
                      └─► translate ──────────────┘
                         (translation models only)

Each stage module holds its work and declares ``STAGE``: the config its key depends on, the
stages it reads, the code it runs, and its run (whole stage) or unit (per model) function; a
per-model stage also declares what the runner logs around it (the prepared data its models'
estimates read, a disk estimate per model, a table of the units' summaries). The runner knows
the stages only through these declarations. Nothing here imports the runner or the schema, so
the stage graph has no cycle.
"""
