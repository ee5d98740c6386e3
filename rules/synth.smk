# The embedded default dataset: a synthetic video world in YouTube-VIS, DAVIS and .mp4 formats.


rule synth_world:
    output:
        manifest=f"{WORLD}/manifest.json",
        train=f"{WORLD}/ytvis/train.json",
        valid=f"{WORLD}/ytvis/valid.json",
        vocabulary=f"{WORLD}/videos/vocabulary.txt",
    log:
        f"{R}/logs/synth_world.log",
    benchmark:
        f"{R}/benchmarks/synth_world.tsv"
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
        overrides=preset_sets(config["synth"]["overrides"]),
    shell:
        "python -m uvis synth {params.out:q} --preset {params.preset:q} --seed {params.seed:q} "
        "{params.overrides} > {log:q} 2>&1"
