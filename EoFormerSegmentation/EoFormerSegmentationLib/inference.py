"""Running the network over a whole volume: device choice, sliding window, test-time flips.

The sliding window is MONAI's (Gaussian blending); progress is reported and cancellation is
checked between windows, so the command line and the Slicer module stay responsive.
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from EoFormerSegmentationLib.cpu_threads import adapted_threads
from EoFormerSegmentationLib.errors import Cancelled, InputError

__all__ = [
    "select_device",
    "predict_probabilities",
    "predict_logits",
    "DEFAULT_ROI_SIZE",
    "WHOLE_VOLUME_MAX_VOXELS",
    "INFERENCE_MODES",
    "check_inference_mode",
]

DEFAULT_ROI_SIZE = 128
WHOLE_VOLUME_MAX_VOXELS = 200 * 224 * 192
"""Largest padded brain (voxels) that ``whole`` inference runs in one pass (about 1.4 GB of
activations on the CPU); larger volumes fall back to windows."""

INFERENCE_MODES = ("auto", "window", "whole")
"""``window``: overlapping 128³ windows; ``whole``: the cropped brain in one pass (EoFormer's
attention is linear in the number of voxels and the rest is convolutional), windows above
:data:`WHOLE_VOLUME_MAX_VOXELS`; ``auto``: ``whole`` on the CPU (same Dice on the held-out real
cases, a fraction of the work), ``window`` on a GPU (whose memory is the tighter limit)."""
ProgressCallback = Optional[Callable[[float, str], None]]


def check_inference_mode(mode: str) -> None:
    """Refuse a mode outside :data:`INFERENCE_MODES` (an ``InputError`` naming it)."""
    if mode not in INFERENCE_MODES:
        raise InputError(f"--inference {mode}: expected one of {', '.join(INFERENCE_MODES)}")


def select_device(request: str = "auto") -> torch.device:
    """The torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        InputError: a CUDA device is requested but none is available.
    """
    request = (request or "auto").lower()
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request in ("gpu",):
        request = "cuda"
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {request}: no CUDA GPU is available to PyTorch on this machine; "
                "use --device cpu (slower) or --device auto"
            )
        return torch.device(request)
    if request == "cpu":
        return torch.device("cpu")
    raise InputError(f"--device {request}: expected auto, cpu or cuda")


def _flip_sets(tta: bool) -> Sequence[tuple]:
    if not tta:
        return [()]
    return [axes for count in range(4) for axes in itertools.combinations((2, 3, 4), count)]


def predict_logits(
    model: torch.nn.Module,
    volume: torch.Tensor,
    roi_size: int = DEFAULT_ROI_SIZE,
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    progress: ProgressCallback = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    progress_range: tuple = (0.0, 1.0),
) -> torch.Tensor:
    """Sliding-window logits of ``model`` over ``volume`` (``(B, C, X, Y, Z)``, on its device).

    Args:
        model: the network (fused for inference), in eval mode.
        volume: input; each spatial size is a multiple of the network's size multiple.
        roi_size: window edge in voxels (clipped to the volume).
        overlap: fraction of overlap between windows.
        sw_batch_size: windows per forward pass.
        progress: called with (fraction, message) after each batch of windows.
        should_cancel: polled between batches of windows; True raises :class:`Cancelled`.
        progress_range: the share of the overall progress this call covers.
    """
    from monai.inferers import sliding_window_inference

    roi = [min(roi_size, int(size)) for size in volume.shape[2:]]
    start, stop = progress_range
    # Number of windows as MONAI lays them out, to report progress per batch of windows.
    steps = [max(int(r * (1 - overlap)), 1) for r in roi]
    counts = [
        1 if size <= r else int(np.ceil((size - r) / step)) + 1
        for size, r, step in zip(volume.shape[2:], roi, steps)
    ]
    batches = int(np.ceil(int(np.prod(counts)) * volume.shape[0] / sw_batch_size))
    done = {"batches": 0}

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        if should_cancel is not None and should_cancel():
            raise Cancelled("segmentation cancelled")
        output = model(windows)
        done["batches"] += 1
        if progress is not None:
            fraction = min(done["batches"] / max(batches, 1), 1.0)
            progress(
                start + (stop - start) * fraction,
                f"network: window batch {done['batches']}/{batches}",
            )
        return output

    return sliding_window_inference(
        volume,
        roi_size=roi,
        sw_batch_size=sw_batch_size,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
    )


def predict_probabilities(
    model: torch.nn.Module,
    volume: np.ndarray,
    device: torch.device,
    roi_size: int = DEFAULT_ROI_SIZE,
    overlap: float = 0.5,
    sw_batch_size: Optional[int] = None,
    tta: bool = False,
    progress: ProgressCallback = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    mode: str = "window",
) -> np.ndarray:
    """Sigmoid probabilities of WT, TC, ET for one pre-processed volume.

    Args:
        model: fused network in eval mode (moved to ``device`` here).
        volume: ``(4, X, Y, Z)`` normalised, padded input.
        device: where to run.
        roi_size: window edge (voxels).
        overlap: window overlap fraction.
        sw_batch_size: windows per forward pass (default 1 on CPU, 4 on CUDA).
        tta: average over the 8 combinations of flips along x, y and z.
        progress: (fraction, message) callback.
        should_cancel: polled between windows.
        mode: ``auto``, ``window`` or ``whole`` (see :data:`INFERENCE_MODES`).

    On the CPU each pass runs on the cores other programs leave free
    (:func:`~EoFormerSegmentationLib.cpu_threads.adapted_threads`).

    Returns:
        ``float32`` ``(3, X, Y, Z)`` probabilities.
    """
    check_inference_mode(mode)
    if mode == "auto":
        mode = "whole" if device.type == "cpu" else "window"
    if mode == "whole" and int(np.prod(volume.shape[1:])) <= WHOLE_VOLUME_MAX_VOXELS:
        roi_size = max(int(size) for size in volume.shape[1:])
    if sw_batch_size is None:
        sw_batch_size = 4 if device.type == "cuda" else 1
    model = model.to(device).eval()
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None].to(device)
    flips = _flip_sets(tta)
    total = torch.zeros((1, 3, *volume.shape[1:]), dtype=torch.float32, device=device)
    autocast_dtype = None
    if device.type == "cuda":
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode():
        for index, axes in enumerate(flips):
            flipped = torch.flip(tensor, axes) if axes else tensor
            share = (index / len(flips), (index + 1) / len(flips))
            with (
                adapted_threads(device),
                torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ),
            ):
                logits = predict_logits(
                    model, flipped, roi_size, overlap, sw_batch_size, progress, should_cancel, share
                )
            probabilities = torch.sigmoid(logits.float())
            total += torch.flip(probabilities, axes) if axes else probabilities
    return (total / len(flips))[0].cpu().numpy()
