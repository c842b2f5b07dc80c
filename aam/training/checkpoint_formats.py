"""How checkpoints of older formats are read: settings they did not record, the pretraining
head's old names, and settings this aam no longer has (each with the one behaviour it still
builds). :mod:`aam.training.checkpoint` applies these to every file it reads.
"""

from __future__ import annotations

from typing import Any

from aam.errors import InputError

OLDEST_FORMAT = 4
LAST_READER = "aam 0.1.0 at commit 93e9733"  # the last aam that reads formats 1-3
# Settings that older formats did not record, with the behaviour their models were trained with:
# (formats before this one, checkpoint kind, config section or "" for the top level, defaults).
# Format 5 kept the ASV vectors a fitted abundance head reads still while fine-tuning.
UNRECORDED = ((5, "predictor", "", {"abundance_head_encoder": "live"}),)
# Settings this aam no longer has (model variants that lost on development data,
# docs/science.md), each with the one behaviour it still builds: a stored config holding that
# value loads with the key dropped; any other value fails in one line naming LAST_BUILDER.
REMOVED = {"model.count_features": "log1p-clr", "model.asv_norm": True,
           "abundance_head": True, "abundance_head_init": "fit"}
# Values of kept settings that this aam no longer builds.
REMOVED_VALUES = {"abundance_head_features": ("mlp",)}
LAST_BUILDER = "aam 0.1.0 at commit da82dfc"  # the last aam that builds the removed variants
# Names formats before 6 gave the pretraining head's weights and loss: (prefix, new prefix).
RENAMED = (("unifrac_head.", "distance_head."), ("unifrac_loss", "distance_loss"))


def upgrade(payload: dict, version: int) -> dict:
    """A format 4-5 dict in the current layout: unrecorded settings at the values those runs
    used, the pretraining head's weights (and their optimizer state) under their new names."""
    payload = dict(payload, config=dict(payload["config"]))
    for before, kind, section, defaults in UNRECORDED:
        if version < before and kind == payload["kind"]:
            target = payload["config"]
            if section:
                target = target[section] = dict(target.get(section) or {})
            for key, value in defaults.items():
                target.setdefault(key, value)
    payload["model_state"] = _renamed(payload["model_state"])
    if isinstance(payload.get("partial_sums"), dict):
        payload["partial_sums"] = _renamed(payload["partial_sums"])
    optimizer = payload.get("optimizer_state")
    if isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict) \
            and isinstance(optimizer.get("param_groups"), list):
        groups = [dict(g, params=[_rename(p) for p in g.get("params", [])])
                  if isinstance(g, dict) else g for g in optimizer["param_groups"]]
        payload["optimizer_state"] = {**optimizer, "state": _renamed(optimizer["state"]),
                                      "param_groups": groups}
    return payload


def without_removed(config: dict, source: str) -> dict:
    """``config`` with the :data:`REMOVED` settings dropped, and a width of 0 (which meant 4 x
    the embedding dim) written out.

    Raises
    ------
    InputError
        When it holds a removed setting at a value other than the one this aam builds, or a
        value of :data:`REMOVED_VALUES`.
    """
    config = dict(config)
    for dotted, kept in REMOVED.items():
        *section, key = dotted.split(".")
        holder = config.get(section[0]) if section else config
        if not isinstance(holder, dict) or key not in holder:
            continue
        value = holder[key]
        if value != kept or type(value) is not type(kept):
            raise _removed(source, dotted, value)
        holder = {k: v for k, v in holder.items() if k != key}
        if section:
            config[section[0]] = holder
        else:
            config = holder
    for key, values in REMOVED_VALUES.items():
        if config.get(key) in values:
            raise _removed(source, key, config[key])
    dim = (config.get("model") or {}).get("embedding_dim", 64)
    if config.get("abundance_head_width") == 0 and isinstance(dim, int):
        config["abundance_head_width"] = 4 * dim
    return config


def _removed(source: str, name: str, value: Any) -> InputError:
    shown = str(value).lower() if isinstance(value, bool) else str(value)[:40]
    return InputError(f"{source}: {name} {shown} is a model variant this aam no longer builds "
                      f"(removed after losing on development data). Retrain with this aam, or "
                      f"read it with {LAST_BUILDER}.")


def _rename(name: Any) -> Any:
    for old, new in RENAMED:
        if isinstance(name, str) and old in name:
            return name.replace(old, new)
    return name


def _renamed(mapping: dict) -> dict:
    return {_rename(k): v for k, v in mapping.items()}
