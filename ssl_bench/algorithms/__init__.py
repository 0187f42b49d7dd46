"""SSL algorithms as plug-ins: one file each, registered by name, all sharing the trainer and the views pipeline."""

from typing import Any

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig, DataInfo, Ranks
from ssl_bench.config_checks import check_ranges, from_dict
from ssl_bench.errors import ConfigError
from ssl_bench.registry import ALGORITHMS


def get_algorithm(name: str) -> type[Algorithm]:
    return ALGORITHMS.get(name)


def algorithm_config(values: dict[str, Any]) -> AlgorithmConfig:
    """The config dataclass of the algorithm named in ``values['name']``, built from the rest of the table."""
    values = dict(values)
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError('[algorithm] needs a name, e.g. name = "supervised"')
    cfg = from_dict(get_algorithm(name).Config, {**values, "name": name}, "algorithm")
    check_ranges(cfg, "algorithm", name)
    return cfg


# populate the registry
from ssl_bench.algorithms import (  # noqa: E402,F401
    adamatch,
    dash,
    fixmatch,
    flexmatch,
    freematch,
    mean_teacher,
    mixmatch,
    pi_model,
    pseudo_label,
    remixmatch,
    softmatch,
    supervised,
    uda,
)

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "DataInfo", "Ranks", "algorithm_config", "get_algorithm"]
