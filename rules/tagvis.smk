# The tag-based bottom-up model (Kini & Shah): trained on ground truth (as the paper) or on the
# UVIS pseudo-labels, once per variant of tagvis.variants (the paper's Table III ablations).
# Each variant's predictions are run "tagvis-<variant>" for eval_ytvis and eval_davis.


wildcard_constraints:
    variant="|".join(config["tagvis"]["variants"]),
    bench="ytvis|davis",


rule pretrain_video_encoder:
    """Embedded default only: the stand-in for the Kinetics-400 weights of the (2+1)D encoder
    (the paper fine-tunes a Kinetics-pretrained R(2+1)D), a classifier of the captioned corpus
    shown as static clips.
    """
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        ckpt=VIDEO_ENCODER_STAND_IN,
        report=f"{R}/models/video_encoder_cls.json",
    log:
        f"{R}/logs/pretrain_video_encoder.log",
    benchmark:
        f"{R}/benchmarks/pretrain_video_encoder.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        corpus=f"{WORLD}/corpora/captioned",
        preset=config["tagvis"]["encoder_pretrain"]["preset"],
        sets=video_encoder_pretrain_sets(),
    shell:
        "python -m uvis pretrain video-encoder {params.corpus:q} {output.ckpt:q} "
        "--preset {params.preset:q} {params.sets} --threads {threads} --no-progress "
        "> {log:q} 2>&1"


rule train_tagvis:
    """Clips of T frames, the spatio-temporal tagging loss + cross-entropy, Adam. An
    interrupted run resumes from its latest checkpoint; checkpoints of another run (changed
    settings or targets) go to superseded/."""
    input:
        unpack(train_tagvis_inputs),
    output:
        f"{R}/tagvis/{{variant}}/model_final.pth",
    log:
        f"{R}/logs/train_tagvis/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/train_tagvis/{{variant}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPUS,
    params:
        targets=lambda wildcards, input: train_vis_targets(TAGVIS_TARGETS_RUN, input),
        preset=config["tagvis"]["train"]["preset"],
        sets=tagvis_train_sets,
        encoder=tagvis_encoder_weights_args,
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m uvis train tagvis --frames {input.frames:q} {params.targets} "
        "--preset {params.preset:q} {params.sets} {params.encoder} --threads {threads} "
        "--restart-stale "
        "--no-progress --out {params.out_dir:q} > {log:q} 2>&1"


rule infer_tagvis:
    """One clip per video, tags clustered into instances, masks interpolated to every frame:
    YouTube-VIS results, DAVIS palette PNGs and frames per second."""
    input:
        ckpt=f"{R}/tagvis/{{variant}}/model_final.pth",
        frames=f"{R}/frames/{{split}}.parquet",
    output:
        results=f"{R}/predictions/tagvis-{{variant}}/{{split}}/results.json",
        davis=directory(f"{R}/predictions/tagvis-{{variant}}/{{split}}/davis"),
        speed=f"{R}/predictions/tagvis-{{variant}}/{{split}}/speed.json",
        tracks=f"{R}/predictions/tagvis-{{variant}}/{{split}}/tracks.parquet",
    log:
        f"{R}/logs/infer_tagvis/{{variant}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/infer_tagvis/{{variant}}.{{split}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS,
    params:
        sets=preset_sets(config["tagvis"]["inference"]),
    shell:
        "python -m uvis infer tagvis --checkpoint {input.ckpt:q} --frames {input.frames:q} "
        "{params.sets} --threads {threads} --no-progress --out {output.results:q} "
        "--davis {output.davis:q} --speed {output.speed:q} --tracks {output.tracks:q} "
        "> {log:q} 2>&1"


rule compare_tagvis:
    """The variants side by side (the paper's Table III): YouTube-VIS AP or DAVIS J&F."""
    input:
        unpack(tagvis_compare_inputs),
    output:
        f"{R}/metrics/tagvis.{{split}}.{{bench}}.md",
    log:
        f"{R}/logs/compare_tagvis/{{split}}.{{bench}}.log",
    benchmark:
        f"{R}/benchmarks/compare_tagvis/{{split}}.{{bench}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        runs=tagvis_compare_args,
        columns=lambda wildcards: (
            "AP,AP50,AP75,AR1,AR10" if wildcards.bench == "ytvis" else "JF,J,F"
        ),
        title=lambda wildcards: (
            f"Tag-based variants on {wildcards.split} ({wildcards.bench})"
        ),
    shell:
        "python -m uvis eval compare {params.runs} --columns {params.columns:q} "
        "--title {params.title:q} --out {output:q} > {log:q} 2>&1"
