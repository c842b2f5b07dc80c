rule compare_models:
    input:
        predictions=run_outputs("predictions.tsv"),
        metrics=run_outputs("metrics.json"),
        explanations=explain_outputs(),
        permutations=permutation_outputs(),
    output:
        run_list="results/report/run_list.txt",
        table=report(
            "results/report/comparison.tsv",
            caption="../report/comparison.rst",
            category="Comparison",
            labels={"file": "comparison table"},
        ),
        summary=report(
            "results/report/summary.md",
            caption="../report/summary.rst",
            category="Comparison",
            labels=verdict_label,
        ),
        # aam compare decides which figures exist (task, metrics with values): a folder
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.svg"],
            caption="../report/figure.rst",
            category="Comparison",
            subcategory="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        "logs/compare_models/compare_models.log",
    localrule: True
    conda:
        AAM_ENV
    params:
        results_dir=lambda wildcards, input: results_root(input.predictions),
        outdir=lambda wildcards, output: os.path.dirname(output.table),
        flags=cli_flags(config["compare"]),
        labels=label_lines(),
    # The run list names exactly this job's runs, so results of runs the config no longer
    # defines are not compared; printf is a shell builtin, so no argument-length limit applies.
    shell:
        "printf '%s\\n' {input.predictions:q} > {output.run_list}.tmp && "
        "mv {output.run_list}.tmp {output.run_list} && "
        "printf '%s\\n' {params.labels} > {params.outdir}/labels.tsv && "
        "aam compare --results-dir {params.results_dir} --run-list {output.run_list} "
        "--labels {params.outdir}/labels.tsv --output-dir {params.outdir} "
        "--figures-dir {output.figures} {params.flags} > {log} 2>&1"
