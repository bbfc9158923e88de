"""Post-processing rules chosen per model: islands far from the tumor, and the card's settings."""

from __future__ import annotations

import numpy as np
import pytest
from EoFormerSegmentationLib.postprocessing import PostprocessingSettings, postprocess_regions


def _tumor_and_island(island_probability: float = 0.9) -> np.ndarray:
    """A 30 mL tumor (WT, with a TC and ET inside) and a 2 mL WT island far from it."""
    probabilities = np.zeros((3, 100, 100, 100), np.float32)
    probabilities[0, 10:41, 10:41, 10:41] = 0.95  # 29.8 mL
    probabilities[1, 18:33, 18:33, 18:33] = 0.9
    probabilities[2, 22:29, 22:29, 22:29] = 0.9
    probabilities[0, 80:93, 80:93, 80:92] = island_probability  # 2.0 mL, 50 voxels away
    return probabilities


def test_an_island_smaller_than_a_fraction_of_the_tumor_is_removed():
    probabilities = _tumor_and_island()
    kept = postprocess_regions(probabilities, 0.001, PostprocessingSettings())
    assert kept[0, 85, 85, 85]  # the default keeps a 2 mL island
    cleaned = postprocess_regions(
        probabilities, 0.001, PostprocessingSettings(min_component_fraction=0.1)
    )
    assert not cleaned[0, 85, 85, 85]
    assert cleaned[0].sum() == 31**3  # the tumor itself is untouched
    assert cleaned[2].sum() == 7**3


def test_an_island_the_network_was_unsure_about_is_removed_by_probability_mass():
    unsure = _tumor_and_island(island_probability=0.55)
    settings = PostprocessingSettings(min_component_mass=1.5)
    cleaned = postprocess_regions(unsure, 0.001, settings)
    assert not cleaned[0, 85, 85, 85]  # 2.0 mL x 0.55 = 1.1 mL of probability mass
    sure = postprocess_regions(_tumor_and_island(0.95), 0.001, settings)
    assert sure[0, 85, 85, 85]  # 2.0 mL x 0.95 = 1.9 mL


def test_a_small_second_core_becomes_edema_and_the_main_core_stays():
    probabilities = _tumor_and_island()
    probabilities[1, 36:39, 12:15, 12:15] = 0.9  # 27 voxels of core, apart from the main one
    probabilities[2, 36:39, 12:15, 12:15] = 0.9
    default = postprocess_regions(probabilities, 0.001, PostprocessingSettings())
    assert default[1, 37, 13, 13] and default[2, 37, 13, 13]
    settings = PostprocessingSettings(min_core_fraction=0.25)
    cleaned = postprocess_regions(probabilities, 0.001, settings)
    assert not cleaned[1, 37, 13, 13] and not cleaned[2, 37, 13, 13]
    assert cleaned[0, 37, 13, 13]  # still whole tumor: edema
    assert cleaned[1].sum() == 15**3 and cleaned[2].sum() == 7**3  # the main core untouched
    assert (cleaned[0] == default[0]).all()
    satellite = probabilities.copy()
    satellite[1, 36:39, 12:15, 12:15] = 0
    satellite[2, 36:39, 12:15, 12:15] = 0
    satellite[1, 60:70, 60:70, 60:69] = 0.9  # a second focus of 900 voxels, 27 % of 3,375
    kept = postprocess_regions(satellite, 0.001, settings)
    assert kept[1, 65, 65, 65] and kept[0, 65, 65, 65]
    assert not postprocess_regions(satellite, 0.001, PostprocessingSettings(min_core_fraction=0.3))[
        1, 65, 65, 65
    ]


def test_a_model_card_carries_its_post_processing():
    card = {"postprocessing": {"min_component_fraction": 0.25, "min_enhancing_ml": 2, "x": 1}}
    settings = PostprocessingSettings.from_card(card)
    assert settings.min_component_fraction == 0.25
    assert settings.min_enhancing_ml == 2.0
    assert settings.threshold == 0.5
    assert PostprocessingSettings.from_card({}) == PostprocessingSettings()
    assert PostprocessingSettings.from_card(None) == PostprocessingSettings()


def test_a_region_s_own_threshold_gives_back_what_the_network_was_unsure_about():
    probabilities = _tumor_and_island()
    probabilities[0, 41:46, 10:41, 10:41] = 0.3  # an unsure rim of edema, 5 voxels thick
    probabilities[2, 29:31, 22:29, 22:29] = 0.3  # and an unsure edge of the enhancing tumor
    default = postprocess_regions(probabilities, 0.001, PostprocessingSettings())
    assert not default[0, 43, 20, 20]
    settings = PostprocessingSettings(threshold_wt=0.25)
    assert settings.region_thresholds() == (0.25, 0.5, 0.5)
    lowered = postprocess_regions(probabilities, 0.001, settings)
    assert lowered[0, 43, 20, 20] and lowered[0].sum() == default[0].sum() + 5 * 31 * 31
    assert (lowered[1:] == default[1:]).all()  # the core and the enhancing tumor keep 0.5
    enhancing = postprocess_regions(probabilities, 0.001, PostprocessingSettings(threshold_et=0.2))
    assert enhancing[2].sum() == default[2].sum() + 2 * 7 * 7
    assert enhancing[1].sum() == default[1].sum()  # within the core already


def test_a_card_s_region_thresholds_round_trip_and_bad_ones_are_refused(tmp_path):
    from engine_cases import TINY_MODEL_CONFIG
    from EoFormerSegmentationLib.errors import InputError
    from EoFormerSegmentationLib.models import load_checkpoint, save_checkpoint
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    settings = PostprocessingSettings(threshold_wt=0.3, min_component_fraction=0.1)
    assert "threshold_tc" not in settings.to_json()  # only the regions that have their own
    assert PostprocessingSettings.from_card({"postprocessing": settings.to_json()}) == settings
    assert PostprocessingSettings.from_card({"postprocessing": {"threshold_et": None}}) == (
        PostprocessingSettings()
    )
    bad = save_checkpoint(
        tmp_path / "bad.pt",
        EoFormer(**TINY_MODEL_CONFIG),
        {"postprocessing": {"threshold_et": 1.5}},
    )
    with pytest.raises(InputError, match=r"bad\.pt.*threshold_et = 1\.5.*between 0 and 1"):
        load_checkpoint(bad)
