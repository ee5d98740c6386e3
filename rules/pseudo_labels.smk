# Pseudo-labels (UVIS §3.1): foundation-model stand-ins, class-agnostic proposals, CLIP labels,
# prototype memory filtering, and their quality against ground truth. Sharded by video.


rule pretrain_ssl:
    """Embedded default only: the self-supervised ViT stand-in, trained with DINO."""
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=f"{R}/models/ssl_vit.pth",
        report=f"{R}/models/ssl_vit.json",
    log:
        f"{R}/logs/pretrain_ssl.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=GPUS,
    params:
        corpus=f"{WORLD}/corpora/unlabeled",
        preset=config["ssl"]["pretrain"]["preset"],
        sets=ssl_pretrain_sets(),
    shell:
        "python -m uvis pretrain ssl {params.corpus} {output.ckpt} --preset {params.preset} "
        "{params.sets} --threads {threads} --no-progress > {log} 2>&1"


rule pretrain_clip:
    """Embedded default only: the CLIP stand-in, trained contrastively with open_clip."""
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=f"{R}/models/clip.pt",
        report=f"{R}/models/clip.json",
    log:
        f"{R}/logs/pretrain_clip.log",
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
    shell:
        "python -m uvis pretrain clip {params.corpus} {output.ckpt} --preset {params.preset} "
        "--eval-world {params.world} {params.sets} --threads {threads} --no-progress "
        "> {log} 2>&1"


rule maskcut:
    input:
        frames=f"{R}/frames/{{split}}.parquet",
        ssl=ssl_weights_input,
    output:
        f"{R}/pseudo/maskcut/{{split}}/shard-{{shard}}.parquet",
    log:
        f"{R}/logs/maskcut/{{split}}.{{shard}}.log",
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
        input_short=(
            f"--input-short {config['proposals']['maskcut']['input_short']}"
            if config["proposals"]["maskcut"].get("input_short")
            else ""
        ),
        min_area_frac=config["proposals"]["maskcut"].get("min_area_frac", 0.01),
        num_shards=NUM_SHARDS,
    shell:
        "python -m uvis proposals maskcut --frames {input.frames} --shard {wildcards.shard} "
        "--num-shards {params.num_shards} --arch {params.arch} --arch-kwargs '{params.arch_kwargs}' "
        "--weights {params.weights} --tau {params.tau} --num-masks {params.num_masks} "
        "--refine {params.refine} {params.input_short} --min-area-frac {params.min_area_frac} "
        "--threads {threads} --out {output} > {log} 2>&1"


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
        "python -m uvis proposals train-detector --frames {input.frames} --masks {input.masks} "
        "--preset {params.preset} {params.sets} --threads {threads} --out {output.ckpt} "
        "> {log} 2>&1"


if config["proposals"]["backend"] == "maskcut":

    rule detect:
        input:
            frames=f"{R}/frames/{{split}}.parquet",
            detector=f"{R}/models/objectness.pth",
        output:
            f"{R}/pseudo/proposals/{{split}}/shard-{{shard}}.parquet",
        log:
            f"{R}/logs/detect/{{split}}.{{shard}}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
            gpu=GPUS,
        params:
            num_shards=NUM_SHARDS,
        shell:
            "python -m uvis proposals detect --frames {input.frames} --shard {wildcards.shard} "
            "--num-shards {params.num_shards} --detector {input.detector} --threads {threads} "
            "--out {output} > {log} 2>&1"

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
            "python -m uvis proposals cutler --frames {input.frames} --shard {wildcards.shard} "
            "--num-shards {params.num_shards} --weights {params.weights} --threads {threads} "
            "--out {output} > {log} 2>&1"


rule clip_scores:
    input:
        frames=f"{R}/frames/{{split}}.parquet",
        proposals=f"{R}/pseudo/proposals/{{split}}/shard-{{shard}}.parquet",
        clip=clip_weights_input,
    output:
        f"{R}/pseudo/clip/{{split}}/shard-{{shard}}.parquet",
    log:
        f"{R}/logs/clip_scores/{{split}}.{{shard}}.log",
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
        weights=clip_weights,
        templates=" ".join(f"--template {t!r}" for t in config["clip"]["templates"]),
        context=config["clip"]["context"],
        mask_background=(
            f"--mask-background {config['clip']['mask_background']}"
            if config["clip"]["mask_background"]
            else ""
        ),
        batch_size=config["clip"]["batch_size"],
        resize_mode=(
            f"--resize-mode {config['clip']['resize_mode']}"
            if config["clip"]["resize_mode"]
            else ""
        ),
    shell:
        "python -m uvis pseudo clip-scores --frames {input.frames} --proposals {input.proposals} "
        "{params.vocabulary} --model {params.model} --weights {params.weights} "
        "{params.templates} --context {params.context} {params.mask_background} "
        "--batch-size {params.batch_size} {params.resize_mode} --threads {threads} "
        "--out {output} > {log} 2>&1"


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
    shell:
        "python -m uvis pseudo filter --proposals {input.proposals} --clip {input.clip} "
        "--objectness-threshold {params.objectness} --clip-threshold {params.clip} "
        "--tau {params.tau} --k-ratio {params.k_ratio} --k-min {params.k_min} "
        "--k-max {params.k_max} --out {output} > {log} 2>&1"


rule pseudo_quality:
    """Pseudo-labels against ground truth, per filter level (splits with annotations)."""
    input:
        labels=f"{R}/pseudo/labels/{{split}}.parquet",
        gt=ytvis_json,
    output:
        f"{R}/pseudo/quality/{{split}}.md",
    log:
        f"{R}/logs/pseudo_quality/{{split}}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        images=ytvis_images,
        stride=config["frames"]["stride"],
    shell:
        "python -m uvis pseudo quality {input.labels} --gt-json {input.gt} "
        "--images {params.images} --stride {params.stride} "
        "--title 'Pseudo-label quality: {wildcards.split} split' --out {output} > {log} 2>&1"
