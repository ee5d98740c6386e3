# A trivial baseline (ground truth with noise), so evaluation runs end to end before any model.


rule baseline_ytvis:
    input:
        gt=ytvis_json,
    output:
        f"{R}/predictions/baseline/{{split}}/results.json",
    log:
        f"{R}/logs/baseline_ytvis/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_ytvis/{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        opts=_baseline_opts(),
    shell:
        "python -m uvis baseline ytvis {input.gt:q} {output:q} {params.opts} > {log:q} 2>&1"


rule baseline_davis:
    input:
        manifest=f"{WORLD}/manifest.json" if FORMAT == "synth" else [],
    output:
        directory(f"{R}/predictions/baseline/{{split}}/davis"),
    log:
        f"{R}/logs/baseline_davis/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/baseline_davis/{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        gt=f"{davis_root()}/Annotations_unsupervised/480p",
        opts=_baseline_opts(),
    shell:
        "python -m uvis baseline davis {params.gt:q} {output:q} {params.opts} > {log:q} 2>&1"
