# The embedded default dataset: a synthetic video world in YouTube-VIS, DAVIS and .mp4 formats.


rule synth_world:
    output:
        manifest=f"{WORLD}/manifest.json",
        train=f"{WORLD}/ytvis/train.json",
        valid=f"{WORLD}/ytvis/valid.json",
        vocabulary=f"{WORLD}/videos/vocabulary.txt",
    log:
        f"{R}/logs/synth_world.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        out=lambda wildcards, output: os.path.dirname(output.manifest),
        preset=config["synth"]["preset"],
        seed=config["synth"]["seed"],
        overrides=" ".join(
            f"--set {k}={json.dumps(v)!r}"
            for k, v in config["synth"]["overrides"].items()
        ),
    shell:
        "python -m uvis synth {params.out} --preset {params.preset} --seed {params.seed} "
        "{params.overrides} > {log} 2>&1"
