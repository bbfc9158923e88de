"""The model-card dialog summarises the bundled model's card in a few readable lines."""

from __future__ import annotations

import json


def test_the_bundled_model_card_reads_as_a_summary(module):
    from EoFormerSegmentationLib.models import bundled_model_path

    path = bundled_model_path()
    card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    text = module.EoFormerSegmentationLogic.describeModelCard(path, card)
    assert text.splitlines()[0] == "eoformer_glioma_real_v2"
    assert "Training data: trained on 18 real BraTS cases" in text
    assert "Held-out results: Dice WT " in text and "on 6 real cases" in text
    assert "not for clinical use" in text
    assert "{'case'" not in text  # no raw case list dumped into the dialog


def test_the_bundled_model_names_its_companion_for_raw_scans(module):
    from EoFormerSegmentationLib.models import (
        RAW_SCAN_MODEL_KEY,
        bundled_model_path,
        read_model_card,
    )

    path = bundled_model_path()
    card = read_model_card(path)
    companion = path.parent / card[RAW_SCAN_MODEL_KEY]
    assert companion.is_file() and companion.stat().st_size < 30_000_000
    companion_card = read_model_card(companion)
    assert "raw scans" in companion_card["use"] and "not for clinical use" in str(companion_card)
    text = module.EoFormerSegmentationLogic.describeModelCard(path, card)
    assert f"segmented by its companion model {companion.stem}" in text
