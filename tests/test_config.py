"""Config objects: validation messages, unknown keys, YAML round trip."""

import pytest

from aam.config import (DataConfig, FinetuneConfig, ModelConfig, PretrainConfig, dump_yaml,
                        from_dict, load_yaml, merge, to_dict)
from aam.errors import InputError


def test_pretrain_batch_size_must_be_even():
    with pytest.raises(InputError, match=r"batch_size must be even .* got 7"):
        PretrainConfig(data=DataConfig(batch_size=7))


def test_unknown_key_is_named_with_its_section():
    with pytest.raises(InputError, match=r"Unknown config key\(s\) in 'model': embeding_dim"):
        from_dict(PretrainConfig, {"model": {"embeding_dim": 32}})


def test_wrong_type_is_named():
    with pytest.raises(InputError, match=r"'data.token_limit' must be a number, got 'many'"):
        from_dict(PretrainConfig, {"data": {"token_limit": "many"}})


def test_token_limit_below_one_rejected():
    with pytest.raises(InputError, match="token_limit must be >= 1, got 0"):
        DataConfig(token_limit=0)


def test_heads_must_divide_embedding_dim():
    with pytest.raises(InputError, match="divisible by attention_heads"):
        ModelConfig(embedding_dim=30, attention_heads=4)


def test_zscore_category_needs_normalize_by():
    with pytest.raises(InputError, match="needs normalize_by"):
        DataConfig(target_transform="zscore-category")


def test_yaml_round_trip(tmp_path):
    cfg = FinetuneConfig(
        data=DataConfig(categorical_columns=("sex", "ibd"), token_limit=64),
        target_column="age",
        categorical_lr=1e-4,
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(FinetuneConfig, path) == cfg
    assert to_dict(cfg)["data"]["categorical_columns"] == ["sex", "ibd"]


def test_merge_overrides_nested_and_revalidates():
    cfg = merge(PretrainConfig(), {"train": {"lr": 0.5}, "data": {"batch_size": 4}})
    assert cfg.train.lr == 0.5 and cfg.data.batch_size == 4
    with pytest.raises(InputError, match="batch_size must be even"):
        merge(cfg, {"data": {"batch_size": 3}})
