"""Model files: the checkpoint format, model cards, and where models live.

A checkpoint is a PyTorch file holding::

    {"format": "eoformer-checkpoint", "format_version": 1,
     "config": <EoFormer constructor kwargs>, "state_dict": <unfused weights>, "card": <dict>}

next to a model card ``<stem>.json`` (the same ``card`` dict, readable without PyTorch). Weights
are stored unfused so that a checkpoint can be fine-tuned; inference fuses after loading.
A plain ``state_dict`` saved by the authors' original EoFormer code is accepted as well.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.files import atomic_write  # re-exported: older imports use it

__all__ = [
    "CHECKPOINT_FORMAT",
    "BUNDLED_MODEL_NAME",
    "RAW_SCAN_MODEL_KEY",
    "LoadedModel",
    "atomic_write",
    "file_sha256",
    "bundled_model_path",
    "default_model_path",
    "user_model_dir",
    "read_model_card",
    "save_checkpoint",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = "eoformer-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
BUNDLED_MODEL_NAME = "eoformer_glioma_real_v2"
RAW_SCAN_MODEL_KEY = "raw_scan_model"
"""Model-card field naming a companion model (a file beside the checkpoint) for raw scans:
scans the engine had to co-register or skull-strip itself, as a hospital archive holds them."""
REQUIRED_IN_CHANNELS = 4
"""Input channels of every model: T1, T1ce, T2, FLAIR."""
REQUIRED_OUT_CHANNELS = 3
"""Output channels of every model: WT, TC, ET."""

PathLike = Union[str, "os.PathLike[str]"]


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_model_path() -> Path:
    """The model shipped with the extension (``EoFormerSegmentation/Resources/Models``).

    ``EOFORMER_BUNDLED_MODEL`` overrides it (for installations that keep models elsewhere).
    """
    override = os.environ.get("EOFORMER_BUNDLED_MODEL")
    if override:
        return Path(override)
    return (
        Path(__file__).resolve().parent.parent
        / "Resources"
        / "Models"
        / (BUNDLED_MODEL_NAME + ".pt")
    )


def default_model_path() -> Optional[Path]:
    """The model used when none is given: the bundled one, or ``None`` if it is absent."""
    path = bundled_model_path()
    return path if path.is_file() else None


def user_model_dir() -> Path:
    """Folder of the user's fine-tuned models: ``$EOFORMER_HOME/models`` (default ``~/.eoformer``)."""
    home = os.environ.get("EOFORMER_HOME")
    base = Path(home) if home else Path.home() / ".eoformer"
    return base / "models"


def model_card_path(checkpoint_path: PathLike) -> Path:
    """The model card JSON that sits beside a checkpoint."""
    return Path(checkpoint_path).with_suffix(".json")


def read_model_card(checkpoint_path: PathLike) -> Dict[str, Any]:
    """The model card of a checkpoint, read from its JSON file (no PyTorch needed).

    Returns an empty dict when the checkpoint has no card beside it.
    """
    card_path = model_card_path(checkpoint_path)
    if not card_path.is_file():
        return {}
    try:
        return json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{card_path}: cannot read the model card ({error})") from error


@dataclass
class LoadedModel:
    """A model ready for inference or fine-tuning.

    Attributes:
        model: the unfused network, in eval mode, on the requested device.
        card: the model card (training data, metrics, provenance).
        name: short name shown to users and written into every output.
        sha256: hex SHA-256 of the checkpoint file, identifying the exact weights.
        path: the checkpoint file.
        raw_scan_model: the companion model for raw scans that the card names
            (:data:`RAW_SCAN_MODEL_KEY`), or ``None``.
        notes: messages about loading (a companion named by the card but missing).
    """

    model: Any
    card: Dict[str, Any]
    name: str
    sha256: str
    path: Path
    config: Dict[str, Any] = field(default_factory=dict)
    raw_scan_model: Optional[LoadedModel] = None
    notes: List[str] = field(default_factory=list)


def save_checkpoint(path: PathLike, model: Any, card: Dict[str, Any]) -> Path:
    """Write ``model`` and its model card atomically.

    Args:
        path: the ``.pt`` file to write; its model card goes to ``<stem>.json``.
        model: an unfused :class:`~EoFormerSegmentationLib.network.eoformer.EoFormer`
            (a fused model cannot be fine-tuned again, so it is refused).
        card: JSON-serialisable model card. ``name`` defaults to the file stem; ``sha256`` of
            the written checkpoint is added to the JSON card.

    Returns:
        The checkpoint path.
    """
    import torch

    path = Path(path)
    if getattr(model, "is_fused", False):
        raise ValueError("save the model before fuse(): fused weights cannot be fine-tuned")
    module = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    card = dict(card)
    card.setdefault("name", path.stem)
    state_dict = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": dict(module.config),
        "state_dict": state_dict,
        "card": card,
    }
    with atomic_write(path) as temporary:
        torch.save(payload, temporary)
        digest = file_sha256(temporary)
        card_with_hash = dict(card, sha256=digest, file=path.name)
        with atomic_write(model_card_path(path)) as card_temporary:
            card_temporary.write_text(
                json.dumps(card_with_hash, indent=2, default=str) + "\n", encoding="utf-8"
            )
    return path


def _looks_official(state_dict: Dict[str, Any]) -> bool:
    return any(
        key.startswith(("encoder.downsample_layers", "decoder.upsample_layers"))
        for key in state_dict
    )


def _checked_config(path: Path, config: Any, network: Any) -> Dict[str, Any]:
    """The network settings of a checkpoint, refused unless they make a 4-in, 3-out EoFormer."""
    if config is None:
        raise InputError(
            f"{path}: the model file has no network settings ('config'); it was not written "
            "by EoFormer for 3D Slicer, or it is damaged"
        )
    if not isinstance(config, dict):
        raise InputError(f"{path}: the network settings ('config') are not a dictionary")
    known = set(inspect.signature(network.__init__).parameters) - {"self"}
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise InputError(
            f"{path}: unknown network setting(s) in its 'config': {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    expected = {"in_channels": REQUIRED_IN_CHANNELS, "out_channels": REQUIRED_OUT_CHANNELS}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise InputError(
                f"{path}: the network has {key} = {config[key]}; a brain-tumor model needs "
                f"{REQUIRED_IN_CHANNELS} inputs (T1, T1ce, T2, FLAIR) and "
                f"{REQUIRED_OUT_CHANNELS} outputs (WT, TC, ET)"
            )
    return dict(config)


def load_checkpoint(
    path: PathLike, device: Any = "cpu", with_raw_scan_model: bool = True
) -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` or the original EoFormer code.

    Args:
        path: ``.pt`` / ``.pth`` file.
        device: torch device for the model.
        with_raw_scan_model: also load the companion model for raw scans that the card
            names, when it lies beside the checkpoint (a missing one becomes a note).

    Returns:
        A :class:`LoadedModel` with the unfused network in eval mode.

    Raises:
        InputError: the file is missing, unreadable or not an EoFormer model; its network
            settings lack ``config``, hold an unknown key, or do not make a network with 4
            inputs and 3 outputs; or the weights do not fit. The message names the file.
    """
    import torch

    from EoFormerSegmentationLib.network.eoformer import EoFormer, load_official_state_dict

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise InputError(
            f"{path}: cannot read the model file: not a PyTorch model file, or it is damaged "
            f"({type(error).__name__})"
        ) from error
    if not isinstance(payload, dict):
        raise InputError(f"{path}: not an EoFormer model file")

    if payload.get("format") == CHECKPOINT_FORMAT:
        version = payload.get("format_version")
        if version != CHECKPOINT_FORMAT_VERSION:
            raise InputError(f"{path}: checkpoint format version {version} is not supported")
        config = _checked_config(path, payload.get("config"), EoFormer)
        try:
            model = EoFormer(**config)
        except (TypeError, ValueError) as error:
            raise InputError(
                f"{path}: its network settings ('config') are invalid ({error})"
            ) from error
        state_dict = payload.get("state_dict")
        if not isinstance(state_dict, dict):
            raise InputError(f"{path}: the model file holds no weights ('state_dict')")
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise InputError(f"{path}: the weights do not fit the network ({error})") from error
        card = dict(payload.get("card") or {})
    else:
        state_dict = payload.get("state_dict", payload.get("model", payload))
        if not isinstance(state_dict, dict) or not _looks_official(state_dict):
            raise InputError(f"{path}: not an EoFormer checkpoint (unknown format)")
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
        model = EoFormer()
        try:
            load_official_state_dict(model, state_dict)
        except (KeyError, RuntimeError, ValueError) as error:
            raise InputError(f"{path}: cannot load these EoFormer weights ({error})") from error
        config = dict(model.config)
        card = {"name": path.stem, "source": "weights saved by the original EoFormer code"}

    card_on_disk = read_model_card(path)
    card = {**card, **card_on_disk}
    _check_postprocessing(path, card)
    model.to(device).eval()
    loaded = LoadedModel(
        model=model,
        card=card,
        name=str(card.get("name") or path.stem),
        sha256=file_sha256(path),
        path=path,
        config=config,
    )
    if with_raw_scan_model and card.get(RAW_SCAN_MODEL_KEY):
        _attach_raw_scan_model(loaded, device)
    return loaded


def _check_postprocessing(path: Path, card: Dict[str, Any]) -> None:
    """Refuse a card whose post-processing settings cannot be used (a threshold outside 0-1)."""
    from EoFormerSegmentationLib.postprocessing import PostprocessingSettings

    try:
        PostprocessingSettings.from_card(card)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"{path}: its model card's post-processing is invalid ({error})"
        ) from error


def _attach_raw_scan_model(loaded: LoadedModel, device: Any) -> None:
    """Load the raw-scan companion that ``loaded``'s card names, or note why not."""
    file_name = str(loaded.card[RAW_SCAN_MODEL_KEY])
    if Path(file_name).name != file_name:
        raise InputError(
            f"{loaded.path}: its card's {RAW_SCAN_MODEL_KEY!r} must be a file name beside it, "
            f"not {file_name!r}"
        )
    companion = loaded.path.parent / file_name
    if companion.resolve() == loaded.path.resolve():
        return
    if not companion.is_file():
        loaded.notes.append(
            f"{companion}: the model for raw scans that {loaded.name} names is missing; "
            f"raw scans are segmented with {loaded.name} itself"
        )
        return
    loaded.raw_scan_model = load_checkpoint(companion, device, with_raw_scan_model=False)
