"""Speed and memory of EoFormer and of peer networks, measured side by side.

:func:`run_benchmark` measures, in one run and on one seeded random input window
(1 x 4 x W x W x W, W = 128 voxels by default), every row of a table:

- parameters (millions);
- GFLOP per window, counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a
  ``meta``-device copy of the network (no arithmetic is run). Its convention: a multiply-add
  counts as 2 FLOPs, and only convolutions and matrix products are counted (element-wise
  operations, norms, activations and softmax are not);
- latency of one window: the median of timed eval forwards under ``torch.inference_mode()``
  after warm-up forwards; slow rows stop early once a time budget is spent;
- peak memory of the forwards: on CUDA ``torch.cuda.max_memory_allocated`` (weights, input and
  activations); on CPU the growth of the resident set size (RSS) of a fresh process over its RSS
  after building the network and the input, read from Linux's ``VmHWM`` after resetting it
  through ``/proc/self/clear_refs`` (elsewhere from ``resource.getrusage``);
- on CUDA, achieved TFLOP/s and the share of the device's dense peak for the row's precision
  (:data:`DEVICE_PEAK_TFLOPS`);
- for EoFormer rows, the largest difference of the output logits from the unoptimised path
  (unfused, float32, eager), relative to that output's range;
- end-to-end time of a whole case (files in, segmentation file written) through
  :func:`EoFormerSegmentationLib.engine.segment_files`.

On CPU every row runs in a fresh process (spawned), so that neither the memory allocator's
caches nor oneDNN's primitive caches of one network flatter the next one.

Rows (:func:`plan_variants`): EoFormer fused, unfused, and re-fused on every forward pass (what
the authors' code does in eval mode), MONAI's SegResNet (BraTS configuration), SwinUNETR
(feature size 48) and UNETR; on CUDA also bfloat16 / float16 autocast, channels-last weights and
``torch.compile`` variants.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import multiprocessing
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "DEVICE_PEAK_TFLOPS",
    "NETWORKS",
    "BenchmarkResult",
    "BenchmarkRow",
    "BusyCores",
    "EndToEndResult",
    "ThroughputResult",
    "Variant",
    "build_network",
    "count_flops",
    "count_parameters",
    "cpu_has_native_bfloat16",
    "device_peak_tflops",
    "format_table",
    "forward_window",
    "machine_info",
    "measure_end_to_end",
    "measure_matmul_peak",
    "measure_throughput",
    "measure_window",
    "plan_variants",
    "prepare_variant",
    "run_benchmark",
    "seeded_input",
    "write_resampled_case",
]

#: Networks the benchmark knows: name -> what the table calls it.
NETWORKS: Dict[str, str] = {
    "eoformer": "EoFormer",
    "segresnet": "SegResNet",
    "swinunetr": "SwinUNETR",
    "unetr": "UNETR",
}

#: How an EoFormer's edge-oriented mixers run: fused once (``model.fuse()``), as trained
#: (parallel branches), or fused again on every forward pass (the authors' eval behaviour).
FUSIONS = ("fused", "unfused", "refused_every_forward")

PRECISIONS = ("float32", "bfloat16", "float16")

#: Dense (no sparsity) peak throughput in TFLOP/s of known GPUs, by math mode, from NVIDIA's
#: data sheets (H100 SXM5 / PCIe / NVL, H200 SXM, A100 SXM). ``float32`` is the CUDA-core FP32
#: peak, ``tf32`` the tensor-core TF32 peak, ``bfloat16`` / ``float16`` the tensor-core peaks.
#: Matched against ``torch.cuda.get_device_name()``, most specific entry first.
DEVICE_PEAK_TFLOPS: Dict[str, Dict[str, float]] = {
    "H100 PCIe": {"float32": 51.2, "tf32": 378.0, "bfloat16": 756.0, "float16": 756.0},
    "H100 NVL": {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.5, "float16": 835.5},
    "H100": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4},
    "H200": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4},
    "A100": {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0},
}

#: Seed of the random input window and of the random weights.
DEFAULT_SEED = 0


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One row of the table: a network and how it is run.

    Attributes:
        network: a key of :data:`NETWORKS`.
        fusion: EoFormer only: one of :data:`FUSIONS`.
        precision: ``float32`` or an autocast dtype (``bfloat16``, ``float16``).
        channels_last: weights and input stored ``torch.channels_last_3d``.
        compiled: wrapped in ``torch.compile``.
    """

    network: str
    fusion: Optional[str] = None
    precision: str = "float32"
    channels_last: bool = False
    compiled: bool = False

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; known: {', '.join(NETWORKS)}")
        if self.network == "eoformer" and self.fusion not in FUSIONS:
            raise ValueError(f"EoFormer needs fusion in {FUSIONS}, got {self.fusion!r}")
        if self.network != "eoformer" and self.fusion is not None:
            raise ValueError(f"{self.network} has no fusion option")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def model_label(self) -> str:
        """The network as the table names it."""
        name = NETWORKS[self.network]
        if self.network != "eoformer":
            return name
        return {
            "fused": f"{name}, fused",
            "unfused": f"{name}, unfused",
            "refused_every_forward": f"{name}, re-fused every forward (official eval)",
        }[self.fusion]

    @property
    def variant_label(self) -> str:
        """Precision and options, e.g. ``bf16 autocast, channels-last, compiled``."""
        parts = [
            {"float32": "fp32", "bfloat16": "bf16 autocast", "float16": "fp16 autocast"}[
                self.precision
            ]
        ]
        if self.channels_last:
            parts.append("channels-last")
        if self.compiled:
            parts.append("torch.compile")
        return ", ".join(parts)

    @property
    def is_reference(self) -> bool:
        """True for the unoptimised EoFormer path that the others are compared with."""
        return (
            self.network == "eoformer"
            and self.fusion == "unfused"
            and self.precision == "float32"
            and not self.channels_last
            and not self.compiled
        )


@dataclass
class BenchmarkRow:
    """Measurements of one :class:`Variant` (``None`` where not measured).

    Attributes:
        model: network label.
        variant: precision / options label.
        settings: the :class:`Variant` as a dict.
        parameters_m: trainable + frozen parameters, millions.
        gflop: GFLOP per window (2 per multiply-add; convolutions and matrix products only).
        latency_s: median latency of one window, seconds.
        latency_runs_s: every timed run, seconds.
        first_call_s: the first (cold) forward, seconds (includes compilation when compiled).
        peak_memory_mib: peak memory of the forwards, MiB (see :attr:`memory_method`).
        memory_method: how :attr:`peak_memory_mib` was measured.
        tflops: achieved TFLOP/s (``gflop / latency_s / 1000``).
        peak_tflops: the device's dense peak for this precision, TFLOP/s.
        percent_of_peak: ``100 * tflops / peak_tflops``.
        max_relative_difference: EoFormer rows: max |output - reference output| divided by the
            reference output's range (max - min), the reference being the unfused float32
            eager row on the same input and weights.
        cpu_user_s_per_run: CPU time in user mode per timed forward (all threads), seconds.
        cpu_system_s_per_run: CPU time in the kernel per timed forward (page faults of fresh
            allocations show up here), seconds.
        end_to_end_s: first whole-case segmentation in a fresh process, seconds.
        end_to_end_warm_s: median of the following ones, seconds.
        latency_busy_core_s: CPU: median latency while another process keeps one core busy.
        busy_core_slowdown: ``latency_busy_core_s / latency_s``.
        latency_busy_core_adapted_s: CPU: the same with the threads adapted to the free cores,
            as the engine runs (:func:`~EoFormerSegmentationLib.cpu_threads.adapted_threads`).
        busy_core_adapted_slowdown: ``latency_busy_core_adapted_s / latency_s``.
        error: why the row could not be measured.

    On CPU, ``tflops``, ``peak_tflops`` and ``percent_of_peak`` compare with the float32
    matrix-product peak measured in the same run (:func:`measure_matmul_peak`).
    """

    model: str
    variant: str
    settings: Dict[str, Any]
    parameters_m: Optional[float] = None
    gflop: Optional[float] = None
    latency_s: Optional[float] = None
    latency_runs_s: List[float] = field(default_factory=list)
    first_call_s: Optional[float] = None
    peak_memory_mib: Optional[float] = None
    memory_method: Optional[str] = None
    tflops: Optional[float] = None
    peak_tflops: Optional[float] = None
    percent_of_peak: Optional[float] = None
    max_relative_difference: Optional[float] = None
    cpu_user_s_per_run: Optional[float] = None
    cpu_system_s_per_run: Optional[float] = None
    end_to_end_s: Optional[float] = None
    end_to_end_warm_s: Optional[float] = None
    latency_busy_core_s: Optional[float] = None
    busy_core_slowdown: Optional[float] = None
    latency_busy_core_adapted_s: Optional[float] = None
    busy_core_adapted_slowdown: Optional[float] = None
    error: Optional[str] = None


@dataclass
class EndToEndResult:
    """A whole-case segmentation, timed.

    Attributes:
        case: the case folder.
        model: the checkpoint used (a random-weight one unless a model was given).
        runs_s: wall time of each call of ``segment_files``, seconds (the first is cold: the
            model is loaded and the kernels are initialised in a fresh process).
        stage_timings_s: per-stage timings reported by the engine for the last run, seconds.
        peak_memory_mib: CUDA: ``torch.cuda.max_memory_allocated`` over the runs; CPU: peak
            RSS of the process (``VmHWM``, everything included), MiB.
        report: the engine's own report of the last run (``SegmentationResult.report()``:
            volumes, timings, registration and brain extraction, notes).
        error: why it could not be measured.
        label: what the row of the whole-case table calls it.
        shape: voxels of the T1ce read.
    """

    case: str
    model: str
    runs_s: List[float] = field(default_factory=list)
    stage_timings_s: Dict[str, Any] = field(default_factory=dict)
    peak_memory_mib: Optional[float] = None
    report: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    label: str = ""
    shape: Optional[List[int]] = None

    @property
    def cold_s(self) -> Optional[float]:
        """The first run."""
        return self.runs_s[0] if self.runs_s else None

    @property
    def warm_s(self) -> Optional[float]:
        """Median of the runs after the first."""
        return statistics.median(self.runs_s[1:]) if len(self.runs_s) > 1 else None


@dataclass
class ThroughputResult:
    """A small cohort segmented with ``segment_cohort``, as ``eoformer segment --cases`` does.

    Attributes:
        label: what the whole-case table calls it.
        threads: PyTorch threads of the segmenting process.
        cases: cases segmented.
        seconds: wall time of the whole run (model loading and case discovery included).
        cases_per_hour: ``cases * 3600 / seconds``.
        peak_memory_mib: peak RSS of the segmenting process (the reading workers apart), MiB.
        error: why it could not be measured.
    """

    label: str
    threads: Optional[int] = None
    cases: int = 0
    seconds: Optional[float] = None
    cases_per_hour: Optional[float] = None
    peak_memory_mib: Optional[float] = None
    error: Optional[str] = None


@dataclass
class BenchmarkResult:
    """Everything one benchmark run measured.

    Attributes:
        machine: CPU, threads, library versions, GPU (:func:`machine_info`).
        settings: device, window, repeats, time budget, seed.
        rows: one :class:`BenchmarkRow` per variant.
        end_to_end: the whole-case run, if any.
        notes: footnotes of the table (conventions, skipped rows).
        whole_cases: more whole-case runs (the same case on a 0.5 mm grid).
        throughput: cohort runs (cases per hour).
    """

    machine: Dict[str, Any]
    settings: Dict[str, Any]
    rows: List[BenchmarkRow]
    end_to_end: Optional[EndToEndResult] = None
    notes: List[str] = field(default_factory=list)
    whole_cases: List[EndToEndResult] = field(default_factory=list)
    throughput: List[ThroughputResult] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form."""
        end_to_end = None
        if self.end_to_end is not None:
            end_to_end = asdict(self.end_to_end)
            end_to_end["cold_s"] = self.end_to_end.cold_s
            end_to_end["warm_s"] = self.end_to_end.warm_s
        return {
            "machine": self.machine,
            "settings": self.settings,
            "rows": [asdict(row) for row in self.rows],
            "end_to_end": end_to_end,
            "whole_cases": [asdict(run) for run in self.whole_cases],
            "throughput": [asdict(run) for run in self.throughput],
            "notes": list(self.notes),
        }

    def write_json(self, path: os.PathLike) -> Path:
        """Write :meth:`to_dict` to ``path`` (UTF-8 JSON) and return the path."""
        from EoFormerSegmentationLib.files import atomic_write

        path = Path(path)
        with atomic_write(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def plan_variants(
    device: str,
    networks: Sequence[str] = tuple(NETWORKS),
    compile_rows: bool = False,
    cpu_bfloat16: bool = False,
) -> List[Variant]:
    """The rows measured for ``networks`` on ``device``.

    EoFormer: unfused (the reference), fused, re-fused every forward, all float32; on CUDA also
    fused with channels-last weights, bfloat16 and float16 autocast, bfloat16 + channels-last;
    on a CPU with native bfloat16 arithmetic (``cpu_bfloat16``) also fused bfloat16 autocast.
    With ``compile_rows`` the fused float32 (and on CUDA bfloat16) rows are repeated under
    ``torch.compile``. Peers: float32; on CUDA also bfloat16 autocast.

    Args:
        device: ``cpu`` or ``cuda``.
        networks: keys of :data:`NETWORKS`.
        compile_rows: add ``torch.compile`` rows.
        cpu_bfloat16: add the fused bfloat16 autocast row on CPU.
    """
    unknown = [name for name in networks if name not in NETWORKS]
    if unknown:
        raise ValueError(f"unknown network(s) {unknown}; known: {', '.join(NETWORKS)}")
    cuda = device.startswith("cuda")
    variants: List[Variant] = []
    for network in NETWORKS:
        if network not in networks:
            continue
        if network == "eoformer":
            variants += [
                Variant(network, "unfused"),
                Variant(network, "refused_every_forward"),
                Variant(network, "fused"),
            ]
            if cuda:
                variants += [
                    Variant(network, "fused", channels_last=True),
                    Variant(network, "fused", "bfloat16"),
                    Variant(network, "fused", "float16"),
                    Variant(network, "fused", "bfloat16", channels_last=True),
                ]
            elif cpu_bfloat16:
                variants.append(Variant(network, "fused", "bfloat16"))
            if compile_rows:
                variants.append(Variant(network, "fused", compiled=True))
                if cuda:
                    variants.append(Variant(network, "fused", "bfloat16", compiled=True))
        else:
            variants.append(Variant(network))
            if cuda:
                variants.append(Variant(network, precision="bfloat16"))
    return variants


# --------------------------------------------------------------------------------------------
# Networks, inputs, forwards
# --------------------------------------------------------------------------------------------


def build_network(
    network: str,
    window: int = 128,
    in_channels: int = 4,
    out_channels: int = 3,
    eoformer_config: Optional[Dict[str, Any]] = None,
    seed: int = DEFAULT_SEED,
):
    """A randomly initialised network, in eval mode, on the CPU.

    The same ``seed`` gives the same weights, so fused, unfused and re-fused EoFormers built
    with one seed compute the same function.

    Args:
        network: a key of :data:`NETWORKS`.
        window: cubic input size in voxels (UNETR's positional embedding depends on it).
        in_channels: input channels.
        out_channels: output channels.
        eoformer_config: extra :class:`EoFormer` keyword arguments (e.g. reduced widths).
        seed: seed of the random weights.

    Peer configurations: SegResNet ``blocks_down=(1, 2, 2, 4)``, ``blocks_up=(1, 1, 1)``,
    ``init_filters=16`` (MONAI's BraTS tutorial); SwinUNETR ``feature_size=48``; UNETR
    ``feature_size=16``, ``hidden_size=768``, ``mlp_dim=3072``, 12 heads, ``img_size=window``.
    """
    import importlib.util
    import inspect

    import torch

    torch.manual_seed(seed)
    if network in ("swinunetr", "unetr") and importlib.util.find_spec("einops") is None:
        raise RuntimeError(
            f"{NETWORKS[network]} needs einops: pip install einops (or the [benchmark] extra)"
        )
    if network == "eoformer":
        from EoFormerSegmentationLib.network.eoformer import EoFormer

        config = dict(eoformer_config or {})
        config.update(in_channels=in_channels, out_channels=out_channels)
        return EoFormer(**config).eval()
    if network == "segresnet":
        from monai.networks.nets import SegResNet

        return SegResNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            init_filters=16,
            blocks_down=(1, 2, 2, 4),
            blocks_up=(1, 1, 1),
        ).eval()
    if network == "swinunetr":
        from monai.networks.nets import SwinUNETR

        kwargs: Dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "feature_size": 48,
        }
        if "img_size" in inspect.signature(SwinUNETR.__init__).parameters:
            kwargs["img_size"] = (window,) * 3  # MONAI < 1.5 still asks for it
        return SwinUNETR(**kwargs).eval()
    if network == "unetr":
        from monai.networks.nets import UNETR

        return UNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            img_size=(window,) * 3,
            feature_size=16,
            hidden_size=768,
            mlp_dim=3072,
            num_heads=12,
        ).eval()
    raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")


def prepare_variant(model, variant: Variant, device: str = "cpu"):
    """Apply ``variant``'s options to a freshly built, unfused ``model`` (modified in place).

    Fusion (``fuse()`` once, or the per-forward re-fusion of the authors' code), the device,
    channels-last weights, then ``torch.compile``. Precision is applied at call time by
    :func:`forward_window` (autocast), so weights stay float32.

    Returns:
        The model to call (the compiled wrapper when ``variant.compiled``).
    """
    import torch

    if variant.network == "eoformer":
        if variant.fusion == "fused":
            model.fuse()
        elif variant.fusion == "refused_every_forward":
            from EoFormerSegmentationLib.network.edge_mixers import fuse_on_every_forward

            fuse_on_every_forward(model)
    model = model.to(device).eval()
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if variant.compiled:
        model = torch.compile(model)
    return model


def seeded_input(window: int, in_channels: int = 4, seed: int = DEFAULT_SEED):
    """The benchmark's input: standard-normal (1, in_channels, window, window, window) float32.

    Drawn on the CPU from a generator seeded with ``seed``, so every process and device sees
    exactly the same values (z-scored MRI intensities have this scale).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn((1, in_channels, window, window, window), generator=generator)


def forward_window(model, window_input, variant: Variant):
    """One eval forward of ``model`` under ``torch.inference_mode()`` and the variant's autocast.

    Args:
        model: from :func:`prepare_variant`.
        window_input: (1, C, X, Y, Z) float32 tensor on the model's device.
        variant: the row's options.

    Returns:
        The output logits (float32 or the autocast dtype), on the model's device.
    """
    import torch

    if variant.channels_last:
        window_input = window_input.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        if variant.precision == "float32":
            return model(window_input)
        dtype = getattr(torch, variant.precision)
        with torch.autocast(device_type=window_input.device.type, dtype=dtype):
            return model(window_input)


def count_parameters(model) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model, input_shape: Sequence[int], fused_on_every_forward: bool = False) -> int:
    """FLOPs of one eval forward of ``model`` on an input of ``input_shape``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a ``meta``-device copy of
    the model under ``torch.inference_mode()``, so nothing is computed and ``model`` is left
    untouched. Convention: 2 FLOPs per multiply-add of convolutions (dense, depth-wise,
    transposed) and matrix products; biases, element-wise operations, norms, activations and
    softmax are not counted.

    Args:
        model: an eager ``nn.Module`` (not a compiled wrapper).
        input_shape: (B, C, X, Y, Z).
        fused_on_every_forward: the model re-fuses its EdgeMixers on every forward (only affects
            the copy: the re-fusion is re-applied after copying).

    Returns:
        FLOPs (an integer).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = copy.deepcopy(model)
    if fused_on_every_forward:
        from EoFormerSegmentationLib.network.edge_mixers import fuse_on_every_forward

        fuse_on_every_forward(meta_model)
    meta_model = meta_model.to("meta").eval()
    window_input = torch.empty(tuple(input_shape), device="meta")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        meta_model(window_input)
    return int(counter.get_total_flops())


def device_peak_tflops(device_name: str, math: str) -> Optional[float]:
    """Dense peak TFLOP/s of a GPU for ``math`` (``float32``, ``tf32``, ``bfloat16``,
    ``float16``) from :data:`DEVICE_PEAK_TFLOPS`, or ``None`` for an unknown device."""
    for key, peaks in DEVICE_PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return peaks.get(math)
    return None


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def _proc_status_kib(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class _HostPeakMemory:
    """Peak growth of this process's resident set size since :meth:`start`."""

    def start(self) -> None:
        self.method = None
        self.baseline_kib = None
        try:  # Linux: "5" resets VmHWM (peak RSS) to the current RSS
            with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
                clear_refs.write("5")
            self.baseline_kib = _proc_status_kib("VmRSS")
            if self.baseline_kib is not None:
                self.method = "peak RSS growth (VmHWM reset via /proc/self/clear_refs)"
                return
        except OSError:
            pass
        try:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.baseline_kib = usage // 1024 if sys.platform == "darwin" else usage
            self.method = "peak RSS growth (getrusage ru_maxrss; fresh process)"
        except (ImportError, OSError):
            self.method = None

    def peak_mib(self) -> Optional[float]:
        if self.method is None:
            return None
        if self.method.startswith("peak RSS growth (VmHWM"):
            peak = _proc_status_kib("VmHWM")
        else:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = usage // 1024 if sys.platform == "darwin" else usage
        if peak is None:
            return None
        return max(0, peak - self.baseline_kib) / 1024.0


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# Measuring one window
# --------------------------------------------------------------------------------------------


def measure_window(
    variant: Variant,
    *,
    device: str = "cpu",
    window: int = 128,
    in_channels: int = 4,
    out_channels: int = 3,
    eoformer_config: Optional[Dict[str, Any]] = None,
    threads: Optional[int] = None,
    warmup: int = 1,
    repeats: int = 5,
    min_repeats: int = 2,
    time_budget_s: float = 20.0,
    seed: int = DEFAULT_SEED,
    output_path: Optional[str] = None,
    busy_cores: int = 0,
    adapt_threads: bool = False,
) -> Dict[str, Any]:
    """Latency and peak memory of ``variant`` on one seeded window, in this process.

    Builds the network (seeded weights), applies the variant, runs ``warmup`` forwards, then
    timed forwards until ``repeats`` are done, or ``time_budget_s`` seconds of timed forwards
    are spent and at least ``min_repeats`` are done.

    Args:
        variant: the row.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        window: cubic window size, voxels.
        in_channels: input channels.
        out_channels: output channels.
        eoformer_config: extra EoFormer keyword arguments.
        threads: ``torch.set_num_threads`` for this process (``None``: leave it).
        warmup: untimed forwards first (at least 1; the first one also gives ``first_call_s``).
        repeats: at most this many timed forwards.
        min_repeats: at least this many timed forwards, whatever the budget.
        time_budget_s: stop timing once this many seconds of timed forwards are spent.
        seed: seed of the weights and of the input.
        output_path: save the last output (float32, CPU) there with ``torch.save``.
        busy_cores: other processes that keep one core busy each while the forwards run (what
            a UI thread or another program does to a desktop's cores), see :class:`BusyCores`.
        adapt_threads: run each forward on the cores other processes leave free, as the
            engine does (:func:`~EoFormerSegmentationLib.cpu_threads.adapted_threads`; its
            0.1 s load sample is part of the latency).

    Returns:
        A dict with ``latency_runs_s``, ``latency_s`` (median), ``first_call_s``,
        ``peak_memory_mib``, ``memory_method``, ``cpu_user_s_per_run``,
        ``cpu_system_s_per_run``.
    """
    import torch

    from EoFormerSegmentationLib.cpu_threads import adapted_threads

    if threads is not None:
        torch.set_num_threads(int(threads))
    model = build_network(
        variant.network, window, in_channels, out_channels, eoformer_config, seed=seed
    )
    model = prepare_variant(model, variant, device)
    window_input = seeded_input(window, in_channels, seed).to(device)

    cuda = device.startswith("cuda")
    host_memory = _HostPeakMemory()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        host_memory.start()

    output = None
    first_call_s = None
    with BusyCores(busy_cores):
        for index in range(max(1, int(warmup))):
            start = time.perf_counter()
            with adapted_threads(torch.device(device), enabled=adapt_threads):
                output = forward_window(model, window_input, variant)
            _synchronize(device)
            if index == 0:
                first_call_s = time.perf_counter() - start
        runs: List[float] = []
        cpu_before = os.times()
        while len(runs) < max(1, int(repeats)):
            if len(runs) >= min_repeats and sum(runs) >= time_budget_s:
                break
            del output  # the previous output is not kept alive during the next forward
            start = time.perf_counter()
            with adapted_threads(torch.device(device), enabled=adapt_threads):
                output = forward_window(model, window_input, variant)
            _synchronize(device)
            runs.append(time.perf_counter() - start)
        cpu_after = os.times()

    if cuda:
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        method = "torch.cuda.max_memory_allocated (weights, input and activations)"
    else:
        peak_mib = host_memory.peak_mib()
        method = host_memory.method
    if output_path is not None:
        torch.save(output.detach().float().cpu(), output_path)
    del output, model, window_input
    if cuda:
        torch.cuda.empty_cache()
    return {
        "latency_runs_s": runs,
        "latency_s": statistics.median(runs),
        "first_call_s": first_call_s,
        "peak_memory_mib": peak_mib,
        "memory_method": method,
        "cpu_user_s_per_run": (cpu_after.user - cpu_before.user) / len(runs),
        "cpu_system_s_per_run": (cpu_after.system - cpu_before.system) / len(runs),
    }


def _measure_window_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Entry point of a spawned process: :func:`measure_window` with a dict of arguments."""
    task = dict(task)
    variant = Variant(**task.pop("variant"))
    return measure_window(variant, **task)


def _runner(isolate: bool) -> Callable[[Callable[[Dict[str, Any]], Any], Dict[str, Any]], Any]:
    """:func:`_run_isolated` when ``isolate``, else a call in this process."""
    return _run_isolated if isolate else (lambda function, task: function(task))


def _run_isolated(function: Callable[[Dict[str, Any]], Any], task: Dict[str, Any]) -> Any:
    """Run ``function(task)`` in a fresh spawned Python process and return its result."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, task).result()


class BusyCores:
    """Context manager: ``count`` other processes, each keeping one core busy, while inside.

    Each is a Python interpreter spinning in an empty loop (no memory traffic), started on
    entry and killed on exit. On POSIX systems it runs under a shell in its own session, so
    that it is not a child of this process: the engine counts its own child processes as its
    own work (:func:`~EoFormerSegmentationLib.cpu_threads.free_cores`), another program's
    load is what is simulated here.
    """

    def __init__(self, count: int) -> None:
        self.count = max(0, int(count))
        self._processes: List[Any] = []

    def __enter__(self) -> BusyCores:
        import subprocess

        spin = [sys.executable, "-c", "while True: pass"]
        for _ in range(self.count):
            if os.name == "posix":
                command = ["/bin/sh", "-c", shlex.join(spin) + " & wait"]
                process = subprocess.Popen(command, start_new_session=True)  # noqa: S603
            else:
                process = subprocess.Popen(spin)  # noqa: S603
            self._processes.append(process)
        if self._processes:
            time.sleep(0.2)  # let them get scheduled before the timing starts
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for process in self._processes:
            if os.name == "posix":
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # the shell and its spinner
                except ProcessLookupError:
                    pass
            else:
                process.kill()
        for process in self._processes:
            process.wait()
        self._processes.clear()


def measure_matmul_peak(
    threads: Optional[int] = None, size: int = 2048, repeats: int = 6
) -> Dict[str, Any]:
    """The best float32 matrix-product throughput of this CPU, in this process.

    Times ``torch.mm`` of two ``size x size`` float32 matrices (2 * size^3 FLOPs, the
    convention of the table's GFLOP column) ``repeats`` times after one warm-up product and
    keeps the fastest: the practical peak that the network's convolutions and matrix products
    are compared with.

    Returns:
        ``{"gflops", "size", "threads", "runs_s"}``.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    generator = torch.Generator().manual_seed(DEFAULT_SEED)
    left = torch.randn(size, size, generator=generator)
    right = torch.randn(size, size, generator=generator)
    result = torch.empty(size, size)
    torch.mm(left, right, out=result)
    runs = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        torch.mm(left, right, out=result)
        runs.append(time.perf_counter() - start)
    return {
        "gflops": 2.0 * size**3 / min(runs) / 1e9,
        "size": size,
        "threads": torch.get_num_threads(),
        "runs_s": runs,
    }


def _measure_matmul_task(task: Dict[str, Any]) -> Dict[str, Any]:
    return measure_matmul_peak(**task)


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def _case_images(case_dir: Path) -> Dict[str, Path]:
    from EoFormerSegmentationLib.training.datasets import find_case_files

    return dict(find_case_files(case_dir, require_label=False).images)


def measure_end_to_end(
    case_dir: os.PathLike,
    model_path: os.PathLike,
    *,
    device: str = "cpu",
    runs: int = 2,
    threads: Optional[int] = None,
    output_dir: Optional[os.PathLike] = None,
) -> Dict[str, Any]:
    """Time whole-case segmentations, files to written output, in this process.

    Calls :func:`EoFormerSegmentationLib.engine.segment_files` ``runs`` times on the case's
    four images, writing (and overwriting) one output file.

    Args:
        case_dir: folder with the T1, T1ce, T2 and FLAIR images (names as ``eoformer segment``
            accepts them in a case folder).
        model_path: checkpoint to segment with.
        device: ``cpu`` or ``cuda``.
        runs: calls of ``segment_files`` (the first is cold).
        threads: ``torch.set_num_threads`` for this process.
        output_dir: where the segmentation is written (default: a temporary folder).

    Returns:
        A dict with the fields of :class:`EndToEndResult`.
    """
    import torch

    from EoFormerSegmentationLib.engine import segment_files

    if threads is not None:
        torch.set_num_threads(int(threads))
    images = _case_images(Path(case_dir))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="eoformer-benchmark-") as temporary:
        output = Path(output_dir or temporary) / "benchmark_segmentation.nii.gz"
        times: List[float] = []
        result = None
        for _ in range(max(1, int(runs))):
            start = time.perf_counter()
            result = segment_files(
                images["t1"],
                images["t1ce"],
                images["t2"],
                images["flair"],
                output,
                model_path=model_path,
                device=device,
                overwrite=True,
            )
            _synchronize(device)
            times.append(time.perf_counter() - start)
        if not output.is_file():
            raise RuntimeError(f"segment_files wrote no output at {output}")
    if cuda:
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_kib = _proc_status_kib("VmHWM")
        peak_mib = peak_kib / 1024.0 if peak_kib is not None else None
    timings = dict(getattr(result, "timings_s", {}) or {})
    report = result.report() if result is not None else None
    return {
        "case": str(case_dir),
        "model": str(model_path),
        "shape": _image_shape(images["t1ce"]),
        "runs_s": times,
        "stage_timings_s": {key: _json_number(value) for key, value in timings.items()},
        "peak_memory_mib": peak_mib,
        "report": json.loads(json.dumps(report, default=str)) if report else None,
    }


def _image_shape(path: Path) -> List[int]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return [int(size) for size in reader.GetSize()]


def write_resampled_case(
    case_dir: os.PathLike, folder: os.PathLike, spacing_mm: float = 0.5
) -> Path:
    """The case's four images resampled to ``spacing_mm`` isotropic, as a scanner might write them.

    Linear interpolation onto a grid covering the same field of view
    (:func:`~EoFormerSegmentationLib.geometry.network_grid`), stored 16-bit (as scanners do) in
    uncompressed NIfTI files ``t1.nii``... in ``folder``; for the fine-grid whole-case row.

    Returns:
        ``folder``.
    """
    import SimpleITK as sitk

    from EoFormerSegmentationLib.geometry import network_grid, resample_onto

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for sequence, path in _case_images(Path(case_dir)).items():
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        resampled = resample_onto(image, network_grid(image, spacing_mm))
        sitk.WriteImage(
            sitk.Cast(resampled, sitk.sitkInt16), str(folder / f"{sequence}.nii"), False
        )
    return folder


def measure_throughput(
    case_dir: os.PathLike,
    model_path: os.PathLike,
    *,
    copies: int = 6,
    device: str = "cpu",
    threads: Optional[int] = None,
    workers: int = 1,
) -> Dict[str, Any]:
    """Cases per hour of ``segment_cohort`` (``eoformer segment --cases``), in this process.

    Makes a cohort of ``copies`` case folders that link to the same four images and segments
    it into a temporary folder, with ``workers`` processes reading ahead.

    Returns:
        A dict with the fields of :class:`ThroughputResult` but ``label``.
    """
    import torch

    from EoFormerSegmentationLib.cohort import segment_cohort
    from EoFormerSegmentationLib.training.datasets import _image_suffix

    if threads is not None:
        torch.set_num_threads(int(threads))
    images = _case_images(Path(case_dir))
    with tempfile.TemporaryDirectory(prefix="eoformer-throughput-") as temporary:
        cohort = Path(temporary) / "cases"
        for index in range(max(1, int(copies))):
            folder = cohort / f"case_{index:03d}"
            folder.mkdir(parents=True)
            for sequence, path in images.items():
                (folder / f"{sequence}{_image_suffix(path)}").symlink_to(Path(path).resolve())
        summary = segment_cohort(
            cohort,
            Path(temporary) / "results",
            model_path=model_path,
            output_format="nii.gz",
            device=device,
            workers=workers,
        )
    if summary.failed:
        case, error = summary.failed[0]
        raise RuntimeError(f"{len(summary.failed)} case(s) failed, {case}: {error}")
    peak_kib = _proc_status_kib("VmHWM")
    return {
        "threads": torch.get_num_threads(),
        "cases": summary.segmented,
        "seconds": summary.seconds,
        "cases_per_hour": summary.cases_per_hour,
        "peak_memory_mib": peak_kib / 1024.0 if peak_kib is not None else None,
    }


def _measure_throughput_task(task: Dict[str, Any]) -> Dict[str, Any]:
    task = dict(task)
    return measure_throughput(task.pop("case_dir"), task.pop("model_path"), **task)


def _json_number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _measure_end_to_end_task(task: Dict[str, Any]) -> Dict[str, Any]:
    task = dict(task)
    return measure_end_to_end(task.pop("case_dir"), task.pop("model_path"), **task)


def _random_weight_checkpoint(folder: Path, eoformer_config: Optional[Dict[str, Any]]) -> Path:
    from EoFormerSegmentationLib.models import save_checkpoint

    model = build_network("eoformer", eoformer_config=eoformer_config)
    card = {
        "name": "random-weights-benchmark",
        "description": "randomly initialised EoFormer, for timing only (segmentations are "
        "meaningless)",
    }
    return save_checkpoint(folder / _RANDOM_WEIGHTS_FILE, model, card)


# --------------------------------------------------------------------------------------------
# The whole benchmark
# --------------------------------------------------------------------------------------------


def machine_info(device: str = "cpu", threads: Optional[int] = None) -> Dict[str, Any]:
    """CPU model, cores, threads, library versions and GPU of this machine."""
    import torch

    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_native_bfloat16": cpu_has_native_bfloat16(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = None
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(device)
        info.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
            float32_matmul_precision=torch.get_float32_matmul_precision(),
        )
    return info


def _cpu_seconds() -> Tuple[Optional[float], float]:
    """(CPU seconds used by the whole system so far, or None where unknown; CPU seconds used
    by this process and its finished children)."""
    from EoFormerSegmentationLib.cpu_threads import machine_busy_ticks

    own = os.times()
    own_seconds = own.user + own.system + own.children_user + own.children_system
    try:
        ticks = machine_busy_ticks()
        if ticks is None:
            return None, own_seconds
        return ticks[0] / os.sysconf("SC_CLK_TCK"), own_seconds
    except (ValueError, IndexError, AttributeError):
        return None, own_seconds


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16; Linux only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def _compile_available(device: str) -> Tuple[bool, str]:
    """Whether ``torch.compile`` can run here, and why not."""
    import shutil

    import torch

    if not hasattr(torch, "compile"):
        return False, "this PyTorch has no torch.compile"
    if sys.version_info >= (3, 14) and not device.startswith("cuda"):
        return False, "torch.compile does not support this Python version"
    if not device.startswith("cuda") and not any(
        shutil.which(compiler) for compiler in ("g++", "c++", "clang++", "cl")
    ):
        return False, "no C++ compiler for torch.compile's CPU back end"
    return True, ""


def _relative_difference(output_path: str, reference_path: str) -> float:
    import torch

    output = torch.load(output_path, weights_only=True).double()
    reference = torch.load(reference_path, weights_only=True).double()
    value_range = float(reference.max() - reference.min()) or 1.0
    return float((output - reference).abs().max()) / value_range


def run_benchmark(
    *,
    device: str = "cpu",
    networks: Sequence[str] = tuple(NETWORKS),
    variants: Optional[Sequence[Variant]] = None,
    window: int = 128,
    threads: Optional[int] = 2,
    warmup: Optional[int] = None,
    repeats: Optional[int] = None,
    time_budget_s: float = 20.0,
    compile_rows: Optional[bool] = None,
    eoformer_config: Optional[Dict[str, Any]] = None,
    end_to_end: bool = True,
    case_dir: Optional[os.PathLike] = None,
    model_path: Optional[os.PathLike] = None,
    end_to_end_runs: Optional[int] = None,
    isolate: Optional[bool] = None,
    seed: int = DEFAULT_SEED,
    progress: Optional[Callable[[float, str], None]] = None,
    matmul_peak: Optional[bool] = None,
    contention: Optional[bool] = None,
    fine_grid_mm: Optional[float] = 0.5,
    throughput_cases: int = 6,
    raw_case_dir: Optional[os.PathLike] = None,
) -> BenchmarkResult:
    """Measure every row on the same input and return the table's data.

    Args:
        device: ``cpu`` or ``cuda`` (``cuda:N``).
        networks: keys of :data:`NETWORKS` to include.
        variants: the rows (default: :func:`plan_variants`).
        window: cubic window size in voxels (a multiple of 32 for SwinUNETR, of 16 for UNETR).
        threads: PyTorch CPU threads of every measuring process (``None``: PyTorch's default).
        warmup: untimed forwards per row (default 1 on CPU, 3 on CUDA).
        repeats: at most this many timed forwards per row (default 5 on CPU, 20 on CUDA).
        time_budget_s: a row stops timing once this many seconds are spent (after 2 runs).
        compile_rows: add ``torch.compile`` rows (default: on CUDA only; on CPU compiling
            EoFormer's cache-blocked inference loops takes minutes).
        eoformer_config: extra EoFormer keyword arguments (reduced widths for quick runs).
        end_to_end: also segment a whole case through the engine.
        case_dir: the case for ``end_to_end`` (default: the repository's real case
            ``../shared/data/real/TCGA-FG-6692``).
        model_path: checkpoint for ``end_to_end`` (default: a random-weight EoFormer with
            ``eoformer_config``, written to a temporary folder).
        end_to_end_runs: whole-case runs (default 2 on CPU, 4 on CUDA; the first is cold).
        isolate: measure each row in a fresh spawned process (default: on CPU yes, on CUDA
            no). The whole-case runs always get a fresh process when ``isolate`` is not False.
        seed: seed of the input and the weights.
        progress: called with (fraction done, message) before each measurement.
        matmul_peak: measure this CPU's float32 matrix-product peak first and give every row's
            GFLOP/s as a share of it (default: on CPU).
        contention: time the fused EoFormer and SegResNet again while another process keeps
            one core busy (default: on CPU).
        fine_grid_mm: with ``end_to_end``, also segment the case resampled to this spacing
            (a fine native grid: memory bound); ``None`` leaves it out.
        throughput_cases: with ``end_to_end``, segment a cohort of this many copies of the
            case for cases per hour, with ``threads`` threads and, where the machine has more
            cores, with all of them; 0 leaves it out.
        raw_case_dir: with ``end_to_end``, also segment this case of raw clinical scans
            (skull and scalp on, thick slices, each sequence on its own grid) once in a fresh
            process, from files read to segmentation written: brain extraction,
            registration and model loading included.

    Returns:
        The :class:`BenchmarkResult`.
    """
    import torch

    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device")
    warmup = (3 if cuda else 1) if warmup is None else warmup
    repeats = (20 if cuda else 5) if repeats is None else repeats
    isolate_end_to_end = isolate is not False
    isolate = (not cuda) if isolate is None else isolate
    end_to_end_runs = (4 if cuda else 2) if end_to_end_runs is None else end_to_end_runs
    in_channels, out_channels = 4, 3
    notes: List[str] = []

    if compile_rows is None:
        compile_rows = cuda
        if not cuda:
            notes.append(
                "torch.compile rows are not measured on CPU by default: compiling the "
                "inference path takes minutes there (--compile adds them)."
            )
    if compile_rows:
        available, reason = _compile_available(device)
        if not available:
            compile_rows = False
            notes.append(f"torch.compile rows skipped: {reason}.")
    if "swinunetr" in networks and window < 64:
        networks = [name for name in networks if name != "swinunetr"]
        notes.append(
            f"SwinUNETR left out: its bottleneck needs a window of at least 64 voxels "
            f"(got {window})."
        )
    if variants is None:
        variants = plan_variants(
            device, networks, compile_rows, cpu_bfloat16=not cuda and cpu_has_native_bfloat16()
        )
    variants = list(variants)
    if any(v.network == "eoformer" for v in variants) and not any(v.is_reference for v in variants):
        variants.insert(0, Variant("eoformer", "unfused"))

    machine = machine_info(device, threads)
    wall_start = time.perf_counter()
    system_start, own_start = _cpu_seconds()
    matmul_peak = (not cuda) if matmul_peak is None else matmul_peak
    contention = (not cuda) if contention is None else contention
    peak_gflops = None
    if matmul_peak and not cuda:
        task = {"threads": threads}
        peak = _runner(isolate)(_measure_matmul_task, task)
        peak_gflops = peak["gflops"]
        machine["matmul_peak_gflops"] = round(peak_gflops, 1)
        machine["matmul_peak_size"] = peak["size"]
    settings = {
        "device": device,
        "window": [1, in_channels, window, window, window],
        "warmup": warmup,
        "max_repeats": repeats,
        "time_budget_s": time_budget_s,
        "seed": seed,
        "isolated_processes": isolate,
        "eoformer_config": eoformer_config or {},
    }
    steps = len(variants) + (1 if end_to_end else 0)
    rows: List[BenchmarkRow] = []
    flops_by_network: Dict[str, int] = {}
    reference_output: Optional[str] = None

    with tempfile.TemporaryDirectory(prefix="eoformer-benchmark-") as temporary:
        folder = Path(temporary)
        outputs: Dict[int, str] = {}
        for index, variant in enumerate(variants):
            row = BenchmarkRow(variant.model_label, variant.variant_label, asdict(variant))
            rows.append(row)
            if progress is not None:
                progress(index / steps, f"{row.model} ({row.variant})")
            # Parameters and FLOPs: from the eager network, layout and precision do not matter.
            try:
                model = build_network(
                    variant.network, window, in_channels, out_channels, eoformer_config, seed
                )
                if variant.fusion == "fused":
                    model.fuse()
                row.parameters_m = count_parameters(model) / 1e6
                flop_key = f"{variant.network}:{variant.fusion}"
                if flop_key not in flops_by_network:
                    flops_by_network[flop_key] = count_flops(
                        model,
                        (1, in_channels, window, window, window),
                        fused_on_every_forward=variant.fusion == "refused_every_forward",
                    )
                row.gflop = flops_by_network[flop_key] / 1e9
                del model
            except Exception as error:  # reported in the row; the other rows still run
                row.error = f"{type(error).__name__}: {error}".strip()[:300]
                continue

            output_path = (
                str(folder / f"output_{index}.pt") if variant.network == "eoformer" else None
            )
            task = {
                "variant": asdict(variant),
                "device": device,
                "window": window,
                "in_channels": in_channels,
                "out_channels": out_channels,
                "eoformer_config": eoformer_config,
                "threads": threads,
                "warmup": warmup,
                "repeats": repeats,
                "time_budget_s": time_budget_s,
                "seed": seed,
                "output_path": output_path,
            }
            try:
                measured = _runner(isolate)(_measure_window_task, task)
            except Exception as error:  # a failing row (e.g. out of memory) must not end the run
                row.error = f"{type(error).__name__}: {error}".strip()[:300]
                if cuda:
                    torch.cuda.empty_cache()
                continue
            for key, value in measured.items():
                setattr(row, key, value)
            if output_path is not None:
                outputs[index] = output_path
                if variant.is_reference:
                    reference_output = output_path
            if row.latency_s and row.gflop is not None:
                row.tflops = row.gflop / row.latency_s / 1000.0
                if not cuda and peak_gflops:
                    row.peak_tflops = peak_gflops / 1000.0
                    row.percent_of_peak = 100.0 * row.tflops / row.peak_tflops
                if cuda:
                    math = variant.precision
                    if math == "float32" and torch.backends.cudnn.allow_tf32:
                        math = "tf32"
                    row.peak_tflops = device_peak_tflops(machine.get("gpu", ""), math)
                    if row.peak_tflops:
                        row.percent_of_peak = 100.0 * row.tflops / row.peak_tflops
            if contention and not cuda and variant in _CONTENTION_ROWS and row.latency_s:
                if progress is not None:
                    progress(index / steps, f"{row.model} ({row.variant}), one core busy")
                task.update(busy_cores=1, output_path=None)
                try:
                    busy = _runner(isolate)(_measure_window_task, task)
                    row.latency_busy_core_s = busy["latency_s"]
                    row.busy_core_slowdown = busy["latency_s"] / row.latency_s
                    task.update(adapt_threads=True)
                    adapted = _runner(isolate)(_measure_window_task, task)
                    row.latency_busy_core_adapted_s = adapted["latency_s"]
                    row.busy_core_adapted_slowdown = adapted["latency_s"] / row.latency_s
                except Exception as error:  # the row's own numbers stand
                    notes.append(f"{row.model}, one core busy: not measured ({error}).")
        if reference_output is not None:
            for index, output_path in outputs.items():
                rows[index].max_relative_difference = _relative_difference(
                    output_path, reference_output
                )

        end_to_end_result = None
        extra_cases: List[EndToEndResult] = []
        throughput: List[ThroughputResult] = []
        if end_to_end:
            if progress is not None:
                progress(len(variants) / steps, "whole case, end to end")
            end_to_end_result = _end_to_end(
                folder,
                device,
                case_dir,
                model_path,
                eoformer_config,
                end_to_end_runs,
                threads,
                isolate_end_to_end,
            )
            target = next(
                (
                    row
                    for row, variant in zip(rows, variants)
                    if variant == Variant("eoformer", "fused")
                ),
                None,
            )
            if target is not None and end_to_end_result.error is None:
                target.end_to_end_s = end_to_end_result.cold_s
                target.end_to_end_warm_s = end_to_end_result.warm_s
            end_to_end_result.label = "as given"
            if end_to_end_result.error is None:
                extra_cases, throughput = _whole_case_extras(
                    folder,
                    device,
                    Path(end_to_end_result.case),
                    Path(model_path or folder / _RANDOM_WEIGHTS_FILE),
                    threads,
                    isolate_end_to_end,
                    fine_grid_mm,
                    throughput_cases,
                    progress,
                    raw_case_dir,
                )
    if progress is not None:
        progress(1.0, "done")
    contention_notes: List[str] = []
    system_end, own_end = _cpu_seconds()
    wall_s = time.perf_counter() - wall_start
    if system_start is not None and system_end is not None:
        other_s = max(0.0, (system_end - system_start) - (own_end - own_start))
        share = other_s / (wall_s * (os.cpu_count() or 1))
        machine["other_processes_cpu_share"] = round(share, 3)
        if share > 0.05:
            contention_notes.append(
                f"Other processes kept {100 * share:.0f}% of the {os.cpu_count()} CPUs busy "
                "during this run: timings may be longer than on an idle machine."
            )
    notes += _standard_notes(device, machine, isolate, end_to_end_result, model_path)
    notes += _extra_notes(rows, extra_cases, throughput, machine)
    notes += contention_notes
    return BenchmarkResult(
        machine, settings, rows, end_to_end_result, notes, extra_cases, throughput
    )


#: Rows timed again with one core busy (:func:`run_benchmark`'s ``contention``).
_CONTENTION_ROWS = (Variant("eoformer", "fused"), Variant("segresnet"))

_RANDOM_WEIGHTS_FILE = "random-weights-benchmark.pt"


def _whole_case_extras(
    folder: Path,
    device: str,
    case_dir: Path,
    model_path: Path,
    threads: Optional[int],
    isolate: bool,
    fine_grid_mm: Optional[float],
    throughput_cases: int,
    progress: Optional[Callable[[float, str], None]],
    raw_case_dir: Optional[os.PathLike] = None,
) -> Tuple[List[EndToEndResult], List[ThroughputResult]]:
    """The same case on a fine grid, a case of raw clinical scans, and cohorts of copies of
    the case (cases per hour)."""
    run = _runner(isolate)

    def timed_once(
        case: Path, label: str, at: float, prepare: Optional[Callable[[], Path]] = None
    ) -> EndToEndResult:
        """One run of ``case`` (or of the case ``prepare()`` writes from it), reported under
        ``case``; a failure goes into the table instead of ending the benchmark."""
        result = EndToEndResult(case=str(case), model=str(model_path), label=label)
        if progress is not None:
            progress(at, f"whole case, {label}")
        try:
            task = {
                "case_dir": str(prepare() if prepare is not None else case),
                "model_path": str(model_path),
                "device": device,
                "runs": 1,
                "threads": threads,
            }
            result = replace(result, **run(_measure_end_to_end_task, task))
            result.case = str(case)
        except Exception as error:
            result.error = f"{type(error).__name__}: {error}".strip()[:300]
        return result

    extra_cases: List[EndToEndResult] = []
    if raw_case_dir is not None:
        label = "raw scans, brain extraction and registration included"
        extra_cases.append(timed_once(Path(raw_case_dir), label, 0.93))
    if fine_grid_mm:
        extra_cases.append(
            timed_once(
                case_dir,
                f"resampled to {fine_grid_mm:g} mm",
                0.95,
                lambda: write_resampled_case(case_dir, folder / "fine_grid", fine_grid_mm),
            )
        )
    throughput: List[ThroughputResult] = []
    if throughput_cases > 0:
        thread_counts = [threads]
        cores = os.cpu_count() or 1
        if not device.startswith("cuda") and threads is not None and cores > threads:
            thread_counts.append(cores)
        for count in thread_counts:
            where = "GPU" if device.startswith("cuda") else f"{count or 'default'} CPU threads"
            label = f"{throughput_cases} copies of the case, {where}"
            if progress is not None:
                progress(0.97, f"cohort, {label}")
            entry = ThroughputResult(label=label, threads=count)
            task = {
                "case_dir": str(case_dir),
                "model_path": str(model_path),
                "copies": throughput_cases,
                "device": device,
                "threads": count,
            }
            try:
                for key, value in run(_measure_throughput_task, task).items():
                    setattr(entry, key, value)
            except Exception as error:
                entry.error = f"{type(error).__name__}: {error}".strip()[:300]
            throughput.append(entry)
    return extra_cases, throughput


def _extra_notes(
    rows: Sequence[BenchmarkRow],
    extra_cases: Sequence[EndToEndResult],
    throughput: Sequence[ThroughputResult],
    machine: Dict[str, Any],
) -> List[str]:
    notes = []
    if machine.get("matmul_peak_gflops"):
        notes.append(
            f"GFLOP/s and % of matmul peak: the row's GFLOP over its latency, against the best "
            f"float32 torch.mm of two {machine.get('matmul_peak_size')}^2 matrices on the same "
            f"threads in this run ({machine['matmul_peak_gflops']:.0f} GFLOP/s); element-wise "
            "work is not counted, so 100 % is out of reach."
        )
    if any(row.latency_busy_core_s for row in rows):
        notes.append(
            "1 core busy: latency while another process spins on one core (as a UI thread or "
            "another program does), same threads; adapted: threads lowered to the cores left "
            "free, as the engine does (its 0.1 s load sample included); in brackets the ratio "
            "to the quiet latency."
        )
    if extra_cases or throughput:
        notes.append(
            "Whole cases: files read to segmentation written, each in a fresh process; the "
            "resampled case is the same case interpolated onto the finer grid and stored "
            "16-bit; the raw scans are segmented once, cold (model loading, brain extraction "
            "and registration included); peak memory is the process's peak resident set "
            "size. Cohorts: "
            "segment_cohort (eoformer segment --cases) on copies of the case, one process "
            "reading ahead; cases per hour over the whole run, model loading included."
        )
    return notes


def _end_to_end(
    folder: Path,
    device: str,
    case_dir: Optional[os.PathLike],
    model_path: Optional[os.PathLike],
    eoformer_config: Optional[Dict[str, Any]],
    runs: int,
    threads: Optional[int],
    isolate: bool,
) -> EndToEndResult:
    if case_dir is None:
        case_dir = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
        case_dir = (case_dir / "TCGA-FG-6692").resolve()
    case_dir = Path(case_dir)
    result = EndToEndResult(case=str(case_dir), model=str(model_path or "random weights"))
    try:
        if model_path is None:
            model_path = _random_weight_checkpoint(folder, eoformer_config)
        task = {
            "case_dir": str(case_dir),
            "model_path": str(model_path),
            "device": device,
            "runs": runs,
            "threads": threads,
        }
        measured = _runner(isolate)(_measure_end_to_end_task, task)
    except Exception as error:  # reported in the table instead of ending the run
        result.error = f"{type(error).__name__}: {error}".strip()[:300]
        return result
    measured["model"] = result.model if result.model == "random weights" else measured["model"]
    return replace(result, **measured)


def _standard_notes(
    device: str,
    machine: Dict[str, Any],
    isolate: bool,
    end_to_end_result: Optional[EndToEndResult],
    model_path: Optional[os.PathLike],
) -> List[str]:
    cuda = device.startswith("cuda")
    notes = [
        "Params: of the network as run (fused rows after fuse(), which merges the EoS/EoL "
        "branches; checkpoints store the unfused weights).",
        "GFLOP: torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per multiply-add, "
        "convolutions and matrix products only (element-wise ops, norms, softmax not counted).",
        "Latency: median of timed eval forwards of one window under torch.inference_mode(), "
        "after warm-up; slow rows stop after a time budget (runs listed in the JSON).",
    ]
    if cuda:
        notes.append(
            "Peak memory: torch.cuda.max_memory_allocated during the forwards (weights, "
            "input and activations)."
        )
        gpu = machine.get("gpu", "")
        known = any(key.lower() in gpu.lower() for key in DEVICE_PEAK_TFLOPS)
        notes.append(
            "% of peak: against the dense (no sparsity) tensor-core peak of the row's math from "
            "NVIDIA's data sheet: bf16/fp16 autocast rows against BF16/FP16, fp32 rows against "
            "TF32 (PyTorch lets cuDNN convolutions use TF32 by default: "
            f"cudnn.allow_tf32={machine.get('cudnn_allow_tf32')}; matmul precision "
            f"'{machine.get('float32_matmul_precision')}')."
            + ("" if known else f" No peak is known for '{gpu}'.")
        )
    else:
        notes.append(
            "Peak memory: growth of the resident set size during the forwards over the RSS "
            "after building the network and input (activations and workspaces; weights and "
            "input excluded), "
            + (
                "each row in a fresh process."
                if isolate
                else "all rows in one process (allocator caches may hide growth)."
            )
        )
    notes.append(
        "Max rel. diff: max |output - unfused fp32 output| / range of the unfused output, same "
        "weights and input."
    )
    notes.append(
        "EoFormer, re-fused every forward: our network with the authors' eval behaviour of "
        "recomputing the fused EoS/EoL kernels on every forward pass."
    )
    if end_to_end_result is not None:
        if end_to_end_result.error:
            notes.append(f"End to end: not measured ({end_to_end_result.error}).")
        else:
            stages = ", ".join(
                f"{name} {value:.2f} s" if isinstance(value, float) else f"{name} {value}"
                for name, value in end_to_end_result.stage_timings_s.items()
            )
            weights = "random weights" if model_path is None else str(model_path)
            warm = end_to_end_result.warm_s
            memory = end_to_end_result.peak_memory_mib
            notes.append(
                f"End to end: {Path(end_to_end_result.case).name}, files in to segmentation "
                f"written, engine.segment_files with the fused EoFormer ({weights}); first "
                f"call {end_to_end_result.cold_s:.2f} s in a fresh process"
                + (f", then {warm:.2f} s (median of warm calls)" if warm is not None else "")
                + (f"; stages of the last call: {stages}" if stages else "")
                + (
                    f"; peak {'GPU memory allocated' if cuda else 'process RSS'} {memory:.0f} MiB"
                    if memory is not None
                    else ""
                )
                + "."
            )
    return notes


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------


def _format_number(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def format_table(result: BenchmarkResult, markdown: bool = False) -> str:
    """The benchmark as a plain-text (aligned) or Markdown table, machine line and footnotes."""
    cuda = str(result.settings.get("device", "cpu")).startswith("cuda")
    window = result.settings["window"]
    headers = [
        "Model",
        "Variant",
        "Params (M)",
        f"GFLOP / {window[2]}^3",
        "Latency (s)",
        "Runs",
        "Peak mem (MiB)",
    ]
    matmul = not cuda and any(row.percent_of_peak is not None for row in result.rows)
    busy = not cuda and any(row.latency_busy_core_s is not None for row in result.rows)
    if cuda:
        headers += ["TFLOP/s", "% of peak"]
    elif matmul:
        headers += ["GFLOP/s", "% of matmul peak"]
    if busy:
        headers += ["Latency, 1 core busy (s)", "1 core busy, adapted (s)"]
    headers += ["Max rel. diff", "End to end (s)"]
    table: List[List[str]] = []
    for row in result.rows:
        if row.error:
            cells = [row.model, row.variant, _format_number(row.parameters_m)]
            cells += [_format_number(row.gflop), f"failed: {row.error[:60]}"]
            cells += [""] * (len(headers) - len(cells))
            table.append(cells)
            continue
        end_to_end = "-"
        if row.end_to_end_s is not None:
            end_to_end = f"{row.end_to_end_s:.2f}"
            if row.end_to_end_warm_s is not None:
                end_to_end += f" ({row.end_to_end_warm_s:.2f} warm)"
        cells = [
            row.model,
            row.variant,
            f"{row.parameters_m:.2f}" if row.parameters_m is not None else "-",
            _format_number(row.gflop, 4),
            _format_number(row.latency_s, 3),
            str(len(row.latency_runs_s)),
            f"{row.peak_memory_mib:.0f}" if row.peak_memory_mib is not None else "-",
        ]
        if cuda:
            cells += [
                _format_number(row.tflops, 3),
                f"{row.percent_of_peak:.1f}" if row.percent_of_peak is not None else "-",
            ]
        elif matmul:
            cells += [
                _format_number(row.tflops * 1000.0 if row.tflops is not None else None, 3),
                f"{row.percent_of_peak:.0f}" if row.percent_of_peak is not None else "-",
            ]
        if busy:
            cells += [
                f"{_format_number(latency)} (x{slowdown:.2f})" if latency is not None else "-"
                for latency, slowdown in (
                    (row.latency_busy_core_s, row.busy_core_slowdown),
                    (row.latency_busy_core_adapted_s, row.busy_core_adapted_slowdown),
                )
            ]
        cells += [
            f"{row.max_relative_difference:.1e}"
            if row.max_relative_difference is not None
            else "-",
            end_to_end,
        ]
        table.append(cells)

    machine = result.machine
    machine_line = (
        f"Machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores), "
        f"{machine.get('torch_threads')} PyTorch threads, torch {machine.get('torch')}, "
        f"MONAI {machine.get('monai')}, Python {machine.get('python')}"
    )
    if cuda:
        machine_line += (
            f", GPU {machine.get('gpu')} ({machine.get('gpu_memory_gib')} GiB, "
            f"CUDA {machine.get('cuda')}, cuDNN {machine.get('cudnn')})"
        )
    machine_line += (
        f"; device {result.settings.get('device')}, input 1x{window[1]}x{window[2]}^3 float32."
    )

    lines = _table_lines(headers, table, markdown)
    whole_headers, whole_table = _whole_case_table(result)
    if whole_table:
        lines.append("")
        lines += _table_lines(whole_headers, whole_table, markdown)
    lines.append("")
    lines.append(machine_line)
    if markdown:
        lines.append("")
    lines += [f"{'-' if markdown else '*'} {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _table_lines(headers: List[str], table: List[List[str]], markdown: bool) -> List[str]:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join(" --- " for _ in headers) + "|")
        return lines + ["| " + " | ".join(cells) + " |" for cells in table]
    widths = [
        max(len(headers[i]), *(len(cells[i]) for cells in table)) for i in range(len(headers))
    ]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths))]
    lines.append("  ".join("-" * width for width in widths))
    return lines + [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
        for cells in table
    ]


def _whole_case_table(result: BenchmarkResult) -> Tuple[List[str], List[List[str]]]:
    """Whole cases (time, peak memory, stages) and cohorts (cases per hour), one row each."""
    headers = [
        "Whole case",
        "Voxels",
        "Time (s)",
        "Peak memory (MiB)",
        "Stages of the last run (s)",
    ]
    table: List[List[str]] = []
    runs = ([result.end_to_end] if result.end_to_end is not None else []) + list(result.whole_cases)
    for run in runs:
        name = f"{Path(run.case).name}, {run.label}" if run.label else Path(run.case).name
        if run.error:
            table.append([name, "-", f"failed: {run.error[:60]}", "-", "-"])
            continue
        time_cell = f"{run.cold_s:.2f}" if run.cold_s is not None else "-"
        if run.warm_s is not None:
            time_cell += f" cold, {run.warm_s:.2f} warm"
        stages = ", ".join(
            f"{key} {value:.2f}"
            for key, value in run.stage_timings_s.items()
            if isinstance(value, float)
        )
        table.append(
            [
                name,
                " x ".join(str(n) for n in run.shape) if run.shape else "-",
                time_cell,
                f"{run.peak_memory_mib:.0f}" if run.peak_memory_mib is not None else "-",
                stages or "-",
            ]
        )
    for cohort in result.throughput:
        name = f"cohort: {cohort.label}"
        if cohort.error:
            table.append([name, "-", f"failed: {cohort.error[:60]}", "-", "-"])
            continue
        table.append(
            [
                name,
                "-",
                f"{cohort.seconds:.1f} for {cohort.cases} cases",
                f"{cohort.peak_memory_mib:.0f}" if cohort.peak_memory_mib is not None else "-",
                f"{cohort.cases_per_hour:.0f} cases per hour" if cohort.cases_per_hour else "-",
            ]
        )
    return headers, table
