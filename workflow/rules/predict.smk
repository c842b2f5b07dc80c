rule predict:
    input:
        model="results/finetune/{ablation}/fold~{fold}/seed~{seed}/model.pt",
        info="results/data/prepare.json",
        samples="results/splits/fold~{fold}/test_samples.txt",
    output:
        predictions="results/finetune/{ablation}/fold~{fold}/seed~{seed}/predictions.tsv",
        # with categorical columns: how much shuffling them moves the predictions
        permutation=(
            ["results/finetune/{ablation}/fold~{fold}/seed~{seed}/permutation.json"]
            if PERMUTATION_CHECK
            else []
        ),
    log:
        "logs/predict/{ablation}/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/predict/{ablation}/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 2
    resources:
        gpu=1,
    params:
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        flags=lambda wildcards: predict_flags(
            ablation_row(wildcards), config["predict"], PERMUTATION_CHECK
        ),
    shell:
        "aam predict --model {input.model} --data-dir {params.data_dir} "
        "--samples {input.samples} --output {output.predictions} {params.flags} > {log} 2>&1"
