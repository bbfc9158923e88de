"""Post-processing rules chosen per model: islands far from the tumor, and the card's settings."""

from __future__ import annotations

import numpy as np
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


def test_a_model_card_carries_its_post_processing():
    card = {"postprocessing": {"min_component_fraction": 0.25, "min_enhancing_ml": 2, "x": 1}}
    settings = PostprocessingSettings.from_card(card)
    assert settings.min_component_fraction == 0.25
    assert settings.min_enhancing_ml == 2.0
    assert settings.threshold == 0.5
    assert PostprocessingSettings.from_card({}) == PostprocessingSettings()
    assert PostprocessingSettings.from_card(None) == PostprocessingSettings()
