"""Fine-tuning a trained model on a few corrected cases (the command line and the Slicer module).

The defaults suit a handful of cases on a laptop CPU: a small learning rate, the encoder
frozen (only the decoder adapts, which is faster and forgets less), the training augmentations,
a replay of synthetic training cases mixed into the stream so that the model keeps what it
knew, and an early stop when the loss stops falling. On CUDA it uses mixed precision.

The new checkpoint is written atomically (nothing is written when the run is cancelled or
fails) and never over the bundled model. Its model card records the parent model's sha256,
the cases used, the date and the settings, under ``card["fine_tuning"]``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from EoFormerSegmentationLib.errors import Cancelled, InputError
from EoFormerSegmentationLib.models import bundled_model_path, load_checkpoint, save_checkpoint
from EoFormerSegmentationLib.training.datasets import (
    CaseCropStream,
    CaseFiles,
    LoadedCase,
    discover_cases,
    load_case,
    stream_seed,
)
from EoFormerSegmentationLib.training.losses import RegionLoss
from EoFormerSegmentationLib.training.synthetic_stream import TRAINING_SEED_START, synthetic_case
from EoFormerSegmentationLib.training.trainer import (
    MixedCropStream,
    WarmupCosine,
    autocast_dtype,
    environment_card,
    make_grad_scaler,
    optimization_step,
    resolve_device,
)
from EoFormerSegmentationLib.training.transforms import training_transforms

__all__ = [
    "FinetuneSettings",
    "finetune",
    "freeze_encoder",
    "DEFAULT_ITERATIONS",
    "DEFAULT_LR",
]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_ITERATIONS = 200
"""Default number of optimisation steps: about 5-6 minutes on two CPU cores (96^3 crops, frozen
encoder, about 1.6 s a step), plus loading and generating the replay cases."""

DEFAULT_LR = 1e-4
"""Default peak learning rate (AdamW), a tenth of a typical from-scratch rate."""


@dataclass
class FinetuneSettings:
    """Settings of a fine-tuning run, recorded in the model card.

    Attributes:
        iterations: maximum optimisation steps.
        lr: peak learning rate (short linear warm-up, then cosine decay).
        freeze: ``"encoder"`` (train the decoder and head only) or ``"none"``.
        replay: ``"synthetic"`` (generate synthetic training cases), ``"none"``, or a folder
            of BraTS-layout cases (e.g. written by ``eoformer synth``).
        replay_cases: number of replay cases.
        replay_fraction: share of crops drawn from the replay cases.
        crop: crop edge in voxels (default: 128 on CUDA, 96 on CPU).
        batch_size: crops per step (default: 2 on CUDA, 1 on CPU).
        patience: stop early after this many steps without a 1% improvement of the smoothed
            loss (0: never).
        weight_decay: AdamW weight decay.
        grad_clip: maximum gradient norm.
        amp: ``auto`` / ``bf16`` / ``fp16`` / ``none`` (``auto``: mixed precision on CUDA).
        device: ``auto``, ``cpu``, ``cuda``.
        seed: random seed (crops, augmentations, replay choice).
    """

    iterations: int = DEFAULT_ITERATIONS
    lr: float = DEFAULT_LR
    freeze: str = "encoder"
    replay: str = "synthetic"
    replay_cases: int = 4
    replay_fraction: float = 0.3
    crop: Optional[int] = None
    batch_size: Optional[int] = None
    patience: int = 30
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    amp: str = "auto"
    device: str = "auto"
    seed: int = 0


def freeze_encoder(model: nn.Module) -> int:
    """Stop gradients in the encoder (``model.encoder``) and keep it in eval mode.

    Args:
        model: an :class:`~EoFormerSegmentationLib.network.eoformer.EoFormer`.

    Returns:
        Number of frozen parameters.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError("this network has no 'encoder' module to freeze; use freeze='none'")
    count = 0
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
        count += parameter.numel()
    return count


def _features_that_require_grad(module: nn.Module, inputs: Any, features: Any) -> Any:
    """Forward hook of a frozen encoder: its outputs become leaves that require gradients.

    Nothing flows back into the frozen encoder (the outputs are detached), but the first
    decoder layers then see inputs that require gradients. PyTorch's CPU GroupNorm backward
    crashes (segmentation fault) on channels-last 3D inputs that do not (seen with torch 2.13
    at the 8^3 x 256 bottleneck of a 128^3 crop); this avoids that path at little cost.
    """
    if isinstance(features, torch.Tensor):
        return features.detach().requires_grad_()
    return type(features)(feature.detach().requires_grad_() for feature in features)


def _set_train_mode(model: nn.Module, freeze: str) -> None:
    model.train()
    if freeze == "encoder":
        model.encoder.eval()  # no drop-path or statistics updates in the frozen part


def _resolved(path: PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _check_output(out_path: Path, overwrite: bool) -> None:
    if out_path.suffix != ".pt":
        raise InputError(f"{out_path}: the new model file must end in .pt")
    bundled = bundled_model_path()
    protected = {_resolved(bundled), _resolved(bundled.with_suffix(".json"))}
    if _resolved(out_path) in protected or _resolved(out_path.with_suffix(".json")) in protected:
        raise InputError(
            f"{out_path}: this is the bundled model; save the fine-tuned model elsewhere "
            "(e.g. in the user model folder)"
        )
    if out_path.exists() and not overwrite:
        raise InputError(f"{out_path}: the file exists (use --overwrite to replace it)")
    if out_path.is_dir():
        raise InputError(f"{out_path}: is a folder; give a .pt file name")


def _replay_cases(settings: FinetuneSettings, parent_card: Dict[str, Any], notify) -> tuple:
    """Replay cases and their description for the model card."""
    if settings.replay == "none" or settings.replay_cases < 1 or settings.replay_fraction <= 0:
        return [], {"kind": "none"}
    if settings.replay == "synthetic":
        synthetic = (parent_card.get("training_data") or {}).get("synthetic") or {}
        first = int((synthetic.get("seeds") or [TRAINING_SEED_START])[0])
        seeds = list(range(first, first + settings.replay_cases))
        cases = []
        try:
            for index, seed in enumerate(seeds):
                notify(f"generating synthetic replay case {index + 1}/{len(seeds)}")
                cases.append(synthetic_case(seed))
        except ImportError as error:
            warnings.warn(
                f"no synthetic replay: the generator is unavailable ({error})", stacklevel=3
            )
            return [], {"kind": "none", "reason": f"synthetic generator unavailable: {error}"}
        return cases, {"kind": "synthetic", "seeds": seeds}
    folder = Path(settings.replay)
    found = discover_cases(folder)
    order = np.random.default_rng(settings.seed).permutation(len(found))
    chosen = [found[int(i)] for i in order[: settings.replay_cases]]
    cases = []
    for index, case in enumerate(chosen):
        notify(f"loading replay case {index + 1}/{len(chosen)}")
        cases.append(load_case(case))
    return cases, {
        "kind": "folder",
        "folder": str(folder.resolve()),
        "cases": [case.name for case in chosen],
    }


def finetune(
    model_path: PathLike,
    cases: Sequence[Union[PathLike, CaseFiles]],
    out_path: PathLike,
    settings: Optional[FinetuneSettings] = None,
    overwrite: bool = False,
    name: Optional[str] = None,
    progress: Optional[Callable[[float, str], None]] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    **overrides: Any,
) -> Path:
    """Fine-tune the model in ``model_path`` on labelled ``cases`` and save it to ``out_path``.

    Args:
        model_path: the parent checkpoint (e.g. the bundled model).
        cases: case folders or folders of cases (BraTS layouts or folders written by the Slicer
            module, see :mod:`~EoFormerSegmentationLib.training.datasets`), or
            :class:`~EoFormerSegmentationLib.training.datasets.CaseFiles`. Every case needs a
            label.
        out_path: the new ``.pt`` file; its model card goes beside it (``.json``). Never the
            bundled model.
        settings: see :class:`FinetuneSettings`; keyword ``overrides`` (``iterations=...``,
            ``lr=...``, ``freeze=...``, ``replay=...``, ``device=...``) replace single fields.
        overwrite: replace an existing ``out_path``.
        name: model name for the card (default: the file stem).
        progress: called with (fraction done, message); messages carry the loss.
        should_cancel: polled every step; returning True raises
            :class:`~EoFormerSegmentationLib.errors.Cancelled` and nothing is written.

    Returns:
        ``out_path``.

    Raises:
        InputError: bad cases, model or output path (bundled model, existing file).
        Cancelled: ``should_cancel`` returned True.
    """
    settings = settings or FinetuneSettings()
    unknown = set(overrides) - set(asdict(settings))
    if unknown:
        raise TypeError(f"unknown fine-tuning settings: {', '.join(sorted(unknown))}")
    settings = FinetuneSettings(**{**asdict(settings), **overrides})
    if settings.freeze not in ("encoder", "none"):
        raise InputError(f"--freeze {settings.freeze}: use encoder or none")
    if settings.iterations < 1:
        raise InputError("--iterations must be at least 1")
    if settings.lr <= 0:
        raise InputError(f"--lr {settings.lr}: must be positive")
    model_path = Path(model_path)
    out_path = Path(out_path)
    _check_output(out_path, overwrite)

    def notify(message: str, fraction: float = 0.0) -> None:
        if progress is not None:
            progress(fraction, message)

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled("fine-tuning cancelled; no model was written")

    started = time.perf_counter()
    device = resolve_device(settings.device)
    crop = settings.crop or (128 if device.type == "cuda" else 96)
    batch_size = settings.batch_size or (2 if device.type == "cuda" else 1)
    if crop < 16 or crop % 16:
        raise InputError(f"--crop {crop}: must be a positive multiple of 16 voxels")

    case_files: List[CaseFiles] = []
    for entry in cases:
        if isinstance(entry, CaseFiles):
            case_files.append(entry)
        else:
            case_files.extend(discover_cases(entry, require_label=True))
    if not case_files:
        raise InputError("no cases to fine-tune on")
    notify(f"loading model {model_path.name}")
    parent = load_checkpoint(model_path, device=device, with_raw_scan_model=False)
    loaded: List[LoadedCase] = []
    for index, case in enumerate(case_files):
        check_cancel()
        notify(f"loading case {case.name} ({index + 1}/{len(case_files)})")
        loaded.append(load_case(case))
    replay, replay_record = _replay_cases(settings, parent.card, notify)
    check_cancel()

    torch.manual_seed(settings.seed)
    model = parent.model
    frozen = 0
    hook = None
    if settings.freeze == "encoder":
        frozen = freeze_encoder(model)
        hook = model.encoder.register_forward_hook(_features_that_require_grad)
    _set_train_mode(model, settings.freeze)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, settings.iterations // 10)
    schedule = WarmupCosine(warmup, settings.iterations)
    amp_dtype = autocast_dtype(settings.amp, device)
    scaler = make_grad_scaler(device, amp_dtype)
    loss_function = RegionLoss()

    transform = training_transforms(crop, crops_per_case=1)
    stream = CaseCropStream(loaded, transform, seed=settings.seed, shuffle_buffer=0)
    if replay:
        replay_stream = CaseCropStream(
            replay,
            training_transforms(crop, crops_per_case=1),
            seed=stream_seed(settings.seed, 1),
            shuffle_buffer=0,
        )
        stream = MixedCropStream(
            [stream, replay_stream],
            [1.0 - settings.replay_fraction, settings.replay_fraction],
            seed=settings.seed,
        )
    loader = torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=0)
    batches = iter(loader)

    losses: List[float] = []
    smoothed = None
    best_smoothed = math.inf
    best_step = 0
    stopped_early = False
    step = 0
    while step < settings.iterations:
        check_cancel()
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * schedule(step)
        loss = optimization_step(
            model,
            next(batches),
            loss_function,
            optimizer,
            device,
            amp_dtype,
            scaler,
            settings.grad_clip,
        )
        step += 1
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {step}; lower --lr")
        losses.append(loss)
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
        if smoothed < 0.99 * best_smoothed:
            best_smoothed, best_step = smoothed, step
        notify(
            f"iteration {step}/{settings.iterations}, loss {loss:.4f}", step / settings.iterations
        )
        if (
            settings.patience > 0
            and step >= warmup + settings.patience
            and step - best_step >= settings.patience
        ):
            stopped_early = True
            break
    if hook is not None:
        hook.remove()
    check_cancel()
    model.eval()

    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    window = max(1, min(10, len(losses)))
    card = {
        key: parent.card[key]
        for key in ("architecture", "outputs", "input", "parameters")
        if key in parent.card
    }
    card.update(
        {
            "name": name or out_path.stem,
            "config": dict(model.config),
            "date": date,
            "fine_tuning": {
                "parent": {"name": parent.name, "sha256": parent.sha256, "file": str(model_path)},
                "cases": [case.describe() for case in case_files],
                "date": date,
                "settings": {
                    **asdict(settings),
                    "crop": crop,
                    "batch_size": batch_size,
                    "device": str(device),
                    "frozen_parameters": frozen,
                },
                "replay": replay_record,
                "iterations_run": step,
                "stopped_early": stopped_early,
                "loss_first": float(np.mean(losses[:window])),
                "loss_last": float(np.mean(losses[-window:])),
                "time_s": round(time.perf_counter() - started, 1),
            },
            "parent_card": {
                key: value for key, value in parent.card.items() if key != "parent_card"
            },
            **environment_card(device),
        }
    )
    notify("saving the fine-tuned model", 1.0)
    card = json.loads(json.dumps(card, default=str))  # plain types, for weights_only loading
    save_checkpoint(out_path, model, card)
    return out_path
