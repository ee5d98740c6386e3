# The VIS model (UVIS §3.2-3.3): a MinVIS-style Mask2Former trained per frame on pseudo-labels
# (or on ground truth: the upper bound), query tracking with and without the tracking memory,
# the DeepSORT baseline, and their side-by-side evaluation.


wildcard_constraints:
    vis_run=VIS_RUN_PATTERN,
    split="[^./]+",
    tracker="minvis|memory",
    ds_run=DEEPSORT_RUN_PATTERN,


rule pretrain_backbone:
    """Embedded default only: the stand-in for ImageNet classification weights of the backbone
    (UVIS initialises its ResNet from them), a classifier trained on the captioned corpus.
    """
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=BACKBONE_STAND_IN,
        report=f"{R}/models/backbone_cls.json",
    log:
        f"{R}/logs/pretrain_backbone.log",
    benchmark:
        f"{R}/benchmarks/pretrain_backbone.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        corpus=f"{WORLD}/corpora/captioned",
        preset=config["vis"]["backbone_pretrain"]["preset"],
        sets=preset_sets(config["vis"]["backbone_pretrain"]["overrides"]),
    shell:
        "python -m uvis pretrain backbone {params.corpus:q} {output.ckpt:q} "
        "--preset {params.preset:q} {params.sets} --threads {threads} --no-progress "
        "> {log:q} 2>&1"


rule train_vis:
    """Image-level training as MinVIS. An interrupted run resumes from its latest checkpoint;
    checkpoints of another run (changed settings or pseudo-labels) go to superseded/."""
    input:
        unpack(train_vis_inputs),
    output:
        f"{R}/vis/{{vis_run}}/model_final.pth",
    log:
        f"{R}/logs/train_vis/{{vis_run}}.log",
    benchmark:
        f"{R}/benchmarks/train_vis/{{vis_run}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPUS,
    params:
        targets=train_vis_targets,
        model=config["vis"]["model"],
        backbone=backbone_weights_args,
        preset=config["vis"]["train"]["preset"],
        sets=preset_sets(config["vis"]["train"]["overrides"]),
        validation=validation_args,
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m uvis train vis --frames {input.frames:q} {params.targets} "
        "--model {params.model:q} {params.backbone} --preset {params.preset:q} {params.sets} "
        "{params.validation} --processes {resources.gpu:q} --threads {threads} --restart-stale "
        "--out {params.out_dir:q} > {log:q} 2>&1"


rule track_vis:
    """Per-frame queries of the model, tracked by Hungarian matching (UVIS eqs. 2-3)."""
    input:
        ckpt=f"{R}/vis/{{vis_run}}/model_final.pth",
        frames=f"{R}/frames/{{split}}.parquet",
    output:
        results=f"{R}/predictions/{{vis_run}}-{{tracker}}/{{split}}/results.json",
        tracks=f"{R}/predictions/{{vis_run}}-{{tracker}}/{{split}}/tracks.parquet",
    log:
        f"{R}/logs/track_vis/{{vis_run}}-{{tracker}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/track_vis/{{vis_run}}-{{tracker}}.{{split}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS,
    params:
        lam=tracking_lambda,
        opts=track_vis_opts(),
    shell:
        "python -m uvis track vis --checkpoint {input.ckpt:q} --frames {input.frames:q} "
        "--lam {params.lam:q} {params.opts} --threads {threads} "
        "--out {output.results:q} --tracks {output.tracks:q} "
        "> {log:q} 2>&1"


rule deepsort:
    """The training-free baseline: pseudo-labels + CLIP embeddings tracked by DeepSORT (run
    `deepsort` at deepsort.level, runs `deepsort_<level>` at deepsort.extra_levels)."""
    input:
        labels=f"{R}/pseudo/labels/{{split}}.parquet",
        clip=expand(
            f"{R}/pseudo/clip/{{{{split}}}}/shard-{{shard}}.parquet", shard=SHARDS
        ),
        frames=f"{R}/frames/{{split}}.parquet",
        categories=ytvis_json,
    output:
        results=f"{R}/predictions/{{ds_run}}/{{split}}/results.json",
        tracks=f"{R}/predictions/{{ds_run}}/{{split}}/tracks.parquet",
    log:
        f"{R}/logs/{{ds_run}}/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/{{ds_run}}/{{split}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        level=lambda wildcards: deepsort_level(wildcards.ds_run),
        opts=deepsort_opts(),
    shell:
        "python -m uvis track deepsort --labels {input.labels:q} --clip-scores {input.clip:q} "
        "--frames {input.frames:q} --categories-json {input.categories:q} "
        "--level {params.level:q} {params.opts} --out {output.results:q} "
        "--tracks {output.tracks:q} > {log:q} 2>&1"


rule compare_vis:
    """DeepSORT, UVIS without/with tracking memory and the upper bound, side by side."""
    input:
        unpack(vis_metrics),
    output:
        f"{R}/metrics/vis.{{split}}.md",
    log:
        f"{R}/logs/compare_vis/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/compare_vis/{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        runs=vis_compare_args,
        title=lambda wildcards: f"VIS on {wildcards.split}",
    shell:
        "python -m uvis eval compare {params.runs} --title {params.title:q} "
        "--out {output:q} > {log:q} 2>&1"
