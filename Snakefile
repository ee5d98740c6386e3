# uvis: unsupervised video instance segmentation, as a reproducible workflow.
#
#   snakemake --cores N                 # everything for the configured dataset
#   snakemake --cores N --config dataset='{...}'   # or --configfile config/<dataset>.yaml
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
