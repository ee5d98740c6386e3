# Evaluation with the official metrics: YouTube-VIS AP/AR and DAVIS unsupervised J&F.


rule eval_ytvis:
    input:
        gt=ytvis_json,
        results=f"{R}/predictions/{{run}}/{{split}}/results.json",
    output:
        f"{R}/metrics/{{run}}.{{split}}.ytvis.json",
    log:
        f"{R}/logs/eval_ytvis/{{run}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/eval_ytvis/{{run}}.{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m uvis eval ytvis {input.gt:q} {input.results:q} --protocol both "
        "--out {output:q} > {log:q} 2>&1"


rule eval_davis:
    input:
        pred=f"{R}/predictions/{{run}}/{{split}}/davis",
    output:
        f"{R}/metrics/{{run}}.{{split}}.davis.json",
    log:
        f"{R}/logs/eval_davis/{{run}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/eval_davis/{{run}}.{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        gt=f"{davis_root()}/Annotations_unsupervised/480p",
        imageset=davis_imageset,
    shell:
        "python -m uvis eval davis {params.gt:q} {input.pred:q} --imageset {params.imageset:q} "
        "--out {output:q} > {log:q} 2>&1"


rule submission:
    """Splits without public ground truth: results checked against the split's videos and
    zipped as the YouTube-VIS/OVIS evaluation servers take them."""
    input:
        videos=ytvis_json,
        results=f"{R}/predictions/{{run}}/{{split}}/results.json",
    output:
        f"{R}/submission/{{run}}.{{split}}.zip",
    log:
        f"{R}/logs/submission/{{run}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/submission/{{run}}.{{split}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m uvis eval submission {input.videos:q} {input.results:q} --out {output:q} "
        "> {log:q} 2>&1"
