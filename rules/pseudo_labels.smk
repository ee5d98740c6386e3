# Pseudo-labels (UVIS §3.1): foundation-model stand-ins, class-agnostic proposals, CLIP labels,
# prototype memory filtering, and their quality against ground truth. Sharded by video.


rule pretrain_ssl:
    """Embedded default only: the self-supervised ViT stand-in, trained with DINO."""
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=SSL_STAND_IN,
        report=f"{R}/models/ssl_vit.json",
    log:
        f"{R}/logs/pretrain_ssl.log",
    benchmark:
        f"{R}/benchmarks/pretrain_ssl.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPUS,
    params:
        corpus=f"{WORLD}/corpora/unlabeled",
        preset=config["ssl"]["pretrain"]["preset"],
        sets=ssl_pretrain_sets(),
    shell:
        "python -m uvis pretrain ssl {params.corpus:q} {output.ckpt:q} "
        "--preset {params.preset:q} {params.sets} --threads {threads} --no-progress "
        "> {log:q} 2>&1"


rule pretrain_clip:
    """Embedded default only: the CLIP stand-in, trained contrastively with open_clip; with
    clip.members > 1, that many trainings (seeds seed, seed + 1, ...), reported and scored as
    one ensemble."""
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=CLIP_STAND_IN,
        members=clip_member_checkpoints(),
        report=f"{R}/models/clip.json",
    log:
        f"{R}/logs/pretrain_clip.log",
    benchmark:
        f"{R}/benchmarks/pretrain_clip.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=GPUS,
    params:
        corpus=f"{WORLD}/corpora/captioned",
        world=lambda wildcards, input: os.path.dirname(input.manifest),
        preset=config["clip"]["pretrain"]["preset"],
        sets=clip_pretrain_sets(),
        member_outs=" ".join(f"--member-out {q(m)}" for m in clip_member_checkpoints()),
    shell:
        "python -m uvis pretrain clip {params.corpus:q} {output.ckpt:q} {params.member_outs} "
        "--preset {params.preset:q} --eval-world {params.world:q} {params.sets} "
        "--threads {threads} --no-progress > {log:q} 2>&1"


rule maskcut:
    input:
        frames=f"{R}/frames/{{split}}.parquet",
        ssl=ssl_weights_input,
    output:
        f"{R}/pseudo/maskcut/{{split}}/shard-{{shard}}.parquet",
    log:
        f"{R}/logs/maskcut/{{split}}.{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/maskcut/{{split}}.{{shard}}.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPUS,
    params:
        weights=ssl_weights,
        arch=config["ssl"]["arch"],
        arch_kwargs=json.dumps(config["ssl"]["arch_kwargs"]),
        tau=config["proposals"]["maskcut"]["tau"],
        num_masks=config["proposals"]["maskcut"]["num_masks"],
        refine=config["proposals"]["maskcut"]["refine"],
        input_short=config["proposals"]["maskcut"].get("input_short") or 0,
        min_area_frac=config["proposals"]["maskcut"].get("min_area_frac", 0.01),
        max_area_frac=config["proposals"]["maskcut"].get("max_area_frac", 1.0),
        split_area_frac=config["proposals"]["maskcut"].get("split_area_frac", 1.0),
        # Every N-th frame of the train split (the detector generalises to the rest); the eval
        # split's MaskCut masks, where made, keep every frame.
        frame_stride=lambda wildcards: (
            config["proposals"]["maskcut"].get("frame_stride", 1)
            if wildcards.split == TRAIN_SPLIT
            else 1
        ),
        num_shards=NUM_SHARDS,
    shell:
        "python -m uvis proposals maskcut --frames {input.frames:q} "
        "--shard {wildcards.shard:q} --num-shards {params.num_shards} --arch {params.arch:q} "
        "--arch-kwargs {params.arch_kwargs:q} --weights {params.weights:q} "
        "--tau {params.tau:q} --num-masks {params.num_masks:q} --refine {params.refine:q} "
        "--input-short {params.input_short:q} --min-area-frac {params.min_area_frac:q} "
        "--max-area-frac {params.max_area_frac:q} --split-area-frac {params.split_area_frac:q} "
        "--frame-stride {params.frame_stride:q} --threads {threads} --out {output:q} "
        "> {log:q} 2>&1"


rule train_detector:
    """CutLER's learn step: a class-agnostic detector trained on the train split's MaskCut masks."""
    input:
        frames=f"{R}/frames/train.parquet",
        masks=expand(f"{R}/pseudo/maskcut/train/shard-{{shard}}.parquet", shard=SHARDS),
    output:
        ckpt=f"{R}/models/objectness.pth",
        report=f"{R}/models/objectness.json",
    log:
        f"{R}/logs/train_detector.log",
    benchmark:
        f"{R}/benchmarks/train_detector.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS,
    params:
        preset=config["proposals"]["detector"]["preset"],
        sets=preset_sets(config["proposals"]["detector"]["overrides"]),
    shell:
        "python -m uvis proposals train-detector --frames {input.frames:q} "
        "--masks {input.masks:q} --preset {params.preset:q} {params.sets} --threads {threads} "
        "--out {output.ckpt:q} > {log:q} 2>&1"


if config["proposals"]["backend"] == "maskcut":

    rule detect:
        input:
            frames=f"{R}/frames/{{split}}.parquet",
            detector=f"{R}/models/objectness.pth",
        output:
            f"{R}/pseudo/proposals/{{split}}/shard-{{shard}}.parquet",
        log:
            f"{R}/logs/detect/{{split}}.{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/detect/{{split}}.{{shard}}.tsv"
        priority: PSEUDO_LABEL_PRIORITY
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
            gpu=GPUS,
        params:
            num_shards=NUM_SHARDS,
            refine=config["proposals"]["refine_detections"]["method"],
            refine_min_score=config["proposals"]["refine_detections"]["min_score"],
            refine_sigma_rgb=config["proposals"]["refine_detections"]["sigma_rgb"],
            drop_groups=("--drop-groups" if config["proposals"]["drop_groups"] else ""),
            sets=preset_sets(config["proposals"]["detection"]),
        shell:
            "python -m uvis proposals detect --frames {input.frames:q} "
            "--shard {wildcards.shard:q} --num-shards {params.num_shards} "
            "--detector {input.detector:q} --refine {params.refine:q} "
            "--refine-min-score {params.refine_min_score:q} "
            "--refine-sigma-rgb {params.refine_sigma_rgb:q} {params.drop_groups} {params.sets} "
            "--threads {threads} --out {output:q} > {log:q} 2>&1"

else:

    rule cutler_proposals:
        """CutLER's released checkpoint through detectron2 (envs/detectron2.yaml)."""
        input:
            frames=f"{R}/frames/{{split}}.parquet",
            weights=cutler_weights_input,
        output:
            f"{R}/pseudo/proposals/{{split}}/shard-{{shard}}.parquet",
        log:
            f"{R}/logs/cutler/{{split}}.{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/cutler/{{split}}.{{shard}}.tsv"
        priority: PSEUDO_LABEL_PRIORITY
        conda:
            "../envs/detectron2.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=240,
            gpu=GPUS,
        params:
            weights=config["proposals"]["cutler_weights"],
            num_shards=NUM_SHARDS,
        shell:
            "python -m uvis proposals cutler --frames {input.frames:q} "
            "--shard {wildcards.shard:q} --num-shards {params.num_shards} "
            "--weights {params.weights:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule clip_scores:
    input:
        frames=f"{R}/frames/{{split}}.parquet",
        proposals=f"{R}/pseudo/proposals/{{split}}/shard-{{shard}}.parquet",
        clip=clip_weights_input,
    output:
        f"{R}/pseudo/clip/{{split}}/shard-{{shard}}.parquet",
    log:
        f"{R}/logs/clip_scores/{{split}}.{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/clip_scores/{{split}}.{{shard}}.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPUS,
    params:
        vocabulary=vocabulary_args,
        model=config["clip"]["model"],
        clip_weights=clip_weights,
        templates=" ".join(f"--template {q(t)}" for t in config["clip"]["templates"]),
        context=config["clip"]["context"],
        mask_background=(
            f"--mask-background {q(config['clip']['mask_background'])}"
            if config["clip"]["mask_background"]
            else ""
        ),
        flip="--flip" if config["clip"]["flip"] else "",
        batch_size=config["clip"]["batch_size"],
        resize_mode=(
            f"--resize-mode {q(config['clip']['resize_mode'])}"
            if config["clip"]["resize_mode"]
            else ""
        ),
    shell:
        "python -m uvis pseudo clip-scores --frames {input.frames:q} "
        "--proposals {input.proposals:q} {params.vocabulary} --model {params.model:q} "
        "{params.clip_weights} {params.templates} --context {params.context:q} "
        "{params.mask_background} {params.flip} --batch-size {params.batch_size:q} "
        "{params.resize_mode} "
        "--threads {threads} --out {output:q} > {log:q} 2>&1"


rule filter:
    """Thresholds and prototype memory filtering; every proposal kept with its flags."""
    input:
        proposals=expand(
            f"{R}/pseudo/proposals/{{{{split}}}}/shard-{{shard}}.parquet", shard=SHARDS
        ),
        clip=expand(
            f"{R}/pseudo/clip/{{{{split}}}}/shard-{{shard}}.parquet", shard=SHARDS
        ),
    output:
        f"{R}/pseudo/labels/{{split}}.parquet",
    log:
        f"{R}/logs/filter/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/filter/{{split}}.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        objectness=config["filter"]["objectness_threshold"],
        clip=config["filter"]["clip_threshold"],
        tau=config["filter"]["tau"],
        k_ratio=config["filter"]["k_ratio"],
        k_min=config["filter"]["k_min"],
        k_max=config["filter"]["k_max"],
        prototype_fraction=config["filter"]["prototype_fraction"],
    shell:
        "python -m uvis pseudo filter --proposals {input.proposals:q} --clip {input.clip:q} "
        "--objectness-threshold {params.objectness:q} --clip-threshold {params.clip:q} "
        "--tau {params.tau:q} --k-ratio {params.k_ratio:q} --k-min {params.k_min:q} "
        "--k-max {params.k_max:q} --prototype-fraction {params.prototype_fraction:q} "
        "--out {output:q} > {log:q} 2>&1"


rule pseudo_quality:
    """Pseudo-labels against ground truth, per filter level (splits with annotations)."""
    input:
        labels=f"{R}/pseudo/labels/{{split}}.parquet",
        gt=ytvis_json,
    output:
        f"{R}/pseudo/quality/{{split}}.md",
    log:
        f"{R}/logs/pseudo_quality/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/pseudo_quality/{{split}}.tsv"
    conda:
        # The filter levels are read with uvis.prototypes.select, whose module needs faiss.
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        images=ytvis_images,
        stride=config["frames"]["stride"],
        title=lambda wildcards: f"Pseudo-label quality: {wildcards.split} split",
    shell:
        "python -m uvis pseudo quality {input.labels:q} --gt-json {input.gt:q} "
        "--images {params.images:q} --stride {params.stride:q} --title {params.title:q} "
        "--out {output:q} > {log:q} 2>&1"
