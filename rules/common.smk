# Shared set-up: config validation first, then paths and input functions.

import json
import os
import shlex
import sys
from argparse import Namespace
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

#: This checkout's library, which the rules run (see the shell prefix below) and the config
#: checks use.
SRC = os.path.join(workflow.basedir, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from uvis.workflow.runs import (
    DEEPSORT_RUN_PATTERN,
    VIS_TRAINING_PATTERN,
    Run,
    VisTraining,
    track_vis_options,
)


def _schema_error(exc):
    """The one line of uvis.workflow.checks.schema_error_line for Snakemake's validation error
    (which carries jsonschema's error as its context)."""
    import jsonschema
    from uvis.workflow.checks import schema_error_line

    cause = exc.__context__
    if isinstance(cause, jsonschema.ValidationError):
        return f"Error validating config file: {schema_error_line(cause)}"
    return str(exc).splitlines()[0]


try:
    validate(config, schema="../workflow/schemas/config.schema.yaml")
except WorkflowError as exc:
    raise WorkflowError(_schema_error(exc)) from None

DS = config["dataset"]["name"]
FORMAT = config["dataset"]["format"]
EVAL_SPLIT = config["dataset"]["eval_split"]
R = f"{config['results']}/{DS}"
WORLD = f"{R}/world"

# Rules call the library as `python -m uvis` with this checkout's src/ first on the path, so
# jobs run the code of this checkout whether uvis is pip-installed or the job runs in a conda
# env built from envs/*.yaml (which holds the dependencies only). Jobs inherit the variable,
# locally and on a cluster.
# (The prefix is formatted by Snakemake like a shell command, hence the doubled braces.)
# SRC is quoted for the shell (a checkout path may hold spaces) and its braces doubled.
_SRC_SHELL = shlex.quote(SRC).replace("{", "{{").replace("}", "}}")
shell.prefix(f"export PYTHONPATH={_SRC_SHELL}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

#: Shell quoting of the values that rules join into one option string (single paths and values
#: are quoted in the rules themselves with Snakemake's `{...:q}`).
q = shlex.quote


#: dataset.holdout (format ytvis): two splits cut from an annotated one by video, `fit` and
#: `holdout`, for local metrics where the official evaluation split has no public annotations.
HOLDOUT = config["dataset"].get("holdout")
HOLDOUT_SPLITS = ("fit", "holdout")


def splits():
    """The dataset's splits: train/valid for the synthetic world, else those in config."""
    if FORMAT == "synth":
        return ["train", "valid"]
    return list(config["dataset"]["splits"]) + (list(HOLDOUT_SPLITS) if HOLDOUT else [])


def split_cfg(split):
    if HOLDOUT and split in HOLDOUT_SPLITS:
        return split_cfg(HOLDOUT["split"])
    try:
        return config["dataset"]["splits"][split]
    except KeyError:
        raise ValueError(
            f"dataset.splits has no split '{split}' (config has: {', '.join(splits())})"
        )


def ytvis_json(wildcards):
    """YouTube-VIS JSON of a split (generated for the synthetic world and held-out splits)."""
    if FORMAT == "synth":
        return f"{WORLD}/ytvis/{wildcards.split}.json"
    if HOLDOUT and wildcards.split in HOLDOUT_SPLITS:
        return f"{R}/splits/{wildcards.split}.json"
    return split_cfg(wildcards.split)["json"]


def ytvis_images(wildcards):
    """JPEGImages folder of a split."""
    if FORMAT == "synth":
        return f"{WORLD}/ytvis/{wildcards.split}/JPEGImages"
    return split_cfg(wildcards.split)["images"]


def davis_root():
    """The DAVIS folder: generated for the synthetic world, dataset.root for format davis
    (other formats have none; their DAVIS rules are never part of the DAG)."""
    return f"{WORLD}/davis" if FORMAT == "synth" else config["dataset"].get("root", "")


def davis_imageset(wildcards):
    """The DAVIS ImageSets file listing a split's sequences."""
    name = "2019/val" if FORMAT == "synth" else split_cfg(wildcards.split)["imageset"]
    return f"{davis_root()}/ImageSets/{name}.txt"


def has_ytvis_gt(split=EVAL_SPLIT):
    """Whether the split has YouTube-VIS-format ground truth (`annotated: false` in config for
    the YouTube-VIS/OVIS validation splits, whose metrics come from the evaluation server).
    """
    if FORMAT == "synth" or (HOLDOUT and split in HOLDOUT_SPLITS):
        return True
    return FORMAT == "ytvis" and split_cfg(split).get("annotated", True)


def has_davis_gt():
    return FORMAT in ("synth", "davis")


def all_targets():
    """Targets of `rule all` for the configured dataset."""
    targets = expand(f"{R}/frames/{{split}}.parquet", split=splits())
    if FORMAT == "synth":
        # The synthetic world also ships .mp4 files: extracting them exercises the video path.
        targets.append(f"{R}/frames_from_video/{EVAL_SPLIT}.parquet")
    if has_ytvis_gt():
        targets.append(f"{R}/metrics/baseline.{EVAL_SPLIT}.ytvis.json")
    if has_davis_gt():
        targets.append(f"{R}/metrics/baseline.{EVAL_SPLIT}.davis.json")
    targets += pseudo_label_targets()
    if config["vis"]["enabled"]:
        targets += vis_targets()
    if config["tagvis"]["enabled"]:
        targets += tagvis_targets()
    return targets + report_targets()


# Frames


def _frame_index_inputs(wildcards):
    if FORMAT in ("synth", "ytvis"):
        return {"json": ytvis_json(wildcards)}
    return {}


def _video_dir(split):
    if FORMAT == "synth":
        return f"{WORLD}/videos/{split}"
    return split_cfg(split)["dir"]


def _vocabulary():
    if FORMAT == "synth":
        return f"{WORLD}/videos/vocabulary.txt"
    vocab = config["dataset"]["vocabulary"]
    return vocab if isinstance(vocab, str) else ",".join(vocab)


def _extract_args(split, out_root):
    resize = config["frames"]["resize_short"]
    return (
        f"data extract {q(_video_dir(split))} {q(out_root)} --vocabulary {q(_vocabulary())}"
        + (f" --resize-short {resize}" if resize else "")
    )


def _frame_index_args(wildcards):
    """The `uvis` subcommand (without the common options) that indexes one split."""
    if FORMAT in ("synth", "ytvis"):
        return (
            f"data index --format ytvis --json {q(ytvis_json(wildcards))} "
            f"--images {q(ytvis_images(wildcards))}"
        )
    if FORMAT == "davis":
        imageset = split_cfg(wildcards.split)["imageset"]
        return f"data index --format davis --root {q(davis_root())} --imageset {q(imageset)}"
    return _extract_args(wildcards.split, f"{R}/frames/{wildcards.split}")


# Baseline


def _baseline_opts():
    b = config["baseline"]
    return (
        f"--seed {b['seed']} --jitter-px {b['jitter_px']} --drop-rate {b['drop_rate']} "
        f"--class-flip-rate {b['class_flip_rate']} --false-positives {b['false_positives']}"
    )


# Pseudo-labels


GPUS = config["compute"]["gpus_per_job"]
NUM_SHARDS = config["pseudo_labels"]["shards"]
# The pseudo-label chain (DINO, MaskCut, detector, detection, CLIP scoring, filtering) is the
# longest path of the DAG: every UVIS training waits for it. Its jobs go before the independent
# ones (supervised and tag-based trainings), which fill the other cores meanwhile.
PSEUDO_LABEL_PRIORITY = 10
SHARDS = list(range(NUM_SHARDS))


def preset_sets(overrides):
    """`--set key=value` options for a preset block's overrides (values as JSON)."""
    return " ".join(f"--set {q(f'{k}={json.dumps(v)}')}" for k, v in overrides.items())


def ssl_pretrain_sets():
    """The stand-in ViT is trained with the architecture the proposal stage will load."""
    arch = {"arch": config["ssl"]["arch"], "arch_kwargs": config["ssl"]["arch_kwargs"]}
    return preset_sets({**arch, **config["ssl"]["pretrain"]["overrides"]})


def clip_pretrain_sets():
    """The stand-in CLIP is trained as the model the clip_scores stage will load, and its
    quality report names the classes with the prompts that stage uses."""
    return preset_sets(
        {
            "model": config["clip"]["model"],
            "eval_templates": config["clip"]["templates"],
            "eval_flip": config["clip"]["flip"],
            **config["clip"]["pretrain"]["overrides"],
        }
    )


def weights_path(value, stand_in):
    """A weights setting as the jobs see it: `stand_in` (a rule's output) for "embedded",
    else the setting itself (a file, a known name, or None)."""
    return stand_in if value == "embedded" else value


def weights_inputs(value, stand_in):
    """The weights as a job's input files. The stand-in checkpoint is another job's output
    and a real file given by path is an input too; a known name (resolved by the job) or
    none is not."""
    w = weights_path(value, stand_in)
    return [w] if w and (value == "embedded" or os.path.isfile(w)) else []


SSL_STAND_IN = f"{R}/models/ssl_vit.pth"
CLIP_STAND_IN = f"{R}/models/clip.pt"
BACKBONE_STAND_IN = f"{R}/models/backbone_cls.pth"
VIDEO_ENCODER_STAND_IN = f"{R}/models/video_encoder_cls.pth"


def ssl_weights(wildcards=None):
    return weights_path(config["ssl"]["weights"], SSL_STAND_IN)


def ssl_weights_input(wildcards):
    return weights_inputs(config["ssl"]["weights"], SSL_STAND_IN)


def clip_member_checkpoints():
    """The stand-in's ensemble members after the first (`clip.members` - 1 files)."""
    return [
        f"{R}/models/clip-member{m}.pt" for m in range(1, config["clip"]["members"])
    ]


def clip_weights_list():
    """Every CLIP checkpoint the clip_scores jobs load: the setting, or the stand-in's
    members."""
    if config["clip"]["weights"] == "embedded":
        return [CLIP_STAND_IN, *clip_member_checkpoints()]
    return [config["clip"]["weights"]]


def clip_weights(wildcards=None):
    """The clip_scores options naming the checkpoints (several: an ensemble)."""
    return " ".join(f"--weights {q(w)}" for w in clip_weights_list())


def clip_weights_input(wildcards):
    if config["clip"]["weights"] == "embedded":
        return clip_weights_list()
    return weights_inputs(config["clip"]["weights"], CLIP_STAND_IN)


def cutler_weights_input(wildcards):
    """CutLER's checkpoint given as a file is an input; a known name is resolved by the job."""
    w = config["proposals"]["cutler_weights"]
    return [w] if os.path.isfile(w) else []


def vocabulary_args(wildcards):
    """Where the class names (and ids) come from: the YouTube-VIS JSON, or the vocabulary."""
    if FORMAT in ("synth", "ytvis"):
        return f"--categories-json {q(ytvis_json(wildcards))}"
    vocab = config["dataset"].get("vocabulary") or ["object"]
    return f"--vocabulary {q(vocab if isinstance(vocab, str) else ','.join(vocab))}"


def pseudo_label_targets():
    out = []
    for split in config["pseudo_labels"]["splits"]:
        out.append(f"{R}/pseudo/labels/{split}.parquet")
        if has_ytvis_gt(split):
            out.append(f"{R}/pseudo/quality/{split}.md")
    return out


# VIS model and tracking

TRAIN_SPLIT = config["dataset"]["train_split"]


def vis_runs():
    """Trained models: UVIS on pseudo-labels, plus the supervised upper bound where GT exists."""
    return ["uvis"] + (
        ["supervised"]
        if config["vis"]["supervised"] and has_ytvis_gt(TRAIN_SPLIT)
        else []
    )


def backbone_weights():
    """ImageNet-classification weights of the backbone: the stand-in, a file, a name or none."""
    return weights_path(config["vis"]["backbone_weights"], BACKBONE_STAND_IN)


#: VIS trainings (uvis.workflow.runs.VisTraining): `uvis` (the configured selection),
#: `supervised`, and the ablation tables' `uvis_<level>` and `uvis_tau<tau>`.
VIS_RUN_PATTERN = VIS_TRAINING_PATTERN


def pseudo_selection(vis_run):
    """(level, tau or None) of the pseudo-labels a UVIS run trains on."""
    return VisTraining.parse(vis_run).selection(config["vis"]["pseudo_level"])


def train_vis_inputs(wildcards):
    inputs = {"frames": f"{R}/frames/{TRAIN_SPLIT}.parquet"}
    if wildcards.vis_run != "supervised":
        inputs["labels"] = f"{R}/pseudo/labels/{TRAIN_SPLIT}.parquet"
    else:
        inputs["gt"] = ytvis_json(Namespace(split=TRAIN_SPLIT))
    for w in weights_inputs(config["vis"]["backbone_weights"], BACKBONE_STAND_IN):
        inputs["backbone"] = w
    if validation_videos():
        inputs["val_frames"] = f"{R}/frames/{EVAL_SPLIT}.parquet"
        inputs["val_gt"] = ytvis_json(Namespace(split=EVAL_SPLIT))
    return inputs


def validation_videos():
    """Videos of the periodic validation (vis.validation), 0 where the eval split has no
    ground truth to validate against."""
    return config["vis"]["validation"]["videos"] if has_ytvis_gt() else 0


def validation_args(wildcards, input):
    if not validation_videos():
        return ""
    period = config["vis"]["validation"]["period"]
    return (
        f"--val-frames {q(input.val_frames)} --val-gt-json {q(input.val_gt)} "
        f"--val-videos {validation_videos()} --set eval_period={period}"
    )


def train_vis_targets(wildcards, input):
    """What the run trains on: a pseudo-label selection (and its vocabulary), or the GT."""
    if wildcards.vis_run != "supervised":
        level, tau = pseudo_selection(wildcards.vis_run)
        vocab = vocabulary_args(Namespace(split=TRAIN_SPLIT))
        tau_arg = "" if tau is None else f" --tau {tau}"
        return f"--labels {q(input.labels)} --level {level}{tau_arg} {vocab}"
    images = ytvis_images(Namespace(split=TRAIN_SPLIT))
    return f"--gt-json {q(input.gt)} --images {q(images)}"


def backbone_weights_args(wildcards):
    w = backbone_weights()
    return f"--backbone-weights {q(w)}" if w else ""


def tracking_lambda(wildcards):
    """memory: the configured lambda of UVIS eq. 2; minvis: 1, plain frame-to-frame matching."""
    return config["tracking"]["lam"] if wildcards.tracker == "memory" else 1.0


def track_vis_opts():
    """`uvis track vis` options other than --lam (uvis.workflow.runs.track_vis_options), quoted."""
    return shlex.join(track_vis_options(config))


def deepsort_opts():
    return preset_sets(config["deepsort"]["overrides"])


def deepsort_runs():
    """`deepsort` (UVIS Table 2's A1 at deepsort.level) and one run per other extra level."""
    level = config["deepsort"]["level"]
    extra = [lvl for lvl in config["deepsort"].get("extra_levels", []) if lvl != level]
    return ["deepsort"] + [f"deepsort_{lvl}" for lvl in extra]


def deepsort_level(ds_run):
    """The pseudo-label level a DeepSORT run tracks (`deepsort`: deepsort.level)."""
    return Run.parse(ds_run).level or config["deepsort"]["level"]


def deepsort_label(ds_run):
    level = deepsort_level(ds_run)
    what = {"none": "unfiltered", "objectness": "objectness-filtered"}.get(
        level, f"{level.upper()}-filtered"
    )
    return f"DeepSORT on {what} pseudo-labels"


#: Rows of the side-by-side table: (label, run folder under predictions/).
def _vis_compare_runs():
    rows = [(deepsort_label(run), run) for run in deepsort_runs()]
    for run in vis_runs():
        name = "UVIS" if run == "uvis" else "Supervised (upper bound)"
        rows.append((f"{name}, MinVIS matching", f"{run}-minvis"))
        rows.append((f"{name}, tracking memory", f"{run}-memory"))
    return rows


def vis_metrics(wildcards):
    return {
        folder: f"{R}/metrics/{folder}.{wildcards.split}.ytvis.json"
        for _, folder in _vis_compare_runs()
    }


def vis_compare_args(wildcards, input):
    return " ".join(
        q(f"{label}={input[folder]}") for label, folder in _vis_compare_runs()
    )


def vis_targets():
    if has_ytvis_gt():
        return [f"{R}/metrics/vis.{EVAL_SPLIT}.md"]
    if FORMAT == "ytvis":
        # No public ground truth: the zipped results the evaluation server takes.
        runs = [f"{run}-memory" for run in vis_runs()] + deepsort_runs()
        return [f"{R}/submission/{run}.{EVAL_SPLIT}.zip" for run in runs]
    return [
        f"{R}/predictions/{run}-memory/{EVAL_SPLIT}/results.json" for run in vis_runs()
    ]


# Tag-based bottom-up model (Kini & Shah)


def tagvis_variants():
    """The variants the workflow runs: tagvis.run_variants, or every one of tagvis.variants."""
    known = config["tagvis"]["variants"]
    names = config["tagvis"]["run_variants"] or list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"tagvis.run_variants names {unknown}, not in tagvis.variants ({', '.join(known)})"
        )
    if config["tagvis"]["targets"] == "gt" and not has_ytvis_gt(TRAIN_SPLIT):
        raise ValueError(
            f"tagvis.targets is gt but the train split '{TRAIN_SPLIT}' has no YouTube-VIS "
            "ground truth to train on "
            "(set tagvis.targets: pseudo, or tagvis.enabled: false)"
        )
    return names


def tagvis_targets():
    """Metrics of every tag-based variant on EVAL_SPLIT (YouTube-VIS AP, DAVIS J&F) and their
    side-by-side tables; the results alone where the dataset has no ground truth."""
    out = []
    for bench, has_gt in (("ytvis", has_ytvis_gt()), ("davis", has_davis_gt())):
        if has_gt:
            out += [
                f"{R}/metrics/tagvis-{v}.{EVAL_SPLIT}.{bench}.json"
                for v in tagvis_variants()
            ]
            out.append(f"{R}/metrics/tagvis.{EVAL_SPLIT}.{bench}.md")
    if not out:
        out = [
            f"{R}/predictions/tagvis-{v}/{EVAL_SPLIT}/results.json"
            for v in tagvis_variants()
        ]
    return out


#: train_vis's run whose targets the tag-based model trains on: its pseudo-label run (uvis) or
#: its ground-truth run (supervised).
TAGVIS_TARGETS_RUN = Namespace(
    vis_run="uvis" if config["tagvis"]["targets"] == "pseudo" else "supervised"
)


def tagvis_encoder_weights():
    """Video-pretrained encoder weights: the stand-in, a file, a name, or none (the preset's)."""
    return weights_path(config["tagvis"]["encoder_weights"], VIDEO_ENCODER_STAND_IN)


def video_encoder_pretrain_sets():
    """The stand-in video encoder is trained with the tag-based model's widths and depths."""
    from uvis.workflow.checks import tagvis_encoder_arch

    arch = tagvis_encoder_arch(config)
    return preset_sets({**arch, **config["tagvis"]["encoder_pretrain"]["overrides"]})


def train_tagvis_inputs(wildcards):
    inputs = {"frames": f"{R}/frames/{TRAIN_SPLIT}.parquet"}
    if TAGVIS_TARGETS_RUN.vis_run == "uvis":
        inputs["labels"] = f"{R}/pseudo/labels/{TRAIN_SPLIT}.parquet"
    else:
        inputs["gt"] = ytvis_json(Namespace(split=TRAIN_SPLIT))
    encoder = config["tagvis"]["encoder_weights"]
    for w in weights_inputs(encoder, VIDEO_ENCODER_STAND_IN):
        inputs["encoder"] = w
    return inputs


def tagvis_train_sets(wildcards):
    """`--set` options: tagvis.train.overrides, then the variant's own settings."""
    return preset_sets(
        {
            **config["tagvis"]["train"]["overrides"],
            **config["tagvis"]["variants"][wildcards.variant],
        }
    )


def tagvis_encoder_weights_args(wildcards):
    """`--encoder-weights` when tagvis.encoder_weights is set (else the train preset's)."""
    w = tagvis_encoder_weights()
    return f"--encoder-weights {q(w)}" if w else ""


def tagvis_compare_inputs(wildcards):
    return {
        v: f"{R}/metrics/tagvis-{v}.{wildcards.split}.{wildcards.bench}.json"
        for v in tagvis_variants()
    }


def tagvis_compare_args(wildcards, input):
    return " ".join(q(f"{v}={input[v]}") for v in tagvis_variants())


# Config checks that need the library, at DAG build: every preset/overrides block built into its
# settings dataclass, every weight resolved (uvis.workflow.checks), the tag-based variants to
# run. A bad value stops here with one line naming the config key, not hours later in its job.


def _check_config():
    from uvis.errors import UvisError
    from uvis.workflow.checks import check_config

    try:
        if config["tagvis"]["enabled"]:
            tagvis_variants()
        check_config(
            config,
            src=Path(SRC) / "uvis",
            cache_dir=Path(".snakemake") / "uvis-settings-checked",
            warn=lambda text: print(f"uvis: {text}", file=sys.stderr),
        )
    except (UvisError, ValueError) as exc:
        raise WorkflowError(str(exc)) from None


_check_config()
