"""``ssl-bench bench augment``: batched augmentation policies against a per-image PIL pipeline doing the same work."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ssl_bench.augment.pil_reference import PIL_PIPELINES
from ssl_bench.augment.policies import Policy, create_policy
from ssl_bench.config import AugmentConfig

POLICIES = ("weak", "randaugment", "ctaugment")


def _rate(fn: Callable[[], None], images_per_call: int, min_seconds: float, sync: Callable[[], None]) -> float:
    """Images per second of ``fn``, timed over repeated calls for at least ``min_seconds`` after one warm-up."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 3:
            return calls * images_per_call / elapsed


def bench_augment(
    device: torch.device, batch: int = 448, size: int = 32, min_seconds: float = 2.0, seed: int = 0
) -> list[dict]:
    """images/s of each policy, batched on ``device`` and per-image PIL on the CPU, measured in the same run."""
    from PIL import Image

    g_cpu = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g_cpu)
    on_device = images.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    hwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = []
    for name in POLICIES:
        policy = create_policy(name, AugmentConfig(), hflip=True)
        pil = PIL_PIPELINES[name](size)

        def whole_batch(p: Policy = policy) -> None:
            p(on_device, generator)

        batched = _rate(whole_batch, batch, min_seconds, sync)

        def per_image(pipeline=pil) -> None:
            for arr in hwc:
                np.asarray(pipeline(Image.fromarray(arr)))

        pil_rate = _rate(per_image, batch, min_seconds, lambda: None)
        rows.append(
            {
                "policy": name,
                "batched_img_s": round(batched, 1),
                "pil_img_s": round(pil_rate, 1),
                "ratio": round(batched / pil_rate, 2),
                "device": str(device),
                "batch": batch,
                "size": size,
                "threads": torch.get_num_threads(),
            }
        )
    return rows
