"""Choosing the post-processing on held-out cases: each region's threshold is chosen only where
it helps, and the choice is also scored on cases it did not see (leave one out)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from EoFormerSegmentationLib.postprocessing import PostprocessingSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import evaluate_real_cases as evaluate  # noqa: E402


def _cautious_case(edema_probability: float):
    """A tumor whose core the network is sure of, and whose edema it gives ``edema_probability``."""
    probabilities = np.zeros((3, 40, 40, 40), np.float32)
    reference = np.zeros((40, 40, 40), np.uint8)
    reference[8:32, 8:32, 8:32] = 2  # edema
    reference[14:26, 14:26, 14:26] = 1  # core
    reference[17:23, 17:23, 17:23] = 4  # enhancing
    probabilities[0][reference > 0] = edema_probability
    probabilities[0][np.isin(reference, (1, 4))] = 0.95
    probabilities[1][np.isin(reference, (1, 4))] = 0.9
    probabilities[2][reference == 4] = 0.9
    regions = [np.isin(reference, values) for values in ((1, 2, 4), (1, 4), (4,))]
    return probabilities, regions


def _swept(edema_probabilities):
    swept = evaluate.SweptCases()
    for value in edema_probabilities:
        swept.add(*_cautious_case(value), (2.0, 2.0, 2.0))
    return swept


def test_a_cautious_whole_tumor_gets_its_own_threshold():
    swept = _swept([0.35, 0.45, 0.25])
    chosen = evaluate.choose_settings(swept, evaluate.settings_grid(), [0, 1, 2])
    assert chosen.threshold_wt == 0.2  # every edema voxel above it, nothing else
    assert chosen.threshold_tc is None and chosen.threshold_et is None  # 0.5 was right
    assert swept.mean(chosen, [0, 1, 2]) == 1.0
    assert swept.mean(PostprocessingSettings(), [0, 1, 2]) < 0.9


def test_fixed_settings_are_applied_as_they_are():
    swept = _swept([0.35])
    fixed = PostprocessingSettings(min_component_fraction=0.1)
    assert evaluate.choose_settings(swept, [fixed], [0]) == fixed


def test_leave_one_out_scores_each_case_with_a_choice_made_without_it():
    # a and b: unsure true edema; c: the same unsure "edema" is not tumor at all
    swept = _swept([0.35, 0.35, 0.35])
    swept.cases[2][1][0][...] = swept.cases[2][1][1]
    result = evaluate.cross_validated(swept, evaluate.settings_grid(), ["a", "b", "c"])
    assert "threshold_wt" not in result["per_case"]["a"]["settings"]  # b's gain is c's loss
    assert result["per_case"]["a"]["dice"]["WT"] < 0.5
    assert result["per_case"]["c"]["settings"]["threshold_wt"] <= 0.3  # chosen on a and b
    assert result["per_case"]["c"]["dice"]["WT"] < 0.5  # what that choice costs case c
    chosen = evaluate.choose_settings(swept, evaluate.settings_grid(), [0, 1, 2])
    assert chosen.threshold_wt <= 0.3
    assert result["mean_dice"] < swept.mean(chosen, [0, 1, 2])  # below the flattering score


def test_a_lower_threshold_that_adds_a_far_fragment_is_not_chosen():
    # the network is unsure (0.3) of a true rim of the core, and as unsure of a false core
    # fragment at the far end of the edema: a lower TC threshold wins Dice, loses HD95
    reference = np.zeros((60, 40, 40), np.uint8)
    reference[4:56, 10:30, 10:30] = 2
    reference[8:20, 14:26, 14:26] = 1
    reference[11:17, 17:23, 17:23] = 4
    probabilities = np.zeros((3,) + reference.shape, np.float32)
    probabilities[0][reference > 0] = 0.95
    probabilities[1][np.isin(reference, (1, 4))] = 0.3  # the rim of the core
    probabilities[1][9:19, 15:25, 15:25] = 0.9
    probabilities[1][44:52, 14:26, 14:26] = 0.3  # the false fragment, 24 voxels away
    probabilities[2][reference == 4] = 0.9
    regions = [np.isin(reference, values) for values in ((1, 2, 4), (1, 4), (4,))]
    swept = evaluate.SweptCases()
    for _ in range(3):
        swept.add(probabilities, regions, (2.0, 2.0, 2.0))
    lower, cases = PostprocessingSettings(threshold_tc=0.2), [0, 1, 2]
    assert swept.mean(lower, cases) > swept.mean(PostprocessingSettings(), cases)
    assert (
        swept.mean_hd95(lower, cases)[1] > swept.mean_hd95(PostprocessingSettings(), cases)[1] + 1
    )
    chosen = evaluate.choose_settings(swept, evaluate.settings_grid(), cases)
    assert chosen.threshold_tc is None
