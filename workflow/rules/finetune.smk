rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model="results/finetune/{ablation}/fold~{fold}/seed~{seed}/model.pt",
        train="results/finetune/{ablation}/fold~{fold}/seed~{seed}/train_samples.txt",
        val="results/finetune/{ablation}/fold~{fold}/seed~{seed}/val_samples.txt",
        val_predictions="results/finetune/{ablation}/fold~{fold}/seed~{seed}/val_predictions.tsv",
        metrics="results/finetune/{ablation}/fold~{fold}/seed~{seed}/metrics.json",
    log:
        "logs/finetune/{ablation}/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{ablation}/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 4
    resources:
        gpu=1,
    params:
        launcher=launcher("train", config["finetune"]["multi_gpu"]),
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        outdir=lambda wildcards, output: os.path.dirname(output.model),
        encoder=lambda wildcards, input: optional_file_flags(
            input, pretrained_encoder="encoder"
        ),
        target=config["prepare"]["target"],
        flags=lambda wildcards: train_flags(ablation_row(wildcards), config),
    shell:
        "{params.launcher} --data-dir {params.data_dir} --metadata-column {params.target:q} "
        "--train-samples {input.train} --val-samples {input.val} {params.encoder} "
        "--output-dir {params.outdir} --seed {wildcards.seed} --fold {wildcards.fold} "
        "{params.flags} > {log} 2>&1"
