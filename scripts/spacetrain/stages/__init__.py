"""The pipeline's stages, one module each: preflight, sync, wait, train, fetch, promote.

Each stage is a function that takes the project config, a :class:`~spacetrain.hub.Hub`
and the :class:`~spacetrain.stages.state.PipelineState`, does one job, records what the
next stage needs in the state, and returns a small result dataclass. The CLI runs one
stage per command (so a workflow can run them as separate steps) and `pipeline` and
`rehearse` run them in order.
"""
