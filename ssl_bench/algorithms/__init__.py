"""SSL algorithms as plug-ins: one file each, registered by name, all sharing the trainer and the views pipeline."""

from ssl_bench.algorithms.base import Algorithm, AlgorithmConfig
from ssl_bench.registry import ALGORITHMS


def get_algorithm(name: str) -> type[Algorithm]:
    return ALGORITHMS.get(name)


# populate the registry
from ssl_bench.algorithms import adamatch, fixmatch, mixmatch, remixmatch, supervised  # noqa: E402,F401

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "get_algorithm"]
