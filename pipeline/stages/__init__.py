"""The stages, one module each, and their registry (pipeline.stages.registry):

    prepare ─► train ─► extract ─► analyze ─► plot
                                      └──────► aggregate (several seeds' analyses pooled)

Each stage module holds its work and declares ``STAGE``: the config its key depends on, the
stages it reads, the code it runs, and its run (whole stage) or unit (per model) function.
Nothing here imports the runner or the schema, so the stage graph has no cycle.
"""
