# The papers' tables, figures and qualitative strips, and the Snakemake report (issue 6):
#
#   snakemake --cores N                       # builds results/<dataset>/tables/ and report/
#   snakemake --report report.html            # the report a person reads (tables, plots, strips)
#
# Each table row is one run (its own cached targets, named by the conventions in
# report_common.smk); a table is rebuilt whenever one of its runs' metrics changes. When a run
# fails, the default profile keeps going and the `onerror` handler at the end builds each table
# with a failed run as tables/<name>.partial.md, the failed rows marked with the log to read.


include: "report_common.smk"


report: "../workflow/report/workflow.rst"


wildcard_constraints:
    table="|".join(ALL_TABLES),


# Rules


rule table:
    """One of the papers' tables from its runs' metrics (Markdown, CSV and HTML)."""
    input:
        table_inputs,
    output:
        md=f"{R}/tables/{{table}}.md",
        csv=f"{R}/tables/{{table}}.csv",
        html=report(
            f"{R}/tables/{{table}}.html",
            caption="../workflow/report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{R}/logs/report/table_{{table}}.log",
    benchmark:
        f"{R}/benchmarks/report/table_{{table}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        args=lambda wildcards: table_args(wildcards.table),
    shell:
        "python -m uvis report table {wildcards.table:q} {params.args} --out {output.md:q} "
        "> {log:q} 2>&1"


rule pseudo_quality_html:
    """The pseudo-label quality table (UVIS Table 2's filter levels) for the report."""
    input:
        f"{R}/pseudo/quality/{{split}}.md",
    output:
        report(
            f"{R}/report/pseudo_quality.{{split}}.html",
            caption="../workflow/report/pseudo_quality.rst",
            category="Pseudo-labels",
            labels={"split": "{split}"},
        ),
    log:
        f"{R}/logs/report/pseudo_quality_html.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/report/pseudo_quality_html.{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m uvis report html {input:q} --out {output:q} > {log:q} 2>&1"


rule plot_loss:
    """Training loss curves of one VIS run or tag-based variant."""
    input:
        training_done,
    output:
        report(
            f"{R}/report/loss/{{train_run}}.png",
            caption="../workflow/report/loss.rst",
            category="Training",
            labels={"training": "{train_run}"},
        ),
    log:
        f"{R}/logs/report/plot_loss.{{train_run}}.log",
    benchmark:
        f"{R}/benchmarks/report/plot_loss.{{train_run}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        csv=training_csv,
        title=lambda wildcards: f"Training loss: {wildcards.train_run}",
    shell:
        "python -m uvis report loss {params.csv:q} --title {params.title:q} "
        "--out {output:q} > {log:q} 2>&1"


rule plot_per_category_ap:
    """Per-category AP of a table's runs, grouped by category."""
    input:
        unpack(per_category_inputs),
    output:
        report(
            f"{R}/report/per_category_ap/{{table}}.png",
            caption="../workflow/report/per_category_ap.rst",
            category="Per-category AP",
            labels={"table": "{table}"},
        ),
    log:
        f"{R}/logs/report/plot_per_category_ap.{{table}}.log",
    benchmark:
        f"{R}/benchmarks/report/plot_per_category_ap.{{table}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        runs=per_category_args,
        title=lambda wildcards: f"Per-category AP: {wildcards.table} ({DS}, {EVAL_SPLIT})",
    shell:
        "python -m uvis report per-category-ap {params.runs} --title {params.title:q} "
        "--out {output:q} > {log:q} 2>&1"


rule failures:
    """Per-video errors of a run (wrong class, merged instances, flicker) and the failure cases
    to show, as UVIS Figure 4."""
    input:
        gt=ytvis_json,
        tracks=f"{R}/predictions/{{run}}/{{split}}/tracks.parquet",
    output:
        json=f"{R}/report/failures/{{run}}.{{split}}.json",
        md=f"{R}/report/failures/{{run}}.{{split}}.md",
    log:
        f"{R}/logs/report/failures.{{run}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/report/failures.{{run}}.{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        per_kind=TABLES["strips"]["failures_per_kind"],
        iou=TABLES["failures"]["iou"],
        cover=TABLES["failures"]["cover"],
        title=lambda wildcards: f"Failure cases: {wildcards.run} on {wildcards.split}",
    shell:
        "python -m uvis report failures --gt-json {input.gt:q} --tracks {input.tracks:q} "
        "--per-kind {params.per_kind:q} --iou {params.iou:q} --cover {params.cover:q} "
        "--title {params.title:q} --no-progress --out {output.json:q} > {log:q} 2>&1"


rule strips:
    """Qualitative strips (PNG) and animations (GIF) of a run: sample videos and its failure
    cases, ground truth above the predicted tracks."""
    input:
        gt=ytvis_json,
        frames=f"{R}/frames/{{split}}.parquet",
        tracks=f"{R}/predictions/{{run}}/{{split}}/tracks.parquet",
        failures=f"{R}/report/failures/{{run}}.{{split}}.json",
    output:
        report(
            directory(f"{R}/report/strips/{{run}}.{{split}}"),
            patterns=["{name}.png", "{name}.html"],
            caption="../workflow/report/strips.rst",
            category="Qualitative",
            subcategory="{run}",
            labels={"run": "{run}", "picture": "{name}"},
        ),
    log:
        f"{R}/logs/report/strips.{{run}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/report/strips.{{run}}.{{split}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        samples=TABLES["strips"]["samples"],
        frames=TABLES["strips"]["frames"],
        height=TABLES["strips"]["height"],
    shell:
        "python -m uvis report strips --gt-json {input.gt:q} --frames {input.frames:q} "
        "--tracks {input.tracks:q} --failures {input.failures:q} --run {wildcards.run:q} "
        "--samples {params.samples:q} --strip-frames {params.frames:q} "
        "--height {params.height:q} --no-progress --out {output:q} > {log:q} 2>&1"


# A failed run: the tables are still built, its rows marked failed.


onerror:
    build_tables_after_error(log)
