"""Turn a training run's checkpoint into the bundled model, with its measured model card.

The checkpoint is scored on the held-out synthetic cases and on the labelled real case with
the same code as ``eoformer evaluate --cases``; the scores, the exact training command and
the intended use are added to its model card, and the weights are written (unchanged) to the
bundled model's place. Run from the repository root::

    eoformer synth --out heldout --cases 20 --seed 0
    python tools/bundle_model.py --checkpoint runs/v1/best.pt --synthetic heldout \\
        --training-command "eoformer train ..."

Reports already written by ``eoformer evaluate --cases ... --json`` for the same checkpoint
can be passed with ``--synthetic-report`` / ``--real-report`` instead of scoring again.

``--raw-scans-for MAIN.pt`` bundles a model trained on raw-looking scans as the companion of
the main model: the main model's card names it, and the engine segments with it the scans it
had to co-register or skull-strip itself.

A model trained on real labelled cases is bundled from the report of
``tools/evaluate_real_cases.py`` on its held-out cases (which also chose its post-processing,
written into the card so that the engine applies it), plus the reports of the same tool on
simulated thick-slice and raw scans::

    python tools/bundle_model.py --checkpoint runs/v2/best.pt --heldout-report \
        runs/real_eval/report.json --extra-report thick_5mm=runs/thick5/report.json \
        --training-command "eoformer train ..." --overwrite
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from simulate_raw_cases import original_case

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_CASE = REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-FG-6692"

INTENDED_USE = (
    "Research only. Not a medical device and not for clinical use: its output must not be "
    "used for diagnosis, treatment planning or any other decision about a patient."
)


def scores(report: Dict[str, Any]) -> Dict[str, Any]:
    """The model-card form of an ``evaluate --cases`` report."""
    return {
        "cases": [case["case"] for case in report["cases"]],
        "per_region": report["summary"],
        "per_case": {case["case"]: case["scores"] for case in report["cases"]},
    }


def score(checkpoint: Path, folder: Path, saved: Optional[Path]) -> Dict[str, Any]:
    """Scores of ``checkpoint`` on the cases under ``folder`` (or a saved report of them)."""
    from EoFormerSegmentationLib.evaluation import evaluate_cases
    from EoFormerSegmentationLib.models import file_sha256

    if saved is not None:
        report = json.loads(saved.read_text(encoding="utf-8"))
        if report["model"]["sha256"] != file_sha256(checkpoint):
            raise SystemExit(f"{saved}: scores a different checkpoint than {checkpoint}")
        return report
    return evaluate_cases(checkpoint, [folder], device="cpu")


BRATS_CITATION = (
    "BraTS data were used: Menze et al., IEEE TMI 2015; Bakas et al., Nature Scientific Data "
    "2017; Bakas et al., arXiv:1811.02629 (2018); Baid et al., arXiv:2107.02314 (2021). "
    "TCGA-FG-6692: TCIA (TCGA glioma collections), preprocessed with BraTS Toolkit (Kofler et "
    "al., Frontiers in Neuroscience 2020)."
)

KNOWN_LIMITS = [
    "trained on 18 adult glioma cases (BraTS 2013-2021 training data, pre-operative, "
    "skull-stripped, co-registered, 1 mm); a few hundred cases are needed for BraTS-level "
    "accuracy",
    "never saw metastases, meningiomas, pediatric tumors, post-operative cavities or "
    "treatment effects",
    "never saw scans with skull and scalp: it relies on the brain extraction step for them",
    "thick-slice (2-D) acquisitions were only simulated during training (slabs of 2-7 mm)",
]

RAW_SCAN_LIMITS = KNOWN_LIMITS[:2] + [
    "learned raw scans from simulations only: real BraTS brains placed into two real heads "
    "(VS-SEG-001 of TCIA Vestibular-Schwannoma-SEG, CC BY 4.0; a healthy volunteer of "
    "dcm_qa_decubitus, BSD-2-Clause) and acquired with drawn protocols (3-7 mm slabs, other "
    "grids per sequence, motion); it never saw a real raw scan with an expert label",
    "used only for the scans that the engine co-registered or skull-stripped itself; "
    "BraTS-prepared scans go to the main model",
    "on thick 2-D slices (5-6 mm) it draws less of the enhancing rim and of the core than there "
    "is (the slabs average the rim with the necrosis inside it; on the held-out cases made raw, "
    "0.05 less Dice in both than the main model on the same cases as BraTS prepared them): "
    "check the enhancing rim against the T1ce",
    "on 2 of the 6 held-out cases made raw it draws fragments away from the tumor (a 4 mL false "
    "core on BraTS2021_00031, 14 mL of false whole tumor on BraTS2021_00014): look for islands "
    "away from the tumor and delete them",
]


def _case_source(case: str) -> str:
    """Where a real case comes from (the first line of its SOURCE.txt, or the README); a
    raw-looking version of one is named after it."""
    original = original_case(case)
    if original is not None:
        return (
            f"{original} placed into a real head, acquired as raw clinical scans and prepared "
            f"by the engine (tools/simulate_raw_cases.py --mode raw --prepared); "
            f"{original}: {_case_source(original)}"
        )
    for folder in (REPOSITORY.parent / "shared/data/brats" / case, REAL_CASE.parent / case):
        source = folder / "SOURCE.txt"
        if source.is_file():
            return source.read_text(encoding="utf-8").splitlines()[0].replace("repo: ", "")
    if case == REAL_CASE.name:
        return "TCIA TCGA glioma collections via BraTS Toolkit (label: consensus of 5 algorithms)"
    return "unknown"


def _training_note(cases) -> str:
    originals = [original_case(case) for case in cases]
    raw = [original for original in originals if original is not None]
    if raw and len(raw) == len(cases):
        return (
            f"trained on {len(raw)} raw-looking versions of {len(set(raw))} real BraTS cases "
            "(each placed into a real head, acquired as raw clinical scans and prepared by "
            "the engine)"
        )
    note = f"trained on {len(cases) - len(raw)} real BraTS cases"
    if raw:
        note += f" and {len(raw)} raw-looking versions of {len(set(raw))} of them"
    return note


def _selection_note(card: Dict[str, Any]) -> str:
    """How the held-out cases took part in choosing the model (never in training it)."""
    note = (
        "yes: the checkpoint with the best validation Dice on these cases was kept, and the "
        "post-processing was chosen on them"
    )
    if card.get("weight_average"):
        note += "; the average of the members' weights (weight_average) was kept after it was "
        note += "scored on them"
    return note + "; the numbers are therefore somewhat optimistic"


def _model_entry(report: Dict[str, Any], sha256: str) -> Dict[str, Any]:
    for entry in report["models"].values():
        if entry["sha256"] == sha256:
            return entry
    for entry in report["models"].values():
        # a main model whose companion for raw scans (this checkpoint) segmented every case
        if [model["sha256"] for model in entry.get("segmented_by", [])] == [sha256]:
            return entry
    raise SystemExit("the held-out report does not score this checkpoint")


def _scores_in(report: Dict[str, Any], sha256: str) -> Dict[str, Any]:
    """The cases of a report of tools/evaluate_real_cases.py and the chosen post-processing's
    scores of the model with this hash, as a card's ``evaluation`` entry."""
    entry = _model_entry(report, sha256)
    return {
        "cases": report["cases"],
        "summary": entry["chosen"]["summary"],
        "per_case": entry["chosen"]["per_case"],
    }


def _write_json_card(card_path: Path, card: Dict[str, Any]) -> None:
    """Replace a model's JSON card, atomically; the checkpoint beside it is not touched."""
    from EoFormerSegmentationLib.files import atomic_write

    with atomic_write(card_path) as temporary:
        temporary.write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")


def bundle_real(arguments: argparse.Namespace, out: Path) -> int:
    """Card and bundled copy of a model trained on real labelled cases."""
    from EoFormerSegmentationLib.models import file_sha256, load_checkpoint, save_checkpoint

    if arguments.raw_scans_for and out.resolve().parent != arguments.raw_scans_for.resolve().parent:
        raise SystemExit(f"{out} must lie beside {arguments.raw_scans_for} (--raw-scans-for)")
    checkpoint_sha = file_sha256(arguments.checkpoint)
    heldout = json.loads(arguments.heldout_report.read_text(encoding="utf-8"))
    entry = _model_entry(heldout, checkpoint_sha)
    loaded = load_checkpoint(arguments.checkpoint, with_raw_scan_model=False)
    card = dict(loaded.card)
    training_cases = card.get("training_data", {}).get("cases", [])
    card["name"] = out.stem
    card["intended_use"] = INTENDED_USE
    init = (card.get("training") or {}).get("init")
    start = init.get("name") if isinstance(init, dict) else None
    card["training_data"] = {
        "real_cases": [{"case": c, "source": _case_source(c)} for c in training_cases],
        "labels": "expert manual BraTS labels (1 NCR, 2 ED, 4 ET); images stored 8-bit",
        "citation": BRATS_CITATION,
        "note": _training_note(training_cases)
        + (f", starting from {start}" if start else ", from random weights")
        + "; the held-out cases below were never trained on",
    }
    if isinstance(init, dict) and init.get("path"):
        init["path"] = Path(init["path"]).name  # where it was on the training machine is noise
    card["postprocessing"] = heldout["chosen"]
    card["training_command"] = arguments.training_command
    stages = []
    for entry_text in arguments.earlier_stage:
        path, _, command = entry_text.partition("=")
        earlier = load_checkpoint(Path(path), with_raw_scan_model=False).card
        stages.append(
            {
                "name": earlier.get("name"),
                "sha256": file_sha256(Path(path)),
                "training_command": command or earlier.get("training_command"),
                **{key: earlier.get(key) for key in ("training_data", "training")},
            }
        )
    if stages:
        card["earlier_training_stages"] = stages
    card["trained_checkpoint_sha256"] = checkpoint_sha
    others = {
        name: {"sha256": e["sha256"], "chosen": e["chosen"]["summary"]}
        for name, e in heldout["models"].items()
        if e["sha256"] != checkpoint_sha
    }
    for path in arguments.compare_report:
        compared = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, e in compared["models"].items():
            others[name] = {
                "sha256": e["sha256"],
                "postprocessing": compared["chosen"],
                "summary": e["chosen"]["summary"],
                "per_case": e["chosen"]["per_case"],
            }
    card["evaluation"] = {
        "metrics": "Dice and HD95 (mm) per region, BraTS conventions (both empty: Dice 1, "
        "HD95 0; one empty: HD95 373.13)",
        "inference": "sliding window 128^3, overlap 0.5, Gaussian blending, no test-time "
        "augmentation, the post-processing of this card",
        "held_out_real": {
            "cases": [{"case": c, "source": _case_source(c)} for c in heldout["cases"]],
            "used_in_training": False,
            "used_for_model_selection": _selection_note(card),
            "per_case": entry["chosen"]["per_case"],
            "summary": entry["chosen"]["summary"],
            "summary_default_postprocessing": entry["default"]["summary"],
            "postprocessing_sweep": heldout["sweep"],
            "other_models_same_cases": others,
            "command": "python tools/evaluate_real_cases.py --cases <held-out folders> "
            "--model <v1> --model <this checkpoint> --out runs/real_eval",
        },
    }
    for extra in arguments.extra_report:
        name, _, path = extra.partition("=")
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        card["evaluation"][name] = _scores_in(report, checkpoint_sha)
    card["known_limits"] = KNOWN_LIMITS
    if arguments.raw_scans_for:
        card["known_limits"] = RAW_SCAN_LIMITS
        card["use"] = (
            f"the model for raw scans of {arguments.raw_scans_for.stem}: the engine hands it "
            "the scans it had to co-register or skull-strip itself"
        )
    save_checkpoint(out, loaded.model, card)
    print(json.dumps({"file": str(out), "sha256": file_sha256(out)}, indent=2))
    if arguments.raw_scans_for:
        name_as_raw_scan_model(arguments.raw_scans_for, out)
    return 0


def update_postprocessing(model: Path, report_path: Path, extra_reports: List[str]) -> int:
    """Write a report's chosen post-processing into a bundled model's JSON card, with the
    held-out scores it gives (and those of ``extra_reports``, ``NAME=REPORT``); the settings and
    scores it replaces stay in the card. The weights and their hash stay as they are."""
    from EoFormerSegmentationLib.models import file_sha256, model_card_path

    card_path = model_card_path(model)
    sha256 = file_sha256(model)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    held_out = (card.get("evaluation") or {}).get("held_out_real")
    if held_out is None:
        raise SystemExit(f"{card_path}: no held-out real-case scores to update")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    entry = _model_entry(report, sha256)
    if [case["case"] for case in held_out["cases"]] != report["cases"]:
        raise SystemExit(f"{report_path}: scores other cases than the card's held-out ones")
    earlier = card.get("postprocessing")
    if earlier != report["chosen"]:  # scored again with the same settings: nothing replaced
        held_out.setdefault("earlier_postprocessing", []).append(
            {"postprocessing": earlier, "summary": held_out.get("summary")}
        )
    card["postprocessing"] = report["chosen"]
    rescored = {"held_out_real", *(extra.partition("=")[0] for extra in extra_reports)}
    for name, scores in card["evaluation"].items():
        if name not in rescored and isinstance(scores, dict) and "summary" in scores:
            scores.setdefault("scored_with_postprocessing", earlier)  # not measured again
    held_out["per_case"] = entry["chosen"]["per_case"]
    held_out["summary"] = entry["chosen"]["summary"]
    held_out["summary_default_postprocessing"] = entry["default"]["summary"]
    held_out["postprocessing_sweep"] = report["sweep"]
    if report.get("chosen_on_other_cases"):
        held_out["postprocessing_chosen_on_other_cases"] = report["chosen_on_other_cases"]
    for extra in extra_reports:
        name, _, path = extra.partition("=")
        extra_report = json.loads(Path(path).read_text(encoding="utf-8"))
        if extra_report["chosen"] != report["chosen"]:
            raise SystemExit(f"{path}: scored with other post-processing than {report_path}")
        card["evaluation"][name] = _scores_in(extra_report, sha256)
    _write_json_card(card_path, card)
    summary = held_out["summary"]
    print(
        f"{card_path}: post-processing {report['chosen']}; held-out Dice WT / TC / ET "
        + " / ".join(f"{summary[region]['dice_mean']:.3f}" for region in ("WT", "TC", "ET"))
    )
    return 0


def name_as_raw_scan_model(main_model: Path, companion: Path) -> None:
    """Write ``companion`` (a file beside ``main_model``) into the main model's JSON card as
    its model for raw scans; the main model's weights and their hash stay as they are."""
    from EoFormerSegmentationLib.models import RAW_SCAN_MODEL_KEY, model_card_path

    card_path = model_card_path(main_model)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card[RAW_SCAN_MODEL_KEY] = companion.name
    _write_json_card(card_path, card)
    print(f"{card_path}: {RAW_SCAN_MODEL_KEY} = {companion.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="the run's best.pt")
    parser.add_argument("--synthetic", type=Path, help="held-out synthetic cases")
    parser.add_argument(
        "--heldout-report",
        type=Path,
        help="report of tools/evaluate_real_cases.py on held-out real cases (the last model "
        "there is this checkpoint); makes the card of a model trained on real cases",
    )
    parser.add_argument(
        "--extra-report",
        action="append",
        default=[],
        metavar="NAME=REPORT",
        help="further reports of tools/evaluate_real_cases.py (thick slices, raw scans)",
    )
    parser.add_argument(
        "--compare-report",
        action="append",
        default=[],
        metavar="REPORT",
        help="report of tools/evaluate_real_cases.py scoring another model on the same "
        "held-out cases (e.g. the previous bundled model), for the card's comparison",
    )
    parser.add_argument("--synthetic-report", type=Path, help="saved evaluate report of them")
    parser.add_argument("--real-report", type=Path, help="saved evaluate report, real case")
    parser.add_argument("--training-command", help="the command that trained it")
    parser.add_argument(
        "--update-postprocessing",
        type=Path,
        metavar="REPORT",
        help="only write REPORT's chosen post-processing and the held-out scores it gives "
        "(and those of --extra-report, scored with the same settings) into the JSON card of "
        "--checkpoint, a bundled model; its weights and hash stay as they are",
    )
    parser.add_argument("--out", type=Path, help="default: the bundled model's place")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument(
        "--earlier-stage",
        action="append",
        default=[],
        metavar="CKPT=COMMAND",
        help="a checkpoint this run started from (train --init) and the command that trained "
        "it; repeat for longer chains, earliest first",
    )
    parser.add_argument(
        "--raw-scans-for",
        type=Path,
        metavar="MAIN_CKPT",
        help="bundle this checkpoint as the model for raw scans of MAIN_CKPT (beside it): "
        "its card gets the companion's file name, and the engine then segments the scans it "
        "had to co-register or skull-strip with this one",
    )
    parser.add_argument(
        "--real-case-selected",
        action="store_true",
        help="say in the card that the real case's score was used to choose between candidate "
        "checkpoints (it was still never trained on)",
    )
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.models import (
        bundled_model_path,
        file_sha256,
        load_checkpoint,
        save_checkpoint,
    )

    if arguments.update_postprocessing:
        return update_postprocessing(
            arguments.checkpoint, arguments.update_postprocessing, arguments.extra_report
        )
    if not arguments.training_command:
        raise SystemExit("give --training-command: the command that trained the checkpoint")
    out = arguments.out or bundled_model_path()
    if out.exists() and not arguments.overwrite:
        raise SystemExit(f"{out} exists; add --overwrite to replace it")
    if arguments.heldout_report:
        return bundle_real(arguments, out)
    if arguments.synthetic is None:
        raise SystemExit("give --synthetic (synthetic-only model) or --heldout-report")
    synthetic = score(arguments.checkpoint, arguments.synthetic, arguments.synthetic_report)
    real = score(arguments.checkpoint, REAL_CASE, arguments.real_report)
    dataset = json.loads((arguments.synthetic / "dataset.json").read_text(encoding="utf-8"))

    loaded = load_checkpoint(arguments.checkpoint, with_raw_scan_model=False)
    card = dict(loaded.card)
    card["name"] = out.stem
    card["intended_use"] = INTENDED_USE
    card["training_data"] = dict(
        card.get("training_data", {}),
        real_cases=[],
        note="trained on synthetic cases only; no real patient image was used in training "
        "or validation",
    )
    card["training_command"] = arguments.training_command
    stages = []
    for entry in arguments.earlier_stage:
        path, _, command = entry.partition("=")
        earlier = load_checkpoint(Path(path), with_raw_scan_model=False).card
        stages.append(
            {
                "sha256": file_sha256(Path(path)),
                "training_command": command,
                **{key: earlier.get(key) for key in ("training_data", "training", "validation")},
            }
        )
    if stages:
        card["earlier_training_stages"] = stages
    card["trained_checkpoint_sha256"] = file_sha256(arguments.checkpoint)
    card["evaluation"] = {
        "metrics": "Dice and HD95 (mm) per region, BraTS conventions (both empty: Dice 1, "
        "HD95 0; one empty: HD95 373.13)",
        "inference": "sliding window 128^3, overlap 0.5, Gaussian blending, no test-time "
        "augmentation, default post-processing",
        "held_out_synthetic": dict(
            scores(synthetic),
            generator_version=dataset.get("generator_version"),
            seeds=dataset.get("seeds"),
            command=f"eoformer synth --out heldout --cases {len(synthetic['cases'])} --seed 0"
            f" && eoformer evaluate --cases heldout --model {out.name}",
        ),
        "real_case": dict(
            scores(real),
            reference="consensus of five BraTS 2020 algorithms (seg_consensus.nii.gz)",
            used_in_training=False,
            used_for_model_selection=arguments.real_case_selected,
        ),
    }
    save_checkpoint(out, loaded.model, card)
    print(json.dumps({"file": str(out), "sha256": file_sha256(out)}, indent=2))
    for kind, report in (("synthetic", synthetic), ("real", real)):
        for region, values in report["summary"].items():
            print(
                f"{kind:9s} {region}: Dice {values['dice_mean']:.3f} +- {values['dice_std']:.3f}"
                f"  HD95 {values['hd95_mean']:.1f} mm"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
