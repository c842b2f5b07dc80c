rule simulate:
    output:
        table="resources/sim/table.biom",
        metadata="resources/sim/metadata.tsv",
        tree="resources/sim/tree.nwk",
        taxonomy="resources/sim/taxonomy.tsv",
        truth="resources/sim/truth.json",
    log:
        "logs/simulate/simulate.log",
    localrule: True
    conda:
        AAM_ENV
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.table),
        flags=cli_flags(config["simulate"]),
    shell:
        "aam simulate --output-dir {params.outdir} {params.flags} > {log} 2>&1"


rule prepare:
    input:
        unpack(lambda wildcards: input_files(config["input"])),
    output:
        table="results/data/table.biom",
        metadata="results/data/metadata.tsv",
        info="results/data/prepare.json",
    log:
        "logs/prepare/prepare.log",
    benchmark:
        "results/benchmarks/prepare/prepare.tsv"
    conda:
        AAM_ENV
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.info),
        files=lambda wildcards, input: optional_file_flags(input),
        flags=prepare_flags(config["prepare"]),
    shell:
        "aam prepare --table {input.table:q} --metadata {input.metadata:q} {params.files} "
        "--output-dir {params.outdir} {params.flags} > {log} 2>&1"


rule make_splits:
    input:
        metadata="results/data/metadata.tsv",
    output:
        train=expand("results/splits/fold~{fold}/train_samples.txt", fold=FOLDS),
        val=expand("results/splits/fold~{fold}/val_samples.txt", fold=FOLDS),
        test=expand("results/splits/fold~{fold}/test_samples.txt", fold=FOLDS),
    log:
        "logs/make_splits/make_splits.log",
    localrule: True
    conda:
        AAM_ENV
    params:
        outdir=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.train[0])
        ),
        flags=split_flags(config["split"]),
    shell:
        "aam split --metadata {input.metadata} --output-dir {params.outdir} {params.flags} "
        "> {log} 2>&1"
