# uvis: unsupervised video instance segmentation, as a reproducible workflow.
#
#   snakemake --cores N                                            # the embedded default
#   snakemake --cores N --configfile config.yaml config/tour.yaml   # the five-minute tour
#   snakemake --cores N --configfile config.yaml config/<dataset>.yaml  # a real dataset
#
# (Nested settings go in a config file: `--config key={...}` passes them as strings.)
#
# Stages live in rules/*.smk; the library they call lives in src/uvis/.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/synth.smk"
include: "rules/frames.smk"
include: "rules/pseudo_labels.smk"
include: "rules/baseline.smk"
include: "rules/vis.smk"
include: "rules/tagvis.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
