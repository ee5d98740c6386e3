# Functions of rules/report.smk (tables, figures, strips): run names, table rows, targets.
# (Kept apart from the rules, as `snakemake --lint` asks.)

import hashlib
import shlex
import subprocess
import sys

TABLES = config["tables"]

#: Every table `uvis report table` builds; which ones a run builds is `tables.build`.
ALL_TABLES = [
    "uvis_table1",
    "uvis_table2",
    "uvis_table3",
    "uvis_table4",
    "tag_table1",
    "tag_table2",
    "tag_table3",
]

#: Filter levels of UVIS Table 2's rows A2-A5 (none, + mask score, + CLIP score, + PMF).
ABLATION_LEVELS = ["none", "objectness", "clip", "pmf"]

#: What the tables say produced them: the config file(s), and a digest of the resolved config
#: (files and --config overrides together).
CONFIG_NAME = (
    " + ".join(dict.fromkeys(os.path.basename(f) for f in workflow.configfiles))
    or "config"
)
CONFIG_DIGEST = hashlib.sha256(
    json.dumps(config, sort_keys=True, default=str).encode()
).hexdigest()[:12]


# Run names


def level_run(level):
    """The VIS run trained on pseudo-labels at a filter level (UVIS Table 2): `uvis` for the
    configured vis.pseudo_level, the configured tau's run for pmf, else uvis_<level>."""
    if level == config["vis"]["pseudo_level"]:
        return "uvis"
    if level == "pmf":
        return tau_run(config["filter"]["tau"])
    return f"uvis_{level}"


def tau_run(tau):
    """The VIS run trained on PMF pseudo-labels at threshold tau (UVIS Table 3): `uvis` when
    that is the configured training (pmf level, filter.tau), else uvis_tau<str(float(tau))>.
    """
    main = config["vis"]["pseudo_level"] == "pmf"
    if main and float(tau) == float(config["filter"]["tau"]):
        return "uvis"
    return f"uvis_tau{float(tau)}"


def tagvis_settings():
    """(enabled, names of the variants the workflow runs) of the tag-based model."""
    enabled = config["tagvis"]["enabled"]
    return enabled, tagvis_variants() if enabled else []


def table_kind(name):
    """Which metrics a table reads: DAVIS for tag-based Tables II and III, else YouTube-VIS."""
    return "davis" if name in ("tag_table2", "tag_table3") else "ytvis"


def table_rows(name):
    """(row role, run) pairs of a table, as `uvis report table --row` takes them."""
    supervised = "supervised" in vis_runs()
    if name == "uvis_table1":
        rows = [("deepsort", "deepsort")]
        rows += [
            ("deepsort_pmf", run) for run in deepsort_runs() if run == "deepsort_pmf"
        ]
        rows.append(("uvis", "uvis-memory"))
        return ([("supervised", "supervised-minvis")] if supervised else []) + rows
    if name == "uvis_table2":
        rows = [("A1", "deepsort")]
        rows += [
            (f"A{k + 2}", f"{level_run(level)}-minvis")
            for k, level in enumerate(ABLATION_LEVELS)
        ]
        rows.append(("A6", f"{level_run('pmf')}-memory"))
        return rows + ([("upper", "supervised-minvis")] if supervised else [])
    if name == "uvis_table3":
        return [(str(float(tau)), f"{tau_run(tau)}-minvis") for tau in TABLES["taus"]]
    if name == "uvis_table4":
        rows = [("uvis", "uvis-minvis"), ("uvis_memory", "uvis-memory")]
        if supervised:
            rows += [
                ("supervised", "supervised-minvis"),
                ("supervised_memory", "supervised-memory"),
            ]
        return rows
    if name == "tag_table1":
        return [("deepsort", "deepsort"), ("ours", "tagvis-full")]
    if name == "tag_table2":
        return [("ours", "tagvis-full")]
    return [(variant, f"tagvis-{variant}") for variant in tagvis_settings()[1]]


def table_runs(name):
    return list(dict.fromkeys(run for _, run in table_rows(name)))


def built_tables():
    """The tables of tables.build that this dataset and config can fill: tag-based ones need
    tagvis.enabled, each needs the ground truth of its metrics (YouTube-VIS or DAVIS).
    """
    tagvis = tagvis_settings()[0]
    gt = {"ytvis": has_ytvis_gt(), "davis": has_davis_gt()}
    return [
        name
        for name in TABLES["build"]
        if gt[table_kind(name)] and (tagvis or not name.startswith("tag_"))
    ]


def metrics_file(run, kind):
    return f"{R}/metrics/{run}.{EVAL_SPLIT}.{kind}.json"


def speed_file(run):
    return f"{R}/predictions/{run}/{EVAL_SPLIT}/speed.json"


def run_logs(run):
    """Logs of the stages that produce a run's metrics; a failed row cites the newest."""
    logs = [
        f"{R}/logs/eval_ytvis/{run}.{EVAL_SPLIT}.log",
        f"{R}/logs/eval_davis/{run}.{EVAL_SPLIT}.log",
    ]
    if run == "deepsort" or run.startswith("deepsort_"):
        logs.append(f"{R}/logs/{run}/{EVAL_SPLIT}.log")
    elif run.endswith(("-minvis", "-memory")):
        vis_run = run.rsplit("-", 1)[0]
        logs.append(f"{R}/logs/train_vis/{vis_run}.log")
        logs.append(f"{R}/logs/track_vis/{run}.{EVAL_SPLIT}.log")
    return logs


def table_inputs(wildcards):
    """The metrics files (and, for tag-based Table II, speed files) of a table's runs."""
    kind = table_kind(wildcards.table)
    runs = table_runs(wildcards.table)
    speed = [speed_file(run) for run in runs] if wildcards.table == "tag_table2" else []
    return [metrics_file(run, kind) for run in runs] + speed


def table_args(name, fallback_log=None):
    """`uvis report table` options for a table (rows, files, logs, provenance)."""
    q = shlex.quote
    kind = table_kind(name)
    args = [f"--row {q(f'{role}={run}')}" for role, run in table_rows(name)]
    for run in table_runs(name):
        args.append(f"--metrics {q(f'{run}={metrics_file(run, kind)}')}")
        args += [f"--log {q(f'{run}={log}')}" for log in run_logs(run)]
        if name == "tag_table2":
            args.append(f"--speed {q(f'{run}={speed_file(run)}')}")
    args.append(f"--dataset {q(DS)} --split {q(EVAL_SPLIT)}")
    args.append(f"--config-name {q(CONFIG_NAME)} --config-digest {CONFIG_DIGEST}")
    if fallback_log:
        args.append(f"--fallback-log {q(str(fallback_log))}")
    return " ".join(args)


# Figures and strips

#: Curve labels of the per-category AP charts, by table row role.
ROLE_LABELS = {
    "supervised": "Supervised (upper bound)",
    "deepsort": "DeepSORT",
    "deepsort_pmf": "DeepSORT (PMF-level pseudo-labels)",
    "uvis": "UVIS",
    "ours": "Tag-based",
}

#: Tables whose runs are compared per category and shown as strips.
HEADLINE_TABLES = ["uvis_table1", "tag_table1"]


def headline_rows():
    return [
        (name, role, run)
        for name in built_tables()
        if name in HEADLINE_TABLES
        for role, run in table_rows(name)
    ]


def per_category_inputs(wildcards):
    return {
        role: metrics_file(run, "ytvis") for role, run in table_rows(wildcards.table)
    }


def per_category_args(wildcards, input):
    return " ".join(
        shlex.quote(f"{ROLE_LABELS[role]}={path}") for role, path in input.items()
    )


def strip_runs():
    return list(dict.fromkeys(run for _, _, run in headline_rows()))


def training_runs():
    """Trainings behind the built tables' runs: VIS runs and tag-based variants."""
    runs = []
    for name in built_tables():
        for run in table_runs(name):
            if run.endswith(("-minvis", "-memory")):
                runs.append(run.rsplit("-", 1)[0])
            elif run.startswith("tagvis-"):
                runs.append(run)
    return list(dict.fromkeys(runs))


def training_done(wildcards):
    """A file that exists once the training has finished (its metrics.csv is not a declared
    output of the training rules)."""
    run = wildcards.train_run
    if run.startswith("tagvis-"):
        return f"{R}/predictions/{run}/{EVAL_SPLIT}/results.json"
    return f"{R}/vis/{run}/model_final.pth"


def training_csv(wildcards):
    run = wildcards.train_run
    if run.startswith("tagvis-"):
        return f"{R}/tagvis/{run[len('tagvis-'):]}/metrics.csv"
    return f"{R}/vis/{run}/metrics.csv"


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
    targets += expand(f"{R}/report/loss/{{run}}.png", run=training_runs())
    targets += expand(
        f"{R}/report/per_category_ap/{{table}}.png",
        table=[t for t in tables if t in HEADLINE_TABLES],
    )
    targets += expand(f"{R}/report/strips/{{run}}.{EVAL_SPLIT}", run=strip_runs())
    return targets


def failed_tables():
    """Tables that this Snakemake run was to build and could not, because a job they depend on
    (their runs' evaluation, tracking, training, or a stage upstream) failed: the table jobs
    of this run's DAG left unfinished with a failed job among their ancestors. A table that was
    not a target of this run, or that only stayed unbuilt because the run was stopped (SIGTERM:
    Snakemake lets running jobs finish and starts no new one), is not listed.

    Reads Snakemake's DAG and scheduler (`workflow.dag`, `workflow.scheduler.failed`); returns
    None where this Snakemake version does not expose them."""
    try:
        dag = workflow.dag
        failed = set(workflow.scheduler.failed)
        pending = [job for job in dag.needrun_jobs() if job.rule.name == "table"]
        names = []
        for job in pending:
            if failed & set(dag.bfs(dag.dependencies, job)):
                names.append(job.wildcards.table)
    except AttributeError:
        return None
    return [name for name in built_tables() if name in names]


def build_tables_after_error(snakemake_logs):
    """After a failed run (the default profile keeps going), build each table of
    :func:`failed_tables` from the metrics that exist, as tables/<name>.partial.{md,csv,html}:
    a failed row cites its newest stage log, or this run's Snakemake log when none of its
    stages started. (`onerror` passes the Snakemake log files as a list.)"""
    tables = failed_tables()
    if tables is None:
        print(
            "onerror: this Snakemake version does not say which jobs failed; "
            "no partial tables written",
            file=sys.stderr,
        )
        return
    if isinstance(snakemake_logs, str | os.PathLike):
        snakemake_logs = [snakemake_logs]
    fallback = os.fspath(snakemake_logs[0]) if snakemake_logs else None
    os.makedirs(f"{R}/logs/report", exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    for name in tables:
        log = f"{R}/logs/report/table_{name}.partial.log"
        command = [sys.executable, "-m", "uvis", "report", "table", name]
        command += shlex.split(table_args(name, fallback))
        command += ["--out", f"{R}/tables/{name}.md", "--partial"]
        with open(log, "w") as out:
            proc = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": pythonpath},
            )
        if proc.returncode != 0:
            print(f"table {name} could not be built, see {log}", file=sys.stderr)
        else:
            with open(log) as f:
                print(f.read().strip(), file=sys.stderr)
