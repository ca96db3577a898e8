"""The pipeline's stages, one module each: preflight, sync, wait, train, fetch, promote.

The shape every stage keeps: ``stage(hub, options, state, *, progress) -> XResult``
(``hub`` first, then what to do, then the state it reads and records in); options are
built once from flags, state and ``[tool.spacetrain]`` (``train_options``,
``SyncOptions.from_checkout``, ``FetchOptions.build``, ``PromoteOptions.build``); the
result is a small dataclass with ``to_json()``. Progress is injected
(:mod:`~spacetrain.stages.progress`); which Space and which commit come from one rule
(:mod:`~spacetrain.stages.target`). The CLI runs one stage per command (so a workflow can
run them as separate steps); `pipeline` and `rehearse` run them as a table
(:data:`spacetrain.pipeline.STAGES`).

Training itself runs behind :class:`~spacetrain.stages.backend.TrainingBackend`
(:mod:`~spacetrain.stages.space_backend` is the Space's Gradio API).
"""
