rule pretrain:
    input:
        info="results/data/prepare.json",
        # per fold, on that fold's training and validation lists: never its test samples
        train="results/splits/fold~{fold}/train_samples.txt",
        val="results/splits/fold~{fold}/val_samples.txt",
    output:
        encoder="results/pretrain/fold~{fold}/seed~{seed}/encoder.pt",
        metrics="results/pretrain/fold~{fold}/seed~{seed}/metrics.json",
    log:
        "logs/pretrain/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 4
    resources:
        gpu=1,
    params:
        launcher=launcher("pretrain", config["pretrain"]["multi_gpu"]),
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        outdir=lambda wildcards, output: os.path.dirname(output.encoder),
        flags=pretrain_flags(config["model"], config["pretrain"]),
    shell:
        "{params.launcher} --data-dir {params.data_dir} --train-samples {input.train} "
        "--val-samples {input.val} --output-dir {params.outdir} --seed {wildcards.seed} "
        "{params.flags} > {log} 2>&1"
