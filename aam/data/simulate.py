"""The embedded simulated dataset: a random phylogeny, ASV sequences evolved along it,
Dirichlet-multinomial counts and a target driven by clade abundances, a category and their
interaction. ``aam simulate`` writes it, with a taxonomy naming the signal clades and
background subtrees of the tree; the default pipeline and many tests run on it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from aam.atomic import atomic_path, write_json, write_text
from aam.data.taxonomy import TAXONOMY_FILE, write_taxonomy
from aam.errors import InputError
from aam.settings import setting

log = logging.getLogger(__name__)

BASES = np.array(list("ACGT"))
CLADE_COEFFICIENT_RANGE = (0.8, 1.2)  # |effect| of one SD of clade log abundance on the target
INTERACTION_SPREAD = 0.8  # per-category clade-0 slope offsets run from -spread to +spread
CATEGORY_SPREAD = 1.0  # category main effects run from -spread to +spread
CLADE_SHIFT = 2.0  # log-abundance shift of every clade ASV per SD of the clade latent
BACKGROUND_FRACTION = 8  # background taxa: subtrees of at most n_asvs / 8 tips (and >= 4)


@dataclass(frozen=True)
class SimulationConfig:
    """Sizes and noise levels of the simulated dataset (defaults build in well under a second).

    ``n_subjects = 0`` means one subject per 4 samples. The target is
    ``intercept + sum_c coef_c * z_c + category_effect[k] + interaction[k] * z_0
    + subject_effect + noise`` with ``z_c`` the standardised log relative abundance of clade c.
    """

    n_samples: int = setting(200, "number of samples", flag="--samples")
    n_asvs: int = setting(300, "number of ASVs, i.e. tree tips", flag="--asvs")
    seed: int = setting(0, "random seed; the same seed gives the same files")
    seq_length: int = setting(120, "nucleotides per ASV, 100-150 (like V4 amplicons)")
    n_subjects: int = setting(0, "number of subjects (0 = one per 4 samples)", flag="--subjects")
    n_categories: int = setting(3, "levels of the 'category' column", flag="--categories")
    n_clades: int = setting(2, "signal clades whose abundances drive the target",
                            flag="--clades")
    tree_height: float = setting(0.3, "root-to-tip substitutions per site (Jukes-Cantor)")
    mean_depth: float = setting(5000.0, "median reads per sample (log-normal)")
    concentration: float = setting(4.0, "Dirichlet precision per present ASV (lower = more "
                                   "overdispersed)")
    intercept: float = setting(10.0, "intercept of the target")
    noise_sd: float = setting(0.4, "SD of the target's noise")
    subject_sd: float = setting(0.2, "SD of the per-subject random effect on the target")

    def __post_init__(self) -> None:
        n_subj = f"0 (auto) or 1..n_samples, got {self.n_subjects}"
        checks = [
            (self.n_samples >= 8, f"n_samples (--samples) must be >= 8, got {self.n_samples}"),
            (self.n_asvs >= 16, f"n_asvs (--asvs) must be >= 16, got {self.n_asvs}"),
            (100 <= self.seq_length <= 150,
             f"seq_length (--seq-length) must be 100-150, got {self.seq_length}"),
            (2 <= self.n_categories <= 26,
             f"n_categories (--categories) must be 2-26, got {self.n_categories}"),
            (1 <= self.n_clades <= 5, f"n_clades must be 1-5, got {self.n_clades}"),
            (0 <= self.n_subjects <= self.n_samples, f"n_subjects (--subjects) must be {n_subj}"),
            (self.tree_height > 0 and self.mean_depth >= 100 and self.concentration > 0,
             "tree_height and concentration must be > 0 and mean_depth >= 100"),
            (self.noise_sd >= 0 and self.subject_sd >= 0, "noise_sd and subject_sd must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"Invalid simulation setting: {message}. Change it and rerun.")

    @property
    def subjects(self) -> int:
        """Number of subjects (resolved from ``n_subjects``)."""
        return self.n_subjects or max(2, self.n_samples // 4)


@dataclass
class SimulatedData:
    """One simulated dataset, all aligned to ``sample_ids`` (rows) and ``sequences`` (ASVs)."""

    sample_ids: list[str]
    sequences: list[str]  # ASV sequences; also the tree's tip names
    counts: np.ndarray  # int64 [n_samples, n_asvs]
    metadata: pd.DataFrame  # index sample_id; columns target, category, subject, batch
    newick: str  # rooted binary tree, tips named by sequence
    truth: dict  # ground truth (see ``simulate``)
    taxonomy: Optional[pd.Series] = None  # taxon by sequence (see ``simulated_taxonomy``)


def _coalescent_tree(n: int, height: float, rng: np.random.Generator):
    """Random coalescent tree: children [n-1, 2] of internal nodes n..2n-2, branch length [2n-1].

    Children always have smaller indices than their parent; node 2n-2 is the root.
    """
    children = np.zeros((n - 1, 2), dtype=np.int64)
    node_height = np.zeros(2 * n - 1)
    active, t = list(range(n)), 0.0
    for k, node in zip(range(n, 1, -1), range(n, 2 * n - 1)):
        t += rng.exponential(2.0 / (k * (k - 1)))
        pair = []
        for _ in range(2):
            i = int(rng.integers(len(active)))
            active[i], active[-1] = active[-1], active[i]
            pair.append(active.pop())
        children[node - n] = pair
        node_height[node] = t
        active.append(node)
    node_height *= height / t
    parent = np.full(2 * n - 1, -1)
    parent[children.ravel()] = np.repeat(np.arange(n, 2 * n - 1), 2)
    branch = np.zeros(2 * n - 1)
    branch[:-1] = node_height[parent[:-1]] - node_height[:-1]
    return children, parent, branch


def _evolve_sequences(parent, branch, n_tips, length, rng) -> list[str]:
    """Jukes-Cantor evolution from a random root sequence; duplicates get extra mutations."""
    seqs = np.zeros((len(parent), length), dtype=np.int8)
    seqs[-1] = rng.integers(0, 4, length)
    for node in range(len(parent) - 2, -1, -1):  # parents have larger indices: preorder
        resample = rng.random(length) < 1.0 - np.exp(-4.0 / 3.0 * branch[node])
        seqs[node] = np.where(resample, rng.integers(0, 4, length), seqs[parent[node]])
    tips = ["".join(BASES[row]) for row in seqs[:n_tips]]
    seen: set[str] = set()
    for i, seq in enumerate(tips):
        while seq in seen:
            pos = int(rng.integers(length))
            base = BASES[("ACGT".index(seq[pos]) + int(rng.integers(1, 4))) % 4]
            seq = seq[:pos] + base + seq[pos + 1:]
        seen.add(seq)
        tips[i] = seq
    return tips


def _tip_sets(children: np.ndarray, n: int) -> list[np.ndarray]:
    """Sorted tip indices under each internal node (index node - n)."""
    sets: list[np.ndarray] = []
    for left, right in children:
        parts = [np.array([c]) if c < n else sets[c - n] for c in (left, right)]
        sets.append(np.sort(np.concatenate(parts)))
    return sets


def _choose_clades(children, n, n_clades, rng) -> list[np.ndarray]:
    """Disjoint subtrees of about 4-10% of the tips each (relaxed for tiny trees)."""
    sets = _tip_sets(children, n)
    for low, high in ((max(3, n // 25), max(4, n // 10)), (2, n // 3)):
        chosen: list[np.ndarray] = []
        used = np.zeros(n, dtype=bool)
        for idx in rng.permutation(len(sets)):
            tips = sets[idx]
            if low <= len(tips) <= high and not used[tips].any():
                chosen.append(tips)
                used[tips] = True
            if len(chosen) == n_clades:
                return chosen
    raise InputError(f"Cannot place {n_clades} disjoint clades in a tree of {n} ASVs; "
                     "raise --asvs or lower n_clades.")


def simulated_taxonomy(children: np.ndarray, clades: list[np.ndarray],
                       sequences: list[str]) -> pd.Series:
    """Taxon of each ASV from the tree: the signal clades, and background subtrees.

    A signal clade's ASVs get ``k__Simulated; p__signal; f__clade-<c>`` (the names of
    ``truth.json``). The other ASVs are split into the largest subtrees that hold no signal ASV
    and at most ``max(4, n_asvs // BACKGROUND_FRACTION)`` tips, numbered in tree order:
    ``k__Simulated; p__background; f__background-<k>``. No random draws: the other outputs of a
    seed stay the same.

    Returns
    -------
    Series
        Taxon by sequence, in table order.
    """
    n = len(sequences)
    taxa = [""] * n
    for c, tips in enumerate(clades):
        for tip in tips:
            taxa[tip] = f"k__Simulated; p__signal; f__clade-{c}"
    tip_sets = _tip_sets(children, n)
    signal = np.zeros(n, dtype=bool)
    signal[np.concatenate(clades)] = True
    limit = max(4, n // BACKGROUND_FRACTION)
    groups: list[np.ndarray] = []
    stack = [2 * n - 2]  # the root; children are visited left before right
    while stack:
        node = stack.pop()
        tips = np.array([node]) if node < n else tip_sets[node - n]
        if not signal[tips].any() and len(tips) <= limit:
            groups.append(tips)
        elif node >= n:
            stack.extend(reversed(children[node - n].tolist()))
    width = len(str(len(groups)))
    for k, tips in enumerate(groups):
        for tip in tips:
            taxa[tip] = f"k__Simulated; p__background; f__background-{k + 1:0{width}d}"
    return pd.Series(taxa, index=pd.Index(sequences, name="Feature ID"), name="Taxon")


def _newick(children, branch, tips: list[str]) -> str:
    n = len(tips)
    text = list(tips) + [""] * (n - 1)
    for node in range(n, 2 * n - 1):
        left, right = children[node - n]
        text[node] = f"({text[left]}:{branch[left]:.6g},{text[right]}:{branch[right]:.6g})"
    return text[-1] + ";"


def _design(cfg: SimulationConfig, rng) -> dict:
    """Subjects, their categories, per-sample batch and sequencing depth."""
    n_subj = cfg.subjects
    subject_of = rng.permutation(np.arange(cfg.n_samples) % n_subj)
    subject_category = rng.permutation(np.arange(n_subj) % cfg.n_categories)
    depth = np.maximum(500, rng.lognormal(np.log(cfg.mean_depth), 0.4, cfg.n_samples))
    return {"subject": subject_of, "category": subject_category[subject_of],
            "batch": rng.integers(0, 2, cfg.n_samples), "depth": depth.astype(np.int64)}


def _abundances(cfg, design, clades, rng) -> tuple[np.ndarray, dict]:
    """Dirichlet-multinomial counts [n_samples, n_asvs] and the parameters that made them."""
    n, m, n_subj = cfg.n_samples, cfg.n_asvs, cfg.subjects
    subj = design["subject"]
    base = rng.normal(0.0, 1.5, m)  # log abundance profile
    prevalence = np.clip(rng.beta(1.3, 1.8, m), 0.03, 0.95)
    logit_prev = np.log(prevalence / (1 - prevalence))
    subject_presence = rng.normal(0.0, 1.5, (n_subj, m))
    present = rng.random((n, m)) < 1 / (1 + np.exp(-(logit_prev + subject_presence[subj])))
    log_w = base + rng.normal(0.0, 1.0, (n_subj, m))[subj] + rng.normal(0.0, 0.3, (n, m))
    log_w += rng.normal(0.0, 0.5, (cfg.n_categories, m))[design["category"]]
    clade_latent = (0.6 * rng.normal(size=(n_subj, len(clades)))[subj]
                    + 0.8 * rng.normal(size=(n, len(clades))))  # [n, n_clades]
    for c, tips in enumerate(clades):
        log_w[:, tips] += CLADE_SHIFT * clade_latent[:, [c]]
        present[:, tips] |= rng.random((n, len(tips))) < 0.8  # clades are common members
    present[np.arange(n), np.argmax(np.where(present, log_w, -np.inf), 1)] = True
    w = np.where(present, np.exp(log_w - log_w.max(1, keepdims=True)), 0.0)
    alpha = cfg.concentration * w / w.sum(1, keepdims=True) * present.sum(1, keepdims=True)
    gamma = np.where(present, rng.gamma(np.where(present, alpha, 1.0)), 0.0)
    probs = gamma / gamma.sum(1, keepdims=True)
    counts = np.stack([rng.multinomial(d, p) for d, p in zip(design["depth"], probs)])
    for j in np.flatnonzero(counts.sum(0) == 0):  # every ASV observed at least once
        counts[np.argmax(probs[:, j] + w[:, j]), j] += 1
    params = {"base_log_abundance": base, "prevalence": prevalence,
              "concentration": cfg.concentration, "clade_shift_per_latent_sd": CLADE_SHIFT,
              "depth_lognormal": {"median": cfg.mean_depth, "sigma": 0.4, "min": 500}}
    return counts, params


def _target(cfg, design, counts, clades, rng) -> tuple[np.ndarray, dict]:
    """Target [n_samples] and its coefficients, from standardised clade log abundances."""
    depth = counts.sum(1)
    log_abund = np.stack([np.log((counts[:, t].sum(1) + 0.5) / depth) for t in clades], 1)
    mean, sd = log_abund.mean(0), log_abund.std(0) + 1e-9
    z = (log_abund - mean) / sd  # [n, n_clades]
    coef = rng.uniform(*CLADE_COEFFICIENT_RANGE, len(clades)) * rng.choice([-1.0, 1.0], len(clades))
    k = cfg.n_categories
    cat_effect = rng.permutation(np.linspace(-CATEGORY_SPREAD, CATEGORY_SPREAD, k))
    interaction = rng.permutation(np.linspace(-INTERACTION_SPREAD, INTERACTION_SPREAD, k))
    subject_effect = rng.normal(0.0, cfg.subject_sd, cfg.subjects)
    cat = design["category"]
    signal = cfg.intercept + z @ coef + cat_effect[cat] + interaction[cat] * z[:, 0]
    target = signal + subject_effect[design["subject"]] + rng.normal(0.0, cfg.noise_sd, len(cat))
    truth = {"coefficients": coef, "category_effects": cat_effect, "interaction": interaction,
             "subject_effects": subject_effect, "log_abundance_mean": mean,
             "log_abundance_sd": sd, "signal": signal, "clade_log_abundance": log_abund}
    return target, truth


def simulate(cfg: SimulationConfig) -> SimulatedData:
    """Simulate one dataset; the same config (seed included) gives identical output.

    Parameters
    ----------
    cfg : SimulationConfig
        Sizes, seed and noise levels.

    Returns
    -------
    SimulatedData
        ``counts`` int64 [n_samples, n_asvs]; ``metadata`` with ``target`` (float),
        ``category`` (``site-a``...), ``subject`` (grouping column; category is constant within a
        subject) and ``batch`` (``run-1``/``run-2``, a nuisance without effect on the target);
        ``truth`` holds the clades, coefficients and per-sample noise-free target;
        ``taxonomy`` names each ASV's signal clade or background subtree.

    Raises
    ------
    InputError
        If the tree is too small to hold ``n_clades`` disjoint clades.
    """
    rng = np.random.default_rng(cfg.seed)
    children, parent, branch = _coalescent_tree(cfg.n_asvs, cfg.tree_height, rng)
    sequences = _evolve_sequences(parent, branch, cfg.n_asvs, cfg.seq_length, rng)
    clades = _choose_clades(children, cfg.n_asvs, cfg.n_clades, rng)
    design = _design(cfg, rng)
    counts, dm_params = _abundances(cfg, design, clades, rng)
    target, effects = _target(cfg, design, counts, clades, rng)
    width = len(str(cfg.n_samples))
    sample_ids = [f"S{i + 1:0{width}d}" for i in range(cfg.n_samples)]
    categories = [f"site-{chr(ord('a') + i)}" for i in range(cfg.n_categories)]
    subjects = [f"subject-{s + 1:0{len(str(cfg.subjects))}d}" for s in design["subject"]]
    metadata = pd.DataFrame(
        {"target": np.round(target, 6), "category": [categories[c] for c in design["category"]],
         "subject": subjects, "batch": [f"run-{b + 1}" for b in design["batch"]]},
        index=pd.Index(sample_ids, name="sample_id"))
    truth = _truth(cfg, sample_ids, categories, clades, effects, dm_params)
    return SimulatedData(sample_ids, sequences, counts, metadata,
                         _newick(children, branch, sequences), truth,
                         simulated_taxonomy(children, clades, sequences))


def _truth(cfg, sample_ids, categories, clades, effects, dm_params) -> dict:
    """Plain-JSON ground truth."""
    def per(values, keys):
        return {key: round(float(v), 6) for key, v in zip(keys, values)}

    clade_info = [
        {"name": f"clade-{c}", "asv_index": tips.tolist(), "n_asvs": len(tips),
         "coefficient": round(float(effects["coefficients"][c]), 6),
         "log_abundance_mean": round(float(effects["log_abundance_mean"][c]), 6),
         "log_abundance_sd": round(float(effects["log_abundance_sd"][c]), 6)}
        for c, tips in enumerate(clades)]
    return {
        "config": asdict(cfg),
        "sizes": {"n_samples": cfg.n_samples, "n_asvs": cfg.n_asvs, "n_subjects": cfg.subjects},
        "target_formula": ("intercept + sum_c coefficient_c * z_c + category_effects[category] "
                           "+ interaction[category] * z_0 + subject_effects[subject] + noise; "
                           "z_c = (log((clade_reads + 0.5) / depth) - mean_c) / sd_c"),
        "intercept": cfg.intercept, "noise_sd": cfg.noise_sd, "subject_sd": cfg.subject_sd,
        "clades": clade_info,
        "interaction_clade": "clade-0",
        "category_effects": per(effects["category_effects"], categories),
        "interaction": per(effects["interaction"], categories),
        "subject_effects": per(effects["subject_effects"],
                               [f"subject-{s + 1:0{len(str(cfg.subjects))}d}"
                                for s in range(cfg.subjects)]),
        "noise_free_target": per(effects["signal"], sample_ids),
        "dirichlet_multinomial": {
            k: (np.round(v, 6).tolist() if isinstance(v, np.ndarray) else v)
            for k, v in dm_params.items()},
    }


def write_simulation(data: SimulatedData, output_dir: str | Path) -> dict[str, Path]:
    """Write ``table.biom`` (BIOM 2.1 HDF5, ASV IDs = sequences), ``metadata.tsv``, ``tree.nwk``,
    ``truth.json`` and ``taxonomy.tsv`` (QIIME 2 ``Feature ID``/``Taxon``, keyed by the table's
    IDs) into ``output_dir``, each atomically; returns the paths by name.
    """
    import biom
    import h5py

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("table.biom", "metadata.tsv", "tree.nwk", "truth.json")}
    table = biom.Table(data.counts.T.astype(float), observation_ids=data.sequences,
                       sample_ids=data.sample_ids)
    with atomic_path(paths["table.biom"]) as tmp, h5py.File(tmp, "w") as handle:
        table.to_hdf5(handle, "aam simulate")
    write_text(paths["metadata.tsv"], data.metadata.to_csv(sep="\t", lineterminator="\n"))
    write_text(paths["tree.nwk"], data.newick + "\n")
    write_json(paths["truth.json"], data.truth)
    if data.taxonomy is not None:
        paths[TAXONOMY_FILE] = out / TAXONOMY_FILE
        write_taxonomy(paths[TAXONOMY_FILE], data.taxonomy)
    log.info("simulated %d samples x %d ASVs into %s", len(data.sample_ids),
             len(data.sequences), out)
    return paths
