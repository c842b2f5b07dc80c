"""`--parallel dp`: one process splits each batch by samples over several GPUs.

No GPU runs in CI, so two CPU "devices" stand in for two GPUs: ``split_loss`` then computes the
parts one after another on the model itself (on CUDA it replicates the model and runs the parts in
threads). What is checked here is what the GPUs would compute: the split batches, that the loss and
gradient of unequal parts equal the whole batch's for a per-sample-mean loss, and that `aam train`
and `aam pretrain` run with the flag. (End to end, Adam's early steps barely depend on how the
gradient is weighted, so the gradient itself is compared in a unit test.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aam.cli.pretrain import main as pretrain_main
from aam.cli.train import main as train_main
from aam.models.encoder import AAMEncoder
from aam.training import data_parallel, distributed
from aam.training.data_parallel import _PartLoss, split_loss
from aam.training.distributed import DistContext
from aam.training.pretrain_objective import PretrainObjective
from test_encoder import TINY, make_batch

CPU = torch.device("cpu")


def test_each_part_keeps_exactly_the_asvs_its_samples_use():
    batch = make_batch(n_samples=5, n_asvs=6, n_unique=9)
    parts = batch.split(2)
    assert [p.sample_ids for p in parts] == [["S0", "S1"], ["S2", "S3", "S4"]]
    for part, rows in zip(parts, ([0, 1], [2, 3, 4])):
        mask = part.asv_mask
        assert torch.equal(part.unique_asv_index[part.asv_inverse][mask], part.asv_index[mask])
        assert torch.equal(part.asv_index[mask], batch.asv_index[rows][:, :mask.shape[1]][mask])
        assert len(part.unique_tokens) == len(torch.unique(part.asv_index[mask]))
        assert torch.equal(part.distances, batch.distances[rows][:, rows])
    assert parts[1].asv_mask.shape[1] == 4  # trailing all-padding columns dropped


def test_a_part_is_what_collating_its_samples_gives(simulated_prepared):
    from aam.config import DataConfig
    from aam.data.dataset import SampleDataset
    from aam.data.prepared import load_prepared

    data = load_prepared(simulated_prepared)
    dataset = SampleDataset(data, data.sample_ids[:8], DataConfig(token_limit=64),
                            with_distances=True)
    whole = dataset.collate([dataset[i] for i in range(8)])
    for part, rows in zip(whole.split(3), ([0, 1, 2], [3, 4], [5, 6, 7])):
        direct = dataset.collate([dataset[i] for i in rows])
        assert part.sample_ids == direct.sample_ids
        width = part.asv_mask.shape[1]  # the direct batch may pad further (the whole's width)
        assert torch.equal(part.asv_mask, direct.asv_mask[:, :width])
        assert not direct.asv_mask[:, width:].any()
        for name in ("asv_index", "counts"):
            assert torch.equal(getattr(part, name), getattr(direct, name)[:, :width])
        tokens = part.unique_tokens[part.asv_inverse][part.asv_mask]
        assert torch.equal(tokens, direct.unique_tokens[direct.asv_inverse][direct.asv_mask])
        assert torch.equal(part.distances, direct.distances)


def test_parts_encode_like_the_whole_batch():
    batch = make_batch(n_samples=6, n_asvs=5, n_unique=8)
    encoder = AAMEncoder(TINY).eval()
    with torch.no_grad():
        whole = encoder(batch).sample_emb
        parts = torch.cat([encoder(part).sample_emb for part in batch.split(3)])
    assert parts == pytest.approx(whole, abs=1e-5)


class _MeanOverSamples:
    """A per-sample-mean loss (as the fine-tuning target loss is)."""

    def loss(self, model, batch):
        per_sample = model(batch).sample_emb.pow(2).sum(-1)
        return per_sample.mean(), {"loss": float(per_sample.detach().mean())}


def test_unequal_parts_give_the_whole_batch_loss_and_gradient():
    batch = make_batch(n_samples=8, n_asvs=5, n_unique=8)
    assert [part.size for part in batch.split(3)] == [3, 2, 3]
    encoder = AAMEncoder(TINY).eval()
    whole, _ = _MeanOverSamples().loss(encoder, batch)
    expected = torch.autograd.grad(whole, list(encoder.parameters()), allow_unused=True)
    split, logs = split_loss(_MeanOverSamples(), encoder, batch, [CPU, CPU, CPU])
    got = torch.autograd.grad(split, list(encoder.parameters()), allow_unused=True)
    assert float(split.detach()) == pytest.approx(float(whole.detach()), rel=1e-5)
    assert logs["loss"] == pytest.approx(float(whole.detach()), rel=1e-5)
    used = [(g, e) for g, e in zip(got, expected) if e is not None]
    got, expected = (torch.cat([t.flatten() for t in ts]) for ts in zip(*used))
    assert float((got - expected).norm() / expected.norm()) < 1e-4


def test_small_batches_make_fewer_parts():
    batch = make_batch(n_samples=3)
    assert [part.size for part in batch.split(4)] == [1, 1, 1]
    assert batch.split(4, min_size=2) == [batch]  # pretraining needs a pair per part


def test_pretrain_loss_in_parts_pairs_within_each_part():
    batch = make_batch(n_samples=4)
    objective = PretrainObjective(0.0, 0.0)
    from aam.config import DataConfig, PretrainConfig
    from aam.models.pretrain import PretrainModel

    model = PretrainModel(PretrainConfig(data=DataConfig(batch_size=4), model=TINY)).eval()
    with torch.no_grad():
        loss, logs = split_loss(objective, model, batch, [CPU, CPU])
        halves = [objective.loss(model, part)[0] for part in batch.split(2)]
    assert float(loss) == pytest.approx(float(sum(halves) / 2), rel=1e-6)
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-6)
    part = batch.split(2)[0]  # what each GPU's thread calls on CUDA
    with torch.no_grad():
        wrapped = _PartLoss(objective, model, (False, torch.bfloat16))(part)[0]
    assert float(wrapped) == pytest.approx(float(halves[0]), rel=1e-6)


@pytest.fixture
def prepared(simulated_prepared) -> Path:
    return simulated_prepared


@pytest.fixture
def three_devices(monkeypatch) -> list[list[int]]:
    """``--parallel dp`` resolves to three CPU devices standing in for three GPUs; returns
    the part sizes of every split batch (8 samples -> 3 + 2 + 3: unequal parts)."""
    real, sizes = distributed.init_distributed, []

    def init(requested="auto", device="auto"):
        if requested != "dp":
            return real(requested, device)
        return DistContext("dp", device=CPU, devices=(CPU, CPU, CPU))

    def spy(objective, model, batch, devices):
        sizes.append([part.size for part in batch.split(len(devices), getattr(
            objective, "min_part_size", 1))])
        return split_loss(objective, model, batch, devices)

    monkeypatch.setattr(distributed, "init_distributed", init)
    monkeypatch.setattr(data_parallel, "split_loss", spy)
    return sizes


ARGS = ["--embedding-dim", "16", "--attention-heads", "2", "--attention-layers", "1",
        "--dropout", "0", "--device", "cpu", "--epochs", "2", "--val-fraction", "0.25",
        "--seed", "5", "--batch-size", "8", "--lr", "0.003"]


def test_train_over_three_devices_matches_one(prepared, tmp_path, three_devices):
    # fine-tuning keeps the ASV batch norm's statistics fixed (set from every training ASV),
    # so each part's ASVs are standardised as the whole batch's are
    argv = [*ARGS, "--no-count-prediction", "--token-limit", "64", "--attention-path",
            "--data-dir", str(prepared)]
    assert train_main([*argv, "--output-dir", str(tmp_path / "dp"), "--parallel", "dp"]) == 0
    assert train_main([*argv, "--output-dir", str(tmp_path / "one")]) == 0
    assert three_devices and all(sizes == [3, 2, 3] for sizes in three_devices)
    dp, one = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("dp", "one"))
    for a, b in zip(dp["history"], one["history"]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert dp["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)


def test_pretrain_over_three_devices_trains(prepared, tmp_path, three_devices):
    out = tmp_path / "dp"
    assert pretrain_main([*ARGS, "--token-limit", "16", "--data-dir", str(prepared),
                          "--output-dir", str(out), "--parallel", "dp"]) == 0
    assert three_devices and all(sizes == [3, 2, 3] for sizes in three_devices)
    metrics = json.loads((out / "metrics.json").read_text())
    first, last = metrics["first_epoch"], metrics["final"]
    assert last["train_distance_loss"] < first["train_distance_loss"]
    assert (out / "encoder.pt").is_file()


def test_compile_with_data_parallel_is_one_line(tmp_path, capsys):
    code = train_main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"),
                       "--parallel", "dp", "--compile"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--compile cannot be combined with --parallel dp" in err[0]
