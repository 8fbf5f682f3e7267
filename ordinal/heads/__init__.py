"""Ordinal heads: cumulative link (logit/probit/cloglog), CORAL and CORN, in a registry."""

from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._cutpoints import OrderedCutpoints, default_cutpoints
from ordinal.heads._output import OrdinalOutput, cumulative_to_label, cumulative_to_proba
from ordinal.heads._registry import HEADS, available_heads, get_head_class, register_head
from ordinal.heads.coral import CoralDecoder, CoralHead
from ordinal.heads.corn import CornDecoder, CornHead
from ordinal.heads.cumulative_link import CumulativeLinkDecoder, CumulativeLinkHead

__all__ = [
    "HEADS",
    "CoralDecoder",
    "CoralHead",
    "CornDecoder",
    "CornHead",
    "CumulativeLinkDecoder",
    "CumulativeLinkHead",
    "OrderedCutpoints",
    "OrdinalDecoder",
    "OrdinalHead",
    "OrdinalOutput",
    "available_heads",
    "cumulative_to_label",
    "cumulative_to_proba",
    "default_cutpoints",
    "get_head_class",
    "register_head",
]
