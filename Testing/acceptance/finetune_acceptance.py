"""Fine-tuning acceptance: does learning from one corrected case help it without forgetting?

Starting from a model (the bundled one by default), this script

1. scores the model on the labelled real case and on held-out synthetic cases
   (seeds 0-9, never used for training or replay),
2. fine-tunes it on the real case with ``eoformer finetune`` (its label as the correction),
3. scores the fine-tuned model on the same cases,

prints a table and writes ``acceptance.json``. It passes (exit 0) when every region whose Dice
on the real case was below 0.95 improved and the mean Dice on the synthetic cases dropped by no
more than 0.02. Run from the repository root::

    python Testing/acceptance/finetune_acceptance.py --out runs/finetune_acceptance

Every step is a command-line call, so the numbers are those a user gets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPOSITORY = Path(__file__).resolve().parents[2]
REAL_CASE = REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-FG-6692"
DICE_GOOD_ENOUGH = 0.95
ALLOWED_SYNTHETIC_DROP = 0.02


def eoformer(*arguments: str) -> None:
    """Run one ``eoformer`` command, failing loudly."""
    command = [sys.executable, "-m", "EoFormerSegmentationLib", *arguments]
    print("$ eoformer " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True)


def evaluate(model: str, cases: List[Path], report: Path) -> Dict[str, Any]:
    """Cohort scores of ``model`` on ``cases`` (the ``evaluate --cases`` JSON).

    A report left by an earlier run is reused only when it scores this very model file.
    """
    from EoFormerSegmentationLib.models import file_sha256

    if report.exists():
        saved = json.loads(report.read_text(encoding="utf-8"))
        if saved["model"]["sha256"] == file_sha256(model):
            return saved
    eoformer("evaluate", "--cases", *map(str, cases), "--model", model, "--json", str(report))
    return json.loads(report.read_text(encoding="utf-8"))


def mean_dice(summary: Dict[str, Dict[str, float]]) -> float:
    """Mean over the regions (WT, TC, ET) of their mean Dice."""
    return sum(region["dice_mean"] for region in summary.values()) / len(summary)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="working folder")
    parser.add_argument("--model", help="model to start from (default: the bundled model)")
    parser.add_argument("--iterations", type=int, default=150, help="fine-tuning steps (150)")
    parser.add_argument("--crop", type=int, default=96, help="crop edge in voxels (96)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4)")
    parser.add_argument("--synthetic-cases", type=int, default=10, help="held-out cases (10)")
    parser.add_argument(
        "--synthetic",
        type=Path,
        help="folder of held-out synthetic cases already written by 'eoformer synth' with "
        "seeds 0 and up (default: written into --out)",
    )
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.labels import REGIONS
    from EoFormerSegmentationLib.models import default_model_path

    model = arguments.model or str(default_model_path())
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    synthetic = arguments.synthetic or out / "heldout_synthetic"
    if arguments.synthetic is None and not (synthetic / "dataset.json").exists():
        eoformer(
            "synth", "--out", str(synthetic), "--cases", str(arguments.synthetic_cases),
            "--seed", "0",
        )  # fmt: skip
    cases = {"real": [REAL_CASE], "synthetic": [synthetic]}

    before = {
        kind: evaluate(model, found, out / f"before_{kind}.json") for kind, found in cases.items()
    }
    finetuned = out / "finetuned.pt"
    started = time.perf_counter()
    eoformer(
        "finetune", "--model", model, "--cases", str(REAL_CASE), "--out", str(finetuned),
        "--iterations", str(arguments.iterations), "--crop", str(arguments.crop),
        "--lr", str(arguments.lr), "--device", "cpu", "--overwrite",
    )  # fmt: skip
    finetune_seconds = time.perf_counter() - started
    after = {
        kind: evaluate(str(finetuned), found, out / f"after_{kind}.json")
        for kind, found in cases.items()
    }

    rows = []
    accepted = True
    for region in REGIONS:
        real_before = before["real"]["summary"][region]["dice_mean"]
        real_after = after["real"]["summary"][region]["dice_mean"]
        needs_gain = real_before < DICE_GOOD_ENOUGH
        improved = real_after > real_before
        accepted &= improved or not needs_gain
        rows.append((region, real_before, real_after, needs_gain, improved))
    synthetic_before = mean_dice(before["synthetic"]["summary"])
    synthetic_after = mean_dice(after["synthetic"]["summary"])
    synthetic_drop = synthetic_before - synthetic_after
    accepted &= synthetic_drop <= ALLOWED_SYNTHETIC_DROP

    print(f"\nfine-tuning took {finetune_seconds:.0f} s")
    print("| region | real Dice before | real Dice after | must improve | improved |")
    print("| --- | --- | --- | --- | --- |")
    for region, real_before, real_after, needs_gain, improved in rows:
        print(f"| {region} | {real_before:.3f} | {real_after:.3f} | {needs_gain} | {improved} |")
    print(
        f"\nmean Dice on {arguments.synthetic_cases} held-out synthetic cases: "
        f"{synthetic_before:.3f} -> {synthetic_after:.3f} (drop {synthetic_drop:+.3f}, "
        f"allowed {ALLOWED_SYNTHETIC_DROP})"
    )
    print("ACCEPTED" if accepted else "NOT ACCEPTED")
    result = {
        "model": before["real"]["model"],
        "finetuned": after["real"]["model"],
        "finetune_seconds": round(finetune_seconds, 1),
        "settings": {
            "iterations": arguments.iterations,
            "crop": arguments.crop,
            "lr": arguments.lr,
            "device": "cpu",
        },
        "real_dice": {region: {"before": b, "after": a} for region, b, a, _, _ in rows},
        "synthetic_mean_dice": {"before": synthetic_before, "after": synthetic_after},
        "accepted": bool(accepted),
    }
    (out / "acceptance.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())
