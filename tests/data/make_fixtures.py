"""Write the tiny test fixtures into tests/data/ (run: python tests/data/make_fixtures.py).

Seeded and self-contained: random ACGT ASVs of 60-150 bp, a random rooted tree, a count table in
BIOM HDF5 / JSON / .qza form, an MD5-ID variant with rep-seqs, metadata (plain and QIIME 2
``#q2:types``) and a precomputed unweighted UniFrac matrix (scikit-bio TSV).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
from biom import Table
from skbio import DistanceMatrix, TreeNode
from skbio.diversity import beta_diversity

HERE = Path(__file__).resolve().parent
SEED = 20240611
N_ASVS = 12
SAMPLE_IDS = ["1234.10", "1234.20", "1234.3", "1234.4", "1234.50",
              "1234.6", "1234.7", "1234.8", "1234.9", "1234.100"]
AMBIGUOUS = 3  # this ASV gets many N bases -> dropped as "ambiguous bases"
NOT_IN_TREE = 7  # this ASV is left out of the tree -> dropped as "not in tree"
SHALLOW = "1234.9"  # 5 reads -> dropped by --min-depth 10
QZA_UUID = "5b9f0c2e-8d1a-4c3e-9f27-1a2b3c4d5e6f"


def make_sequences(rng: np.random.Generator) -> list[str]:
    seqs = []
    for i in range(N_ASVS):
        length = int(rng.integers(60, 151))
        seq = "".join(rng.choice(list("ACGT"), size=length))
        if i == AMBIGUOUS:
            seq = seq[:10] + "N" * 8 + seq[18:]
        seqs.append(seq)
    return seqs


def make_counts(rng: np.random.Generator) -> np.ndarray:
    shape = (len(SAMPLE_IDS), N_ASVS)
    counts = rng.poisson(20, size=shape) * (rng.random(shape) < 0.6)
    counts[SAMPLE_IDS.index(SHALLOW)] = 0
    counts[SAMPLE_IDS.index(SHALLOW), :5] = 1
    return counts.astype(float)  # [samples, asvs]


def random_newick(names: list[str], rng: np.random.Generator) -> str:
    def build(group: list[str]) -> str:
        if len(group) == 1:
            return group[0]
        cut = int(rng.integers(1, len(group)))
        left, right = build(group[:cut]), build(group[cut:])
        return f"({left}:{rng.uniform(0.05, 1):.3f},{right}:{rng.uniform(0.05, 1):.3f})"
    order = list(rng.permutation(names))
    return build(order) + ";\n"


def write_biom_hdf5(path: Path, counts: np.ndarray, asv_ids: list[str]) -> None:
    table = Table(counts.T, observation_ids=asv_ids, sample_ids=SAMPLE_IDS)
    with h5py.File(path, "w") as handle:
        table.to_hdf5(handle, "aam tests/data/make_fixtures.py")


def write_metadata() -> None:
    header = ["ph", "temperature", "body_site", "sex"]
    rows = {sid: [f"{6 + i * 0.1:.1f}", f"{20 + i}", ["gut", "skin", "tongue"][i % 3],
                  ["female", "male"][i % 2]] for i, sid in enumerate(SAMPLE_IDS)}
    rows["1234.6"][0] = ""  # missing target -> dropped as "missing target"
    rows["1234.7"][1] = "warm"  # non-numeric value in the `temperature` column
    rows["1234.4"][3] = "not provided"
    del rows["1234.8"]  # table sample without metadata
    rows["1234.99"] = ["7.0", "25", "gut", "male"]  # metadata sample not in the table
    lines = ["\t".join(r) for r in [[sid] + vals for sid, vals in rows.items()]]
    plain = ["sample_id\t" + "\t".join(header)] + lines
    (HERE / "tiny-metadata.tsv").write_text("\n".join(plain) + "\n")
    q2 = ["#SampleID\t" + "\t".join(header),
          "#q2:types\tnumeric\tnumeric\tcategorical\tcategorical"] + lines
    (HERE / "tiny-metadata-q2.tsv").write_text("\n".join(q2) + "\n")


def write_qza(path: Path, member: str, payload: bytes, semantic_type: str) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{QZA_UUID}/metadata.yaml",
                         f"uuid: {QZA_UUID}\ntype: {semantic_type}\nformat: BIOMV210DirFmt\n")
        archive.writestr(f"{QZA_UUID}/VERSION", "QIIME 2\narchive: 5\nframework: 2023.9.0\n")
        archive.writestr(f"{QZA_UUID}/data/{member}", payload)


def main() -> None:
    rng = np.random.default_rng(SEED)
    seqs = make_sequences(rng)
    hashes = [hashlib.md5(s.encode()).hexdigest() for s in seqs]
    counts = make_counts(rng)
    in_tree = [i for i in range(N_ASVS) if i != NOT_IN_TREE]
    newick = random_newick([seqs[i] for i in in_tree], np.random.default_rng(SEED + 1))
    (HERE / "tiny-tree.nwk").write_text(newick)
    newick_md5 = newick
    for seq, digest in zip(seqs, hashes):
        newick_md5 = newick_md5.replace(seq + ":", digest + ":")
    (HERE / "tiny-tree-md5.nwk").write_text(newick_md5)
    write_biom_hdf5(HERE / "tiny-table.biom", counts, seqs)
    table_json = Table(counts.T, observation_ids=hashes, sample_ids=SAMPLE_IDS)
    (HERE / "tiny-table-md5.json.biom").write_text(table_json.to_json("aam make_fixtures.py"))
    table_seq = Table(counts.T, observation_ids=seqs, sample_ids=SAMPLE_IDS)
    (HERE / "tiny-table.json.biom").write_text(table_seq.to_json("aam make_fixtures.py"))
    fasta = "".join(f">{h}\n{s[:60]}\n{s[60:]}\n" for h, s in zip(hashes, seqs))
    (HERE / "tiny-rep-seqs.fasta").write_text(fasta)
    write_qza(HERE / "tiny-rep-seqs.qza", "dna-sequences.fasta", fasta.encode(),
              "FeatureData[Sequence]")
    write_qza(HERE / "tiny-table.qza", "feature-table.biom",
              (HERE / "tiny-table.biom").read_bytes(), "FeatureTable[Frequency]")
    tree = TreeNode.read(io.StringIO(newick))
    keep = [i for i in in_tree if i != AMBIGUOUS]
    dm = beta_diversity("unweighted_unifrac", counts[:, keep], ids=SAMPLE_IDS,
                        taxa=[seqs[i] for i in keep], tree=tree)
    DistanceMatrix(dm.data, SAMPLE_IDS).write(str(HERE / "tiny-unifrac.tsv"))
    write_metadata()
    (HERE / "tiny-expected.json").write_text(json.dumps(
        {"ambiguous_asv": seqs[AMBIGUOUS], "not_in_tree_asv": seqs[NOT_IN_TREE]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
