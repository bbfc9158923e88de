"""Training EoFormer: data streams, optimisation, validation, checkpoints and resuming.

:func:`train` runs on one CPU or GPU, or on several GPUs (or CPU processes) when launched
with ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in the environment): each process
then trains a :class:`~torch.nn.parallel.DistributedDataParallel` replica on its own share of
the data stream (NCCL on CUDA, gloo on CPU) and only rank 0 validates and writes files.

A run folder holds:

- ``config.json``: the :class:`TrainingConfig` of the run;
- ``last.pt`` / ``best.pt``: model checkpoints with model cards (``last.json``, ``best.json``),
  written at every validation (``best`` = highest mean validation Dice);
- ``last_state.pt``: everything ``--resume`` needs (weights, optimiser, schedule position,
  gradient scaler, step, random states); an interrupted run loses at most one validation interval;
- ``log.csv``: step, loss, learning rate, validation Dice per region, samples seen, time.

The pieces used by fine-tuning (schedule, mixed precision, one optimisation step, validation
Dice) are public functions of this module, so that both share one implementation.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from EoFormerSegmentationLib import __version__
from EoFormerSegmentationLib.errors import Cancelled, InputError
from EoFormerSegmentationLib.labels import REGIONS
from EoFormerSegmentationLib.models import atomic_write, file_sha256, save_checkpoint
from EoFormerSegmentationLib.training.carvemix import MARGIN_MM
from EoFormerSegmentationLib.training.datasets import (
    CaseCropStream,
    CaseFiles,
    discover_cases,
    load_case,
    stream_seed,
)
from EoFormerSegmentationLib.training.losses import RegionLoss
from EoFormerSegmentationLib.training.synthetic_stream import (
    EVALUATION_SEEDS,
    TRAINING_SEED_START,
    VALIDATION_SEED_START,
    SyntheticCropStream,
    check_training_seeds,
    generator_version,
    synthetic_case,
)
from EoFormerSegmentationLib.training.transforms import (
    THICK_SLICES_PROB,
    training_transforms,
    validation_transforms,
)

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "WarmupCosine",
    "MixedCropStream",
    "train",
    "resolve_device",
    "autocast_dtype",
    "autocast",
    "make_grad_scaler",
    "optimization_step",
    "validation_dice",
    "region_dice",
    "build_model",
    "environment_card",
    "LOG_COLUMNS",
]

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]

LOG_COLUMNS = (
    ["step", "loss", "lr"]
    + [f"val_dice_{region}" for region in REGIONS]
    + ["val_dice_mean", "samples", "elapsed_s", "data_wait_s", "time"]
)
"""Columns of ``log.csv``."""


@dataclass
class TrainingConfig:
    """Settings of a training run (saved as ``config.json`` in the run folder).

    Attributes:
        out_dir: the run folder.
        data: BraTS-layout data folders (see
            :mod:`~EoFormerSegmentationLib.training.datasets`); may be empty when
            ``synthetic_cases`` is set.
        val: validation data folders; when empty, ``val_fraction`` of ``data`` is held out,
            or, for synthetic-only runs, ``val_cases`` synthetic validation cases are made.
        synthetic_cases: number of synthetic training cases generated on the fly
            (0: none); seeds ``synthetic_seed`` ... ``synthetic_seed + synthetic_cases - 1``.
        synthetic_seed: first synthetic training seed (at least 1 000 000 by default; seeds
            0-999 are kept for held-out evaluation).
        synthetic_fraction: share of crops drawn from synthetic cases when both ``data`` and
            ``synthetic_cases`` are given.
        val_cases: at most this many validation cases are used for validation Dice.
        val_fraction: share of ``data`` held out for validation when ``val`` is empty.
        iterations: optimisation steps (the length of the learning-rate schedule).
        time_limit: minutes of training (validation included, start-up not); when set, the
            schedule advances with the time used or the steps done, whichever is ahead, and
            the run ends when either reaches its end.
        batch_size: crops per step and process.
        crops_per_case: crops drawn from each loaded or generated case (default 4 for
            synthetic cases, whose generation is costly, and 2 for cases on disk).
        crop: crop edge in voxels (multiple of 16).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps (default 5% of ``iterations``); cosine decay follows.
        grad_clip: maximum gradient norm (0: no clipping).
        amp: mixed precision: ``auto`` (bf16 on GPUs that support it, else fp16; none on
            CPU), ``bf16``, ``fp16`` or ``none``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        workers: DataLoader worker processes per training process.
        val_every: validate and checkpoint every this many steps (and at the end).
        log_every: write a ``log.csv`` row every this many steps.
        seed: base random seed (weights, augmentations, case order, validation split).
        model_config: keyword arguments of
            :class:`~EoFormerSegmentationLib.network.eoformer.EoFormer` (e.g. reduced widths).
        init: checkpoint whose weights (and configuration) start the run.
        name: model name written into the model cards (default: the run folder's name).
        cache: keep loaded cases in memory (small on-disk data sets only).
        overlap: sliding-window overlap of validation.
        augmentation: ``basic`` (flips, intensity jitter) or ``strong`` (nnU-Net-style
            rotation, scaling, gamma, blur, noise and simulated thick slices), see
            :func:`~EoFormerSegmentationLib.training.transforms.training_transforms`.
        carvemix: probability that a visited training case receives the tumour of another
            (:mod:`~EoFormerSegmentationLib.training.carvemix`); 0 turns it off.
        thick_slices: share of crops that ``strong`` augmentation degrades into a simulated
            thick-slice acquisition (:class:`~EoFormerSegmentationLib.training.transforms.
            RandThickSlicesd`).
    """

    out_dir: str
    data: List[str] = field(default_factory=list)
    val: List[str] = field(default_factory=list)
    synthetic_cases: int = 0
    synthetic_seed: int = TRAINING_SEED_START
    synthetic_fraction: float = 0.5
    val_cases: int = 8
    val_fraction: float = 0.1
    iterations: int = 20_000
    time_limit: Optional[float] = None
    batch_size: int = 2
    crops_per_case: Optional[int] = None
    crop: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-5
    warmup: Optional[int] = None
    grad_clip: float = 1.0
    amp: str = "auto"
    device: str = "auto"
    workers: int = 4
    val_every: int = 500
    log_every: int = 10
    seed: int = 0
    model_config: Dict[str, Any] = field(default_factory=dict)
    init: Optional[str] = None
    name: Optional[str] = None
    cache: bool = False
    overlap: float = 0.25
    augmentation: str = "basic"
    carvemix: float = 0.0
    thick_slices: float = THICK_SLICES_PROB

    def to_json(self) -> Dict[str, Any]:
        """The configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Dict[str, Any]) -> TrainingConfig:
        """Rebuild a configuration saved by :meth:`to_json` (unknown keys are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def warmup_steps(self) -> int:
        """Warm-up steps actually used."""
        if self.warmup is not None:
            return max(int(self.warmup), 0)
        return max(1, round(0.05 * self.iterations))


@dataclass
class TrainingResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        last_checkpoint: ``last.pt`` (``None`` on ranks other than 0).
        best_checkpoint: ``best.pt`` (``None`` on ranks other than 0).
        step: the last completed step.
        best_dice: best mean validation Dice (``None`` without validation).
        model: the trained network (unwrapped from DistributedDataParallel).
    """

    run_dir: Path
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    step: int
    best_dice: Optional[float]
    model: nn.Module


# --------------------------------------------------------------------------- pieces shared
class WarmupCosine:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to ``final``.

    Args:
        warmup: warm-up steps.
        total: total steps.
        final: factor reached at ``total``.
    """

    def __init__(self, warmup: int, total: int, final: float = 0.01) -> None:
        self.warmup = int(warmup)
        self.total = max(int(total), 1)
        self.final = float(final)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(self.total - self.warmup, 1)
        progress = min(max(step - self.warmup, 0) / span, 1.0)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's GPU under torchrun) when available, else CPU.

    Raises:
        InputError: CUDA was asked for but is not available.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    return resolved


def autocast_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """Mixed-precision type for ``amp`` (``auto``/``bf16``/``fp16``/``none``) on ``device``."""
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp != "auto":
        raise InputError(f"--amp {amp}: use auto, bf16, fp16 or none")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for full precision."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: Optional[torch.dtype]):
    """A gradient scaler for float16 on CUDA (``None`` otherwise: bf16 and fp32 need none)."""
    if device.type == "cuda" and dtype == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def optimization_step(
    model: nn.Module,
    batch: Dict[str, torch.Tensor],
    loss_function: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    scaler: Any = None,
    grad_clip: float = 1.0,
) -> float:
    """One step: forward under autocast, loss, backward, clipping, optimiser step.

    Args:
        model: the network (possibly DistributedDataParallel) in train mode.
        batch: ``{"image": (B, 4, X, Y, Z), "label": (B, 3, X, Y, Z)}``.
        loss_function: e.g. :class:`~EoFormerSegmentationLib.training.losses.RegionLoss`.
        optimizer: the optimiser.
        device: where to compute.
        amp_dtype: autocast type (``None``: full precision).
        scaler: gradient scaler for float16, or ``None``.
        grad_clip: maximum total gradient norm (0: none).

    Returns:
        The loss value (before the step).
    """
    non_blocking = device.type == "cuda"
    images = batch["image"].to(device, non_blocking=non_blocking)
    regions = batch["label"].to(device, non_blocking=non_blocking)
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp_dtype):
        logits = model(images)
    loss = loss_function(logits, regions)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
    return float(loss.detach())


def region_dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (the BraTS convention)."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


def _sliding_window_logits(
    model: nn.Module, image: torch.Tensor, roi: int, overlap: float, device: torch.device
) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(
        image,
        roi_size=(roi,) * 3,
        sw_batch_size=2,
        predictor=model,
        overlap=overlap,
        mode="gaussian",
        device=torch.device("cpu"),
        sw_device=device,
    )


@torch.no_grad()
def validation_dice(
    model: nn.Module,
    cases: Sequence[Dict[str, torch.Tensor]],
    roi: int = 128,
    overlap: float = 0.25,
    device: Optional[torch.device] = None,
    amp_dtype: Optional[torch.dtype] = None,
) -> Dict[str, float]:
    """Mean Dice per region over whole cases, segmented with a sliding window.

    Args:
        model: the (unwrapped) network; it is put in eval mode and back in train mode after.
        cases: ``{"image": (4, X, Y, Z), "label": (3, X, Y, Z)}`` tensors
            (:func:`~EoFormerSegmentationLib.training.transforms.validation_transforms`).
        roi: sliding-window edge in voxels (the training crop).
        overlap: sliding-window overlap.
        device: where the network runs.
        amp_dtype: autocast type.

    Returns:
        ``{"WT": dice, "TC": dice, "ET": dice, "mean": mean of the three}`` (sigmoid > 0.5).
    """
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    scores = {region: [] for region in REGIONS}
    try:
        for case in cases:
            image = case["image"][None].float()
            with autocast(device, amp_dtype):
                logits = _sliding_window_logits(model, image, roi, overlap, device)
            predicted = (logits[0].float() > 0).numpy()  # sigmoid > 0.5
            reference = case["label"].numpy() > 0.5
            for index, region in enumerate(REGIONS):
                scores[region].append(region_dice(predicted[index], reference[index]))
    finally:
        model.train(was_training)
    result = {region: float(np.mean(values)) for region, values in scores.items()}
    result["mean"] = float(np.mean([result[region] for region in REGIONS]))
    return result


def build_model(model_config: Dict[str, Any]) -> nn.Module:
    """An :class:`~EoFormerSegmentationLib.network.eoformer.EoFormer` from constructor kwargs."""
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    try:
        return EoFormer(**model_config)
    except TypeError as error:
        raise InputError(f"invalid network configuration {model_config}: {error}") from error


def environment_card(device: torch.device, world_size: int = 1) -> Dict[str, Any]:
    """Hardware and software facts for model cards."""
    if device.type == "cuda":
        hardware = f"{world_size} x {torch.cuda.get_device_name(device)}"
    else:
        hardware = f"{world_size} x CPU ({platform.processor() or platform.machine()}, " + (
            f"{torch.get_num_threads()} threads)"
        )
    import monai

    return {
        "hardware": hardware,
        "software": {
            "eoformer": __version__,
            "torch": str(torch.__version__),
            "monai": str(monai.__version__),
            "python": platform.python_version(),
        },
    }


class MixedCropStream(IterableDataset):
    """Crops drawn from several crop streams, each with a given probability.

    Args:
        streams: the crop streams (iterable datasets).
        weights: relative probability of each stream.
        seed: seed of the choice (mixed with the worker's identity).
    """

    def __init__(self, streams: Sequence[IterableDataset], weights: Sequence[float], seed: int):
        super().__init__()
        self.streams = list(streams)
        total = float(sum(weights))
        self.probabilities = [float(w) / total for w in weights]
        self.seed = int(seed)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        from torch.utils.data import get_worker_info

        worker = get_worker_info()
        rng = np.random.default_rng(
            stream_seed(self.seed, worker.id if worker else 0, getattr(self.streams[0], "rank", 0))
        )
        iterators = [iter(stream) for stream in self.streams]
        while True:
            choice = int(rng.choice(len(iterators), p=self.probabilities))
            yield next(iterators[choice])


# --------------------------------------------------------------------------- distributed
def _distributed_environment() -> tuple:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world_size, local_rank


def _barrier(world_size: int) -> None:
    if world_size > 1:
        torch.distributed.barrier()


def _agree(position: float, cancel: bool, world_size: int, device: torch.device) -> tuple:
    """The furthest schedule position and whether any rank cancels, the same on every rank."""
    if world_size == 1:
        return position, cancel
    values = torch.tensor([position, 1.0 if cancel else 0.0], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    return float(values[0].item()), bool(values[1].item() > 0)


def _mean_over_ranks(value: float, world_size: int, device: torch.device) -> float:
    if world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / world_size


# --------------------------------------------------------------------------- run helpers
def _split_validation(cases: List[CaseFiles], config: TrainingConfig) -> tuple:
    if config.val:
        return cases, discover_cases(config.val, require_label=True)
    count = int(round(len(cases) * config.val_fraction))
    if count == 0 and len(cases) >= 3 and config.val_fraction > 0:
        count = 1
    if count == 0:
        return cases, []
    order = np.random.default_rng(config.seed).permutation(len(cases))
    held_out = sorted(int(i) for i in order[:count])
    training = [case for i, case in enumerate(cases) if i not in held_out]
    return training, [cases[i] for i in held_out]


class _MappedItems(torch.utils.data.Dataset):
    def __init__(self, function: Callable[[Any], Any], items: Sequence[Any]) -> None:
        self.function = function
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.function(self.items[index])


def _unchanged(item: Any) -> Any:
    return item


def _map_in_workers(function: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list:
    """``[function(item) for item in items]``, computed by up to ``workers`` processes."""
    if workers <= 0 or len(items) <= 1:
        return [function(item) for item in items]
    loader = DataLoader(
        _MappedItems(function, items),
        batch_size=None,
        num_workers=min(workers, len(items)),
        collate_fn=_unchanged,
    )
    return list(loader)


def _validation_cases(
    config: TrainingConfig, held_out: List[CaseFiles], synthetic_only: bool
) -> tuple:
    """Validation tensors and their description for the model card."""
    transform = validation_transforms()
    if held_out:
        loaded = _map_in_workers(load_case, held_out[: config.val_cases], config.workers)
    elif synthetic_only and config.val_cases > 0:
        seeds = range(VALIDATION_SEED_START, VALIDATION_SEED_START + config.val_cases)
        loaded = _map_in_workers(synthetic_case, list(seeds), config.workers)
    else:
        return [], []
    tensors = [transform(case.as_dict()) for case in loaded]
    names = [case.name for case in loaded]
    return [{"image": t["image"], "label": t["label"]} for t in tensors], names


def _crop_stream(
    config: TrainingConfig,
    training_cases: List[CaseFiles],
    rank: int,
    world_size: int,
    start_case: int,
) -> IterableDataset:
    streams, weights = [], []
    common = dict(seed=config.seed, rank=rank, world_size=world_size, start_case=start_case)
    if training_cases:
        per_case = config.crops_per_case or 2
        streams.append(
            CaseCropStream(
                training_cases,
                training_transforms(
                    config.crop,
                    per_case,
                    augmentation=config.augmentation,
                    thick_slices=config.thick_slices,
                ),
                cache=config.cache,
                carvemix=config.carvemix,
                **common,
            )
        )
        weights.append(1.0 - config.synthetic_fraction if config.synthetic_cases else 1.0)
    if config.synthetic_cases:
        per_case = config.crops_per_case or 4
        streams.append(
            SyntheticCropStream(
                training_transforms(
                    config.crop,
                    per_case,
                    augmentation=config.augmentation,
                    thick_slices=config.thick_slices,
                ),
                seed_start=config.synthetic_seed,
                seed_count=config.synthetic_cases,
                **common,
            )
        )
        weights.append(config.synthetic_fraction if training_cases else 1.0)
    if len(streams) == 1:
        return streams[0]
    return MixedCropStream(streams, weights, seed=stream_seed(config.seed, start_case))


def _infinite(loader: DataLoader) -> Iterator[Dict[str, torch.Tensor]]:
    while True:
        yield from loader


def _random_states() -> Dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_random_states(states: Dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(states["cuda"])
        except (RuntimeError, IndexError):
            pass  # a different number of GPUs: keep the fresh CUDA states


def _read_log(path: Path, up_to_step: int) -> List[Dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        return [row for row in csv.DictReader(stream) if int(row["step"]) <= up_to_step]


class _CsvLog:
    def __init__(self, path: Path, keep_rows: List[Dict[str, str]]):
        self.path = path
        with atomic_write(path) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as stream:
                writer = csv.DictWriter(stream, fieldnames=LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(keep_rows)

    def write(self, row: Dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            csv.DictWriter(stream, fieldnames=LOG_COLUMNS).writerow(
                {key: row.get(key, "") for key in LOG_COLUMNS}
            )


def _model_card(
    config: TrainingConfig,
    model: nn.Module,
    training_cases: List[CaseFiles],
    validation_names: List[str],
    state: Dict[str, Any],
    environment: Dict[str, Any],
    world_size: int,
    amp_dtype: Optional[torch.dtype],
) -> Dict[str, Any]:
    data: Dict[str, Any] = {}
    if training_cases:
        data["folders"] = [str(Path(folder).resolve()) for folder in config.data]
        data["cases"] = [case.name for case in training_cases]
    if config.synthetic_cases:
        per_case = config.crops_per_case or 4
        data["synthetic"] = {
            "generator": "EoFormerSegmentationLib.synthetic.generator.generate_case",
            "generator_version": state.get("generator_version"),
            "seeds": [config.synthetic_seed, config.synthetic_seed + config.synthetic_cases - 1],
            "cases_generated_at_most": min(
                config.synthetic_cases,
                math.ceil(state["samples"] / per_case) if state["samples"] else 0,
            ),
            "crops_per_case": per_case,
            "held_out_evaluation_seeds": [EVALUATION_SEEDS.start, EVALUATION_SEEDS.stop - 1],
        }
        if training_cases:
            data["synthetic"]["fraction_of_crops"] = config.synthetic_fraction
    module = getattr(model, "module", model)
    card = {
        "name": config.name or Path(config.out_dir).resolve().name,
        "architecture": "EoFormer (She et al., MICCAI 2023)",
        "config": dict(module.config),
        "parameters": int(sum(p.numel() for p in module.parameters())),
        "outputs": list(REGIONS),
        "input": {
            "channels": ["t1", "t1ce", "t2", "flair"],
            "normalization": "z-score per channel over non-zero (brain) voxels",
            "spacing_mm": 1.0,
        },
        "training_data": data,
        "validation": {
            "cases": validation_names,
            "dice": state.get("val_dice"),
            "best_dice_mean": state.get("best_dice"),
            "best_step": state.get("best_step"),
        },
        "training": {
            "step": state["step"],
            "iterations_planned": config.iterations,
            "samples_seen": state["samples"],
            "batch_size_per_process": config.batch_size,
            "processes": world_size,
            "crop_voxels": config.crop,
            "optimizer": "AdamW",
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "schedule": f"linear warm-up {config.warmup_steps} steps, cosine decay",
            "grad_clip": config.grad_clip,
            "mixed_precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "none",
            "loss": "soft Dice (batch) + BCE on WT/TC/ET sigmoid channels",
            "augmentation": _augmentation_summary(config),
            "seed": config.seed,
            "init": state.get("init"),
            "time_s": round(state["elapsed"], 1),
            "time_limit_minutes": config.time_limit,
            "data_wait_s": round(state["data_wait"], 1),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **environment,
    }
    # plain JSON types only: the card is stored inside the checkpoint, which is read back
    # with torch.load(weights_only=True)
    return json.loads(json.dumps(card, default=str))


_AUGMENTATION_SUMMARY = {
    "basic": "tumour-biased random crops, flips on 3 axes, intensity scale and shift per channel",
    "strong": "tumour-biased random crops; rotation (up to 15 degrees per axis) and scaling "
    "(0.85-1.15), p 0.4; flips on 3 axes; per-channel brightness, shift, gamma, blur, noise; "
    "simulated thick slices (2-7 mm along one axis, p {thick_slices:g})",
}


def _augmentation_summary(config: TrainingConfig) -> str:
    summary = _AUGMENTATION_SUMMARY[config.augmentation].format(thick_slices=config.thick_slices)
    if config.carvemix > 0:
        low, high = MARGIN_MM
        summary += (
            f"; CarveMix, p {config.carvemix:g}: another training case's tumour with its label "
            f"and {low:g}-{high:g} mm around it pasted at its atlas position"
        )
    return summary


def _check_config(config: TrainingConfig) -> None:
    if config.augmentation not in _AUGMENTATION_SUMMARY:
        raise InputError(
            f"--augmentation {config.augmentation}: use one of {', '.join(_AUGMENTATION_SUMMARY)}"
        )
    if not config.data and not config.synthetic_cases:
        raise InputError(
            "give training data folders (--data) or synthetic cases (--synthetic-cases N)"
        )
    if config.crop < 16 or config.crop % 16:
        raise InputError(f"--crop {config.crop}: must be a positive multiple of 16 voxels")
    for name in ("iterations", "batch_size", "val_every", "log_every"):
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if config.time_limit is not None and config.time_limit <= 0:
        raise InputError(f"--time-limit {config.time_limit}: must be a positive number of minutes")
    if config.lr <= 0:
        raise InputError(f"--lr {config.lr}: must be positive")
    if config.synthetic_cases:
        check_training_seeds(config.synthetic_seed, config.synthetic_cases)
    if not 0.0 <= config.synthetic_fraction <= 1.0:
        raise InputError("--synthetic-fraction must be between 0 and 1")
    if not 0.0 <= config.carvemix <= 1.0:
        raise InputError(f"--carvemix {config.carvemix}: must be a probability between 0 and 1")
    if not 0.0 <= config.thick_slices <= 1.0:
        raise InputError(
            f"--thick-slices {config.thick_slices}: must be a probability between 0 and 1"
        )
    if config.augmentation != "strong" and config.thick_slices != THICK_SLICES_PROB:
        raise InputError("--thick-slices needs --augmentation strong")


# --------------------------------------------------------------------------- train
def train(
    config: TrainingConfig,
    resume: bool = False,
    progress: Optional[ProgressCallback] = None,
    should_cancel: Optional[CancelCallback] = None,
    progress_bar: bool = True,
) -> TrainingResult:
    """Train EoFormer as ``config`` says; see the module docstring for the run folder.

    Args:
        config: the run's settings.
        resume: continue the run in ``config.out_dir`` from ``last_state.pt`` (same step,
            optimiser, scheduler, scaler and random states; the data stream continues after
            the cases already seen).
        progress: called with (fraction done, message) after every step (rank 0).
        should_cancel: polled every step; when it returns True the run stops and raises
            :class:`~EoFormerSegmentationLib.errors.Cancelled` (checkpoints already written
            stay valid, so the run can be resumed).
        progress_bar: show a tqdm progress bar on rank 0.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        InputError: bad data or settings; the run folder already holds a run (without
            ``resume``) or holds none (with ``resume``).
    """
    _check_config(config)
    rank, world_size, local_rank = _distributed_environment()
    device = resolve_device(config.device, local_rank)
    started_group = False
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
        started_group = True
    try:
        return _train(
            config, resume, progress, should_cancel, progress_bar, rank, world_size, device
        )
    finally:
        if started_group:
            torch.distributed.destroy_process_group()


def _train(
    config: TrainingConfig,
    resume: bool,
    progress: Optional[ProgressCallback],
    should_cancel: Optional[CancelCallback],
    progress_bar: bool,
    rank: int,
    world_size: int,
    device: torch.device,
) -> TrainingResult:
    run_dir = Path(config.out_dir)
    state_path = run_dir / "last_state.pt"
    is_writer = rank == 0
    if resume and not state_path.is_file():
        raise InputError(f"{run_dir}: nothing to resume (no last_state.pt)")
    if not resume and (state_path.exists() or (run_dir / "last.pt").exists()):
        raise InputError(
            f"{run_dir}: the folder already holds a training run; use --resume to continue "
            "it or choose another --out"
        )

    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)

    # data
    training_cases: List[CaseFiles] = []
    held_out: List[CaseFiles] = []
    if config.data:
        training_cases, held_out = _split_validation(discover_cases(config.data), config)
        if not training_cases:
            raise InputError("no training cases left after holding out validation cases")
    _barrier(world_size)  # the data is valid on every rank before rank 0 writes
    if is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / "config.json") as temporary:
            temporary.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    validation: List[Dict[str, torch.Tensor]] = []
    validation_names: List[str] = []
    if is_writer:
        validation, validation_names = _validation_cases(
            config, held_out, synthetic_only=not config.data
        )

    # model, optimiser, schedule
    init_record = None
    model_config = dict(config.model_config)
    init_state = None
    if config.init and not resume:
        from EoFormerSegmentationLib.models import load_checkpoint

        loaded = load_checkpoint(config.init, with_raw_scan_model=False)
        model_config = dict(loaded.config)
        init_state = loaded.model.state_dict()
        init_record = {"path": str(config.init), "name": loaded.name, "sha256": loaded.sha256}
    model = build_model(model_config).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = WarmupCosine(config.warmup_steps, config.iterations)
    amp_dtype = autocast_dtype(config.amp, device)
    scaler = make_grad_scaler(device, amp_dtype)

    state: Dict[str, Any] = {
        "step": 0,
        "samples": 0,
        "elapsed": 0.0,
        "data_wait": 0.0,
        "best_dice": None,
        "best_step": None,
        "val_dice": None,
        "init": init_record,
    }
    if config.synthetic_cases:
        state["generator_version"] = generator_version()
    if resume:
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        model_config = saved["model_config"]
        model = build_model(model_config).to(device)
        model.load_state_dict(saved["model"])
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        state.update(saved["state"])
        _restore_random_states(saved["random"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
        torch.set_float32_matmul_precision("high")  # TF32 for what runs outside autocast

    network: nn.Module = model
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    model.train()

    # stream
    per_case = config.crops_per_case or (4 if config.synthetic_cases else 2)
    start_case = state["samples"] // per_case
    stream = _crop_stream(config, training_cases, rank, world_size, start_case)
    loader = DataLoader(
        stream,
        batch_size=config.batch_size,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        prefetch_factor=4 if config.workers > 0 else None,
    )
    batches = _infinite(loader)
    loss_function = RegionLoss()
    environment = environment_card(device, world_size)
    time_limit_s = config.time_limit * 60.0 if config.time_limit else None

    def schedule_position() -> float:
        """Steps done, or the share of the time limit used (in steps), whichever is ahead."""
        position = float(state["step"])
        if time_limit_s:
            position = max(position, state["elapsed"] / time_limit_s * config.iterations)
        return position

    log = None
    if is_writer:
        log = _CsvLog(run_dir / "log.csv", _read_log(run_dir / "log.csv", state["step"]))
    bar = None
    if is_writer and progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=config.iterations,
            initial=state["step"],
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )

    def checkpoint() -> None:
        card = _model_card(
            config,
            model,
            training_cases,
            validation_names,
            state,
            environment,
            world_size,
            amp_dtype,
        )
        last = save_checkpoint(run_dir / "last.pt", model, card)
        if not validation or state["best_step"] == state["step"]:
            save_checkpoint(run_dir / "best.pt", model, card)
        payload = {
            "model_config": dict(model.config),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": {
                "warmup": schedule.warmup,
                "total": schedule.total,
                "position": schedule_position(),
            },
            "scaler": scaler.state_dict() if scaler is not None else None,
            "state": dict(state),
            "random": _random_states(),
            "last_sha256": file_sha256(last),
        }
        with atomic_write(state_path) as temporary:
            torch.save(payload, temporary)

    running_loss, running_count = 0.0, 0
    position = schedule_position()
    last_time = time.perf_counter()
    try:
        while position < config.iterations:
            lr = config.lr * schedule(position)
            for group in optimizer.param_groups:
                group["lr"] = lr
            waited = time.perf_counter()
            batch = next(batches)
            state["data_wait"] += time.perf_counter() - waited
            loss = optimization_step(
                network,
                batch,
                loss_function,
                optimizer,
                device,
                amp_dtype,
                scaler,
                config.grad_clip,
            )
            now = time.perf_counter()
            state["elapsed"] += now - last_time
            last_time = now
            state["step"] += 1
            state["samples"] += config.batch_size * world_size
            running_loss += loss
            running_count += 1
            step = state["step"]
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss} at step {step}; lower --lr or use --amp none, "
                    "then --resume from the last checkpoint"
                )
            # every rank follows the same schedule and stops together (time limits differ
            # slightly between processes; cancellation comes from one of them)
            cancel = bool(should_cancel and should_cancel())
            position, cancel = _agree(schedule_position(), cancel, world_size, device)
            finished = position >= config.iterations
            validate_now = step % config.val_every == 0 or finished
            row: Dict[str, Any] = {}
            if step % config.log_every == 0 or validate_now:
                mean_loss = _mean_over_ranks(running_loss / running_count, world_size, device)
                running_loss, running_count = 0.0, 0
                row = {"step": step, "loss": f"{mean_loss:.5f}", "lr": f"{lr:.3e}"}
            if validate_now:
                if is_writer and validation:
                    dice = validation_dice(
                        model, validation, config.crop, config.overlap, device, amp_dtype
                    )
                    state["val_dice"] = dice
                    if state["best_dice"] is None or dice["mean"] > state["best_dice"]:
                        state["best_dice"], state["best_step"] = dice["mean"], step
                    row.update({f"val_dice_{r}": f"{dice[r]:.4f}" for r in REGIONS})
                    row["val_dice_mean"] = f"{dice['mean']:.4f}"
                state["elapsed"] += time.perf_counter() - last_time
                if is_writer:
                    checkpoint()
                _barrier(world_size)
                last_time = time.perf_counter()
            if row and log is not None:
                row.update(
                    {
                        "samples": state["samples"],
                        "elapsed_s": f"{state['elapsed']:.1f}",
                        "data_wait_s": f"{state['data_wait']:.1f}",
                        "time": datetime.datetime.now().isoformat(timespec="seconds"),
                    }
                )
                log.write(row)
            if bar is not None:
                postfix = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}"}
                if state["elapsed"] > 0:
                    postfix["data wait"] = f"{100 * state['data_wait'] / state['elapsed']:.0f}%"
                if state["val_dice"]:
                    postfix["dice"] = f"{state['val_dice']['mean']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
            if is_writer and progress is not None:
                progress(
                    min(position / config.iterations, 1.0),
                    f"step {step}, loss {loss:.4f}",
                )
            if cancel:
                raise Cancelled(f"training cancelled at step {step}")
    finally:
        if bar is not None:
            bar.close()

    return TrainingResult(
        run_dir=run_dir,
        last_checkpoint=run_dir / "last.pt" if is_writer else None,
        best_checkpoint=run_dir / "best.pt" if is_writer else None,
        step=state["step"],
        best_dice=state["best_dice"],
        model=model,
    )
