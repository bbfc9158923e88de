"""What the module tells users in Slicer's Help & Acknowledgement section."""

from __future__ import annotations

import types


def test_help_and_acknowledgement_cite_the_paper_and_warn_against_clinical_use(module):
    parent = types.SimpleNamespace(path=module.__file__)
    module.EoFormerSegmentation(parent)
    assert parent.title == "EoFormer Segmentation"
    assert parent.categories == ["Segmentation"]
    text = " ".join((parent.helpText + " " + parent.acknowledgementText).split())
    assert "She et al., MICCAI 2023" in text
    assert (
        "She D., Zhang Y., Zhang Z., Li H., Yan Z., Sun X." in text
        and "MICCAI 2023" in parent.acknowledgementText
    )
    assert "not for clinical use" in text.lower()
    assert "Every output names the model used" in text
    for segment in ("Necrotic tumor core", "Edema", "Enhancing tumor"):
        assert segment in text
    for region in ("whole tumor", "tumor core", "enhancing tumor"):
        assert region in text.lower()
    # saved training cases are copies of patient images, and the user is told so
    assert "copies of the patient images" in text
