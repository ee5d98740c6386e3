"""The papers' tables, figures, failure cases and qualitative strips, for the Snakemake report.

The last layer of the pipeline: it reads what the other stages wrote (metrics JSONs, training
``metrics.csv``, tracks Parquets, frames, ground truth) and nothing depends on it.

- :mod:`uvis.report.tables`: UVIS Tables 1-4 and the tag-based paper's Tables I-III, as
  Markdown and CSV in the papers' layouts; failed runs stay in the table, marked as such.
- :mod:`uvis.report.html`: those Markdown tables as HTML pages (what the report shows inline).
- :mod:`uvis.report.plots`: per-category AP bar charts and training loss curves (matplotlib).
- :mod:`uvis.report.failures`: per-video errors (wrong class, merged instances, flicker) and the
  failure cases to show, as UVIS Figure 4.
- :mod:`uvis.report.strips`: frames with coloured masks, class names and track ids, as PNG strips
  and animated GIFs.

Submodules are imported where used: the tables need only the standard library, the strips load
the frames and :mod:`uvis.inference`'s drawing.
"""
