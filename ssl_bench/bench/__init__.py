"""Benchmarks that print numbers (and can write JSON): ``augment`` (batched policies against per-image PIL) and
``train`` (the trainer's step against a peer-style DataLoader + PIL pipeline, ``reference``)."""
