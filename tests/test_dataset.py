"""SampleDataset + collate: ASV sampling, padding, batch-wide dedup, distance blocks, loaders."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from aam.config import DataConfig
from aam.data.dataset import SampleDataset, asv_dedup_fraction, make_loader
from aam.data.prepared import PreparedData
from aam.data.tokens import tokenize
from aam.errors import InputError

SEQUENCES = ["ACGTAC", "GGGA", "TTACGTAA", "CCA", "ACG", "TTTT", "GACT", "AAAAC"]
# rows = samples, columns = ASVs in table order; zeros are absent ASVs
COUNTS = np.array([
    [5, 0, 9, 1, 9, 2, 0, 7],   # S0: 6 ASVs, counts tie 9/9
    [0, 3, 0, 0, 0, 0, 4, 0],   # S1: 2 ASVs
    [1, 1, 1, 1, 1, 1, 1, 1],   # S2: all 8
    [0, 0, 0, 0, 2, 0, 0, 0],   # S3: 1 ASV
    [4, 0, 0, 8, 0, 0, 0, 1],   # S4: 3 ASVs
])
IDS = ["S0", "S1", "S2", "S3", "S4"]


def _data(with_distances=True):
    rng = np.random.default_rng(0)
    dist = rng.random((5, 5)).astype(np.float32)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0)
    meta = pd.DataFrame({"x": list("abcde")}, index=pd.Index(IDS, name="sample_id"))
    return PreparedData(IDS, SEQUENCES, sp.csr_matrix(COUNTS.astype(float)), meta,
                        dist if with_distances else None, {})


def _dataset(sampling="first", limit=3, ids=IDS, **kwargs):
    cfg = DataConfig(token_limit=limit, asv_sampling=sampling)
    return SampleDataset(_data(), ids, cfg, **kwargs)


def test_first_keeps_table_order_up_to_token_limit():
    ds = _dataset("first", limit=3)
    i, asvs, counts = ds[0]
    assert i == 0 and asvs.tolist() == [0, 2, 3] and counts.tolist() == [5, 9, 1]
    assert ds[1][1].tolist() == [1, 6] and ds.n_asvs(2) == 8


def test_abundance_keeps_the_highest_counts_ties_in_table_order():
    ds = _dataset("abundance", limit=4)
    _, asvs, counts = ds[0]
    assert asvs.tolist() == [2, 4, 7, 0] and counts.tolist() == [9, 9, 7, 5]
    assert ds[4][1].tolist() == [3, 0, 7]


def test_random_draws_differ_per_call_and_repeat_with_the_seed():
    def draws(ds, n=6):
        return [tuple(ds[2][1]) for _ in range(n)]

    first = draws(_dataset("random", limit=3, seed=7))
    assert len(set(first)) > 1
    assert draws(_dataset("random", limit=3, seed=7)) == first
    assert draws(_dataset("random", limit=3, seed=8)) != first
    ds = _dataset("random", limit=3, seed=7)
    ds.set_epoch(1)
    assert draws(ds) != first
    for sample in first:
        assert len(sample) == 3 and list(sample) == sorted(set(sample))
    _, asvs, counts = _dataset("random", limit=4, seed=1)[0]
    np.testing.assert_array_equal(counts, COUNTS[0, asvs])


def test_collate_pads_masks_and_dedups_exactly():
    ds = _dataset("first", limit=8, targets=np.arange(5.0), cat_ids=np.ones((5, 2), int),
                  groups=[0, 1, 0, 1, 2])
    batch = ds.collate([ds[1], ds[3], ds[0]])
    assert batch.sample_ids == ["S1", "S3", "S0"]
    assert batch.sample_index.tolist() == [1, 3, 0]
    assert batch.asv_index.shape == (3, 6)
    assert batch.asv_index[0].tolist() == [1, 6, -1, -1, -1, -1]
    assert torch.equal(batch.asv_mask, batch.asv_index >= 0)
    assert torch.equal(batch.counts == 0, ~batch.asv_mask)
    assert batch.counts[2].tolist() == [5, 9, 1, 9, 2, 7]
    assert batch.unique_asv_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # 9 positions, 8 unique
    assert batch.unique_tokens.dtype == torch.long
    tokens = torch.from_numpy(tokenize(SEQUENCES, 8)).long()
    mask = batch.asv_mask
    assert torch.equal(batch.unique_tokens[batch.asv_inverse][mask], tokens[batch.asv_index[mask]])
    assert torch.equal(batch.unique_asv_index[batch.asv_inverse][mask], batch.asv_index[mask])
    assert (batch.asv_inverse[~mask] == 0).all()
    assert batch.target.dtype == torch.float32 and batch.target.tolist() == [1.0, 3.0, 0.0]
    assert batch.cat_ids.shape == (3, 2) and batch.group_index.tolist() == [1, 1, 0]
    assert batch.distances is None


def test_max_bp_from_config_truncates_tokens():
    cfg = DataConfig(token_limit=8, max_bp=4)
    ds = SampleDataset(_data(), IDS, cfg)
    batch = ds.collate([ds[0]])
    assert batch.unique_tokens.shape == (6, 4)
    assert batch.unique_tokens[0].tolist() == [1, 2, 3, 4]


def test_distance_block_is_the_batch_submatrix():
    data = _data()
    ds = SampleDataset(data, ["S4", "S1", "S2"], DataConfig(token_limit=2), with_distances=True)
    batch = ds.collate([ds[2], ds[0]])
    expected = data.distances[np.ix_([2, 4], [2, 4])]
    assert batch.distances.dtype == torch.float32
    np.testing.assert_array_equal(batch.distances.numpy(), expected)


def test_pretraining_without_distances_and_unknown_samples_fail():
    data = _data(with_distances=False)
    with pytest.raises(InputError, match="no distances.h5; re-run aam prepare with --tree, "
                                         "--distance-matrix or a --beta-metric"):
        SampleDataset(data, IDS, DataConfig(), with_distances=True)
    with pytest.raises(InputError, match=r"2 \(first 2: X1, X2\) samples are not in the prepared"):
        SampleDataset(data, ["S0", "X1", "X2"], DataConfig())


def test_classification_targets_stay_integer():
    ds = _dataset(targets=np.array([0, 1, 1, 0, 1]))
    assert ds.collate([ds[0], ds[1]]).target.dtype == torch.int64


def test_dedup_fraction_counts_saved_encoder_work():
    ds = _dataset("first", limit=8)
    batch = ds.collate([ds[0], ds[2]])  # 6 + 8 positions, 8 distinct ASVs
    assert asv_dedup_fraction([batch]) == pytest.approx(1 - 8 / 14)


def _as_lists(loader):
    return [(b.sample_ids, b.asv_index.tolist(), b.unique_asv_index.tolist()) for b in loader]


@pytest.mark.parametrize("sampling", ["first", "abundance"])
def test_workers_give_the_same_batches(sampling):
    ds = _dataset(sampling, limit=3)
    single = _as_lists(make_loader(ds, batch_size=2, shuffle=True, seed=3))
    multi = _as_lists(make_loader(ds, batch_size=2, shuffle=True, seed=3, num_workers=2))
    assert single == multi
    assert sorted(sum((ids for ids, _, _ in single), [])) == IDS
    assert _as_lists(make_loader(ds, batch_size=2, shuffle=True, seed=4)) != single


def test_random_sampling_with_workers_is_reproducible():
    ds = _dataset("random", limit=3, seed=5)
    runs = [_as_lists(make_loader(ds, 5, shuffle=False, seed=0, num_workers=2)) for _ in range(2)]
    assert runs[0] == runs[1]
    ds.set_epoch(1)
    assert _as_lists(make_loader(ds, 5, shuffle=False, seed=0, num_workers=2)) != runs[0]
    ds.set_epoch(0)
    ds.set_pass(1)  # a validation pass draws other ASVs, in fresh workers too
    assert _as_lists(make_loader(ds, 5, shuffle=False, seed=0, num_workers=2)) != runs[0]
