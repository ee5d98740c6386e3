# Frame index: one Parquet per split listing every frame, whatever the dataset format.
# JPEG datasets (YouTube-VIS, OVIS, DAVIS, the synthetic world) are indexed in place;
# video files are decoded into JPEG folders first.


rule frame_index:
    """Every later stage reads the index, so it goes first (seconds, on one core)."""
    input:
        unpack(_frame_index_inputs),
    output:
        f"{R}/frames/{{split}}.parquet",
    log:
        f"{R}/logs/frame_index/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/frame_index/{{split}}.tsv"
    priority: PSEUDO_LABEL_PRIORITY
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        args=_frame_index_args,
        stride=config["frames"]["stride"],
        verify=(
            f"--verify {q(config['frames']['verify'])}" if FORMAT != "videos" else ""
        ),
        on_error=config["frames"]["on_error"],
    shell:
        "python -m uvis {params.args} --stride {params.stride:q} {params.verify} "
        "--on-error {params.on_error:q} --out {output:q} > {log:q} 2>&1"


rule frames_from_video:
    """Synthetic world only: decode its .mp4 copies, to exercise the video-file path."""
    input:
        manifest=f"{WORLD}/manifest.json",
    output:
        f"{R}/frames_from_video/{{split}}.parquet",
    log:
        f"{R}/logs/frames_from_video/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/frames_from_video/{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        args=lambda wc: _extract_args(wc.split, f"{R}/frames_from_video/{wc.split}"),
        stride=config["frames"]["stride"],
        on_error=config["frames"]["on_error"],
    shell:
        "python -m uvis {params.args} --stride {params.stride:q} --on-error {params.on_error:q} "
        "--out {output:q} > {log:q} 2>&1"


rule holdout_split:
    """dataset.holdout: the `fit` and `holdout` splits, cut by video from an annotated split."""
    input:
        lambda wildcards: split_cfg(HOLDOUT["split"])["json"],
    output:
        fit=f"{R}/splits/fit.json",
        holdout=f"{R}/splits/holdout.json",
    log:
        f"{R}/logs/holdout_split.log",
    benchmark:
        f"{R}/benchmarks/holdout_split.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        fraction=HOLDOUT["fraction"] if HOLDOUT else None,
        seed=HOLDOUT["seed"] if HOLDOUT else None,
    shell:
        "python -m uvis data holdout {input:q} --fraction {params.fraction:q} "
        "--seed {params.seed:q} --fit-out {output.fit:q} --holdout-out {output.holdout:q} "
        "> {log:q} 2>&1"
