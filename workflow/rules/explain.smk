rule explain:
    input:
        # the simulator's truth: explain scores how well each model ranks the signal ASVs
        unpack(lambda wildcards: {} if config["input"]["table"] else SIMULATED_TRUTH),
        # the linear baseline's |coefficients|: its rank agreement with AAM's attributions
        unpack(
            lambda wildcards: (
                {
                    "linear": "results/linear/fold~{fold}/seed~{seed}/feature_importance.tsv".format(
                        **wildcards
                    )
                }
                if config["linear"]["enabled"]
                else {}
            )
        ),
        model="results/finetune/{ablation}/fold~{fold}/seed~{seed}/model.pt",
        info="results/data/prepare.json",
        samples="results/splits/fold~{fold}/test_samples.txt",
        rf="results/rf/fold~{fold}/seed~{seed}/feature_importance.tsv",
    output:
        table="results/finetune/{ablation}/fold~{fold}/seed~{seed}/explain/attributions.tsv",
        summary="results/finetune/{ablation}/fold~{fold}/seed~{seed}/explain/explain.json",
        figure=report(
            "results/finetune/{ablation}/fold~{fold}/seed~{seed}/explain/attributions.svg",
            caption="../report/explain.rst",
            category="Explanations",
            labels={"model": "{ablation}", "fold": "{fold}", "seed": "{seed}"},
        ),
    log:
        "logs/explain/{ablation}/fold~{fold}/seed~{seed}.log",
    benchmark:
        "results/benchmarks/explain/{ablation}/fold~{fold}/seed~{seed}.tsv"
    conda:
        AAM_ENV
    threads: 2
    resources:
        gpu=1,
    params:
        data_dir=lambda wildcards, input: os.path.dirname(input.info),
        outdir=lambda wildcards, output: os.path.dirname(output.table),
        flags=cli_flags(config["explain"]),
        references=lambda wildcards, input: optional_file_flags(
            input, truth="truth", linear_importances="linear"
        ),
    shell:
        "aam explain --model {input.model} --data-dir {params.data_dir} "
        "--samples {input.samples} --rf-importances {input.rf} --output-dir {params.outdir} "
        "{params.references} {params.flags} > {log} 2>&1"
