# Functions of rules/report.smk (tables, figures, strips), bound to this run's config. The
# logic (which runs fill which table, their files and logs) is uvis.workflow.tables.
# (Kept apart from the rules, as `snakemake --lint` asks.)

from uvis.workflow import tables as wt

TABLES = config["tables"]
ALL_TABLES = list(wt.ALL_TABLES)
PROVENANCE = wt.config_provenance(workflow.configfiles, config)


def table_plan():
    """The runs behind the tables for this config (uvis.workflow.tables.TablePlan)."""
    enabled = config["tagvis"]["enabled"]
    return wt.TablePlan(
        pseudo_level=config["vis"]["pseudo_level"],
        tau=config["filter"]["tau"],
        taus=tuple(TABLES["taus"]),
        supervised="supervised" in vis_runs(),
        deepsort_runs=tuple(deepsort_runs()),
        tagvis_variants=tuple(tagvis_variants()) if enabled else (),
    )


def built_tables():
    """The tables of tables.build that this dataset and config can fill: tag-based ones need
    tagvis.enabled, each needs the ground truth of its metrics (YouTube-VIS or DAVIS).
    """
    tagvis = config["tagvis"]["enabled"]
    gt = {"ytvis": has_ytvis_gt(), "davis": has_davis_gt()}
    return [
        name
        for name in TABLES["build"]
        if gt[wt.table_kind(name)] and (tagvis or not name.startswith("tag_"))
    ]


def table_inputs(wildcards):
    """The metrics files (and, for tag-based Table II, speed files) of a table's runs."""
    kind = wt.table_kind(wildcards.table)
    runs = table_plan().runs(wildcards.table)
    files = [wt.metrics_file(R, EVAL_SPLIT, run, kind) for run in runs]
    if wildcards.table == "tag_table2":
        files += [wt.speed_file(R, EVAL_SPLIT, run) for run in runs]
    return files


def table_args(name, fallback_log=None):
    """`uvis report table` options for a table (rows, files, logs, provenance)."""
    return wt.table_args(
        table_plan(),
        name,
        results=R,
        split=EVAL_SPLIT,
        dataset=DS,
        provenance=PROVENANCE,
        fallback_log=fallback_log,
    )


def headline_rows():
    plan = table_plan()
    return [
        (name, role, run)
        for name in built_tables()
        if name in wt.HEADLINE_TABLES
        for role, run in plan.rows(name)
    ]


def per_category_inputs(wildcards):
    return {
        role: wt.metrics_file(R, EVAL_SPLIT, run, "ytvis")
        for role, run in table_plan().rows(wildcards.table)
    }


def per_category_args(wildcards, input):
    return " ".join(
        shlex.quote(f"{wt.ROLE_LABELS[role]}={path}") for role, path in input.items()
    )


def training_done(wildcards):
    return wt.training_done(R, EVAL_SPLIT, wildcards.train_run)


def training_csv(wildcards):
    return wt.training_csv(R, wildcards.train_run)


def report_targets():
    """Targets of the tables, figures and strips (part of `rule all`)."""
    tables = built_tables()
    targets = expand(
        f"{R}/tables/{{table}}.{{ext}}", table=tables, ext=["md", "csv", "html"]
    )
    targets += expand(
        f"{R}/report/pseudo_quality.{{split}}.html",
        split=[s for s in config["pseudo_labels"]["splits"] if has_ytvis_gt(s)],
    )
    targets += expand(
        f"{R}/report/loss/{{run}}.png", run=table_plan().trainings(tables)
    )
    targets += expand(
        f"{R}/report/per_category_ap/{{table}}.png",
        table=[t for t in tables if t in wt.HEADLINE_TABLES],
    )
    strip_runs = list(dict.fromkeys(str(run) for _, _, run in headline_rows()))
    targets += expand(f"{R}/report/strips/{{run}}.{EVAL_SPLIT}", run=strip_runs)
    return targets


def build_tables_after_error(snakemake_logs):
    """After a failed run, the tables it could not build, from the metrics that exist
    (uvis.workflow.tables.build_tables_after_error)."""
    wt.build_tables_after_error(
        wt.failed_tables(workflow, built_tables()),
        snakemake_logs,
        results=R,
        src=SRC,
        table_args=table_args,
    )
