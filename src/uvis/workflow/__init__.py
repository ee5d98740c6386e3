"""The Snakemake workflow's Python, importable and tested like the rest of the library.

* :mod:`uvis.workflow.runs`: what a run name means (:class:`~uvis.workflow.runs.Run`,
  :class:`~uvis.workflow.runs.VisTraining`), parsed and written in one place;
* :mod:`uvis.workflow.tables`: which runs fill which paper table, their files and logs, and the
  tables left unbuilt when a run fails;
* :mod:`uvis.workflow.checks`: the config checks run when the DAG is built;
* :mod:`uvis.workflow.rules`: which rules run which library code (``python -m
  uvis.workflow.rules FILE`` lists the rules to re-run after editing FILE).

The ``.smk`` files bind these to the run's ``config`` and keep only rules, ``expand`` calls and
input functions. This package is the top layer: it may import the CLI, nothing imports it.
"""
