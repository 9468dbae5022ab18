"""Studies: theory (gdln) next to experiment (relu_lens), one xarray Dataset per run.

Each study module has a frozen ``Config`` with presets, ``run(config) -> Dataset`` and
``plot(ds) -> dict[str, Figure]``; see :mod:`studies.registry` for the contract and
:mod:`studies.cli` for the ``relu-gdln`` command.
"""
