rule rf_baseline:
    input:
        info="results/data/prepare.json",
        train="results/splits/fold~{fold}/train_samples.txt",
        val="results/splits/fold~{fold}/val_samples.txt",
        test="results/splits/fold~{fold}/test_samples.txt",
    output:
        predictions="results/rf/fold~{fold}/seed~{seed}/predictions.tsv",
        metrics="results/rf/fold~{fold}/seed~{seed}/metrics.json",
        importances="results/rf/fold~{fold}/seed~{seed}/feature_importance.tsv",
    log:
        "logs/rf_baseline/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/rf_baseline/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 2
    params:
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        target=config["prepare"]["target"],
        # training + validation samples when AAM's refitted head sees them
        train=lambda wildcards, input: baseline_train_lists(input, config),
        flags=baseline_flags(config, "rf"),
    shell:
        "aam rf-baseline --data-dir {params.data_dir} --metadata-column {params.target:q} "
        "--train-samples {params.train} --test-samples {input.test} "
        "--output {output.predictions} --seed {wildcards.seed} --fold {wildcards.fold} "
        "--n-jobs {threads} {params.flags} > {log} 2>&1"


rule linear_baseline:
    input:
        info="results/data/prepare.json",
        train="results/splits/fold~{fold}/train_samples.txt",
        val="results/splits/fold~{fold}/val_samples.txt",
        test="results/splits/fold~{fold}/test_samples.txt",
    output:
        predictions="results/linear/fold~{fold}/seed~{seed}/predictions.tsv",
        metrics="results/linear/fold~{fold}/seed~{seed}/metrics.json",
        importances="results/linear/fold~{fold}/seed~{seed}/feature_importance.tsv",
    log:
        "logs/linear_baseline/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/linear_baseline/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 1
    params:
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        target=config["prepare"]["target"],
        train=lambda wildcards, input: baseline_train_lists(input, config),
        flags=baseline_flags(config, "linear"),
    shell:
        "aam linear-baseline --data-dir {params.data_dir} --metadata-column {params.target:q} "
        "--train-samples {params.train} --test-samples {input.test} "
        "--output {output.predictions} --seed {wildcards.seed} --fold {wildcards.fold} "
        "{params.flags} > {log} 2>&1"
