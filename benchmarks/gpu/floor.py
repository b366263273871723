"""The ranker's compute floor: FLOPs per row, a small table of GPU peaks, and the share of peak a time reaches.

FLOPs per row count the matrix products only: 2 × Σ fan_in × fan_out over RANKER_LAYERS (functions/examples.py),
a multiply and an add per weight. The bias adds and ReLUs (Σ fan_out and three layers' widths per row, under
0.1 % of it) are left out. The weights are read once per batch whatever its size, so a second floor, the time to
read them from HBM, bounds the small batches; the table gives that bandwidth too.

Peaks are the vendor's dense figures for the SXM parts unless the name says PCIe/NVL. Which one a runtime can
reach depends on its math mode: FP32 without tensor cores (PyTorch's default, `torch.backends.cuda.matmul.
allow_tf32 = False`) against the FP32 peak; TF32 tensor cores (ONNX Runtime's CUDA provider's default) against
the TF32 dense peak. The report states both shares and calls the FP32 one primary.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

BYTES_PER_WEIGHT = 4  # FP32


@dataclass(frozen=True, slots=True)
class Peak:
    match: str  # lower-case substrings that must all appear in torch.cuda.get_device_name()
    name: str
    fp32_flops: float  # FP32, CUDA cores (non-tensor)
    tf32_dense_flops: float  # TF32 tensor cores, dense (no 2:4 sparsity)
    hbm_bytes_per_s: float
    source: str


# First match wins: the more specific names come first.
PEAKS: tuple[Peak, ...] = (
    Peak("h200 nvl", "H200 NVL", 60e12, 835e12 / 2, 4.8e12, "NVIDIA H200 NVL datasheet (TF32 835 sparse)"),
    Peak("h200", "H200 SXM", 67e12, 989e12 / 2, 4.8e12, "NVIDIA H200 datasheet: FP32 67, TF32 989 sparse / 495 dense"),
    Peak("h100 pcie", "H100 PCIe", 51e12, 756e12 / 2, 2.0e12, "NVIDIA H100 datasheet (PCIe)"),
    Peak("h100 nvl", "H100 NVL", 60e12, 835e12 / 2, 3.9e12, "NVIDIA H100 datasheet (NVL)"),
    Peak("h100", "H100 SXM", 67e12, 989e12 / 2, 3.35e12, "NVIDIA H100 datasheet (SXM)"),
    Peak("a100", "A100 SXM 80GB", 19.5e12, 156e12, 2.039e12, "NVIDIA A100 datasheet"),
    Peak("l4", "L4", 30.3e12, 120e12 / 2, 0.3e12, "NVIDIA L4 datasheet"),
)


def ranker_layers() -> tuple[int, ...]:
    from edgeinfer.functions.examples import RANKER_LAYERS

    return tuple(RANKER_LAYERS)


def flops_per_row(layers: Sequence[int]) -> int:
    return 2 * sum(fan_in * fan_out for fan_in, fan_out in itertools.pairwise(layers))


def weight_bytes(layers: Sequence[int]) -> int:
    weights = sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(layers))
    return weights * BYTES_PER_WEIGHT


def peak_for(device_name: str) -> Peak | None:
    lowered = device_name.lower()
    for peak in PEAKS:
        if all(part in lowered for part in peak.match.split()):
            return peak
    return None


def describe_model(layers: Sequence[int]) -> dict[str, Any]:
    per_row = flops_per_row(layers)
    return {
        "layers": list(layers),
        "flops_per_row": per_row,
        "formula": "2 × Σ fan_in × fan_out over RANKER_LAYERS (matrix products only; bias and ReLU left out)",
        "weight_bytes": weight_bytes(layers),
    }


def achieved(layers: Sequence[int], batch: int, seconds: float | None, peak: Peak | None) -> dict[str, Any]:
    """FLOP/s that `seconds` per batch of `batch` rows means, and (on a known GPU) its share of each peak."""
    flops = flops_per_row(layers) * batch
    out: dict[str, Any] = {"batch": batch, "flops": flops, "seconds": seconds}
    if not seconds or seconds <= 0:
        out["flop_per_s"] = out["gflop_per_s"] = None
        return out
    out["flop_per_s"] = flops / seconds
    out["gflop_per_s"] = out["flop_per_s"] / 1e9
    if peak is not None:
        fp32_floor = flops / peak.fp32_flops
        tf32_floor = flops / peak.tf32_dense_flops
        memory_floor = weight_bytes(layers) / peak.hbm_bytes_per_s
        out.update(
            {
                "share_of_fp32_peak": out["flop_per_s"] / peak.fp32_flops,
                "share_of_tf32_dense_peak": out["flop_per_s"] / peak.tf32_dense_flops,
                "fp32_compute_floor_s": fp32_floor,
                "tf32_compute_floor_s": tf32_floor,
                "weight_read_floor_s": memory_floor,
                # How many times its floor the batch took: compute floor (FP32), and the larger of it and the
                # time to read the weights once from HBM.
                "times_fp32_compute_floor": seconds / fp32_floor,
                "times_fp32_roofline_floor": seconds / max(fp32_floor, memory_floor),
            }
        )
    return out


def peak_dict(peak: Peak | None, device_name: str) -> dict[str, Any]:
    if peak is None:
        return {
            "device": device_name,
            "known": False,
            "note": f"no peak in benchmarks/gpu/floor.py for {device_name!r}",
        }
    return {
        "device": device_name,
        "known": True,
        **asdict(peak),
        "primary": "fp32_flops (non-tensor): PyTorch's default float32 matmul precision; TF32 share also given",
    }
