"""The EoFormer network: encoder, edge-oriented decoder, re-parameterisation, official weights."""

from .eoformer import EoFormer, load_official_state_dict

__all__ = ["EoFormer", "load_official_state_dict"]
