"""The BERT-CRF baseline (Table 2; "w/o SCS & w/o MCG" in Table 3): BGA-MNER with ``use_mcg=false``.

Not a second network: the same ``BGAMNER`` class builds only the BERT embeddings, the BERT layers
(run through their own ``forward``) and the CRF head, so its parameter names are exactly the
text-side names of a BGA-MNER model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bga_mner.models import build_model
from bga_mner.models.bga_mner import BGAMNER


def build_bert_crf(model_cfg: Mapping[str, Any], num_labels: int, pretrained: bool | None = None) -> BGAMNER:
    """BERT-CRF from a ``model:`` config (its visual and generation keys are ignored).

    Args:
        model_cfg: ``cfg.model``; num_labels: number of BIO labels;
        pretrained: as in ``build_model``.
    """
    return build_model({**dict(model_cfg), "use_mcg": False}, num_labels, pretrained=pretrained)
