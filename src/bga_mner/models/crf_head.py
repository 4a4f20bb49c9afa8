"""CRF decoder (Sec. 3.6, Eqs. 9-10): dropout + linear emissions + ``torchcrf.CRF``.

Precision: the emissions follow the network (bf16 under ``trainer.precision=bf16-mixed``), but the
CRF's log-partition (a logsumexp chain over the words) and Viterbi run in float32 with autocast off,
on float32 emissions and transitions, whatever the caller's autocast state or the parameters' dtype
(``bf16-true``): :meth:`CRFHead.nll`, :meth:`CRFHead.decode`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF


class CRFHead(nn.Module):
    """Emission scores of the word-start states and a linear-chain CRF over the labels.

    Args:
        hidden_size: width of the final textual states T^N.
        num_labels: number of BIO labels.
        dropout: dropout on the states before the emission layer.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.emission = nn.Linear(hidden_size, num_labels)
        self.crf = CRF(num_labels, batch_first=True)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, W, d) word states -> (B, W, num_labels) emission scores."""
        return self.emission(self.dropout(states))

    @staticmethod
    def _crf_mask(word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # torchcrf needs the first step on in every row; a row with no word is scored and then ignored
        mask = word_mask.bool().clone()
        empty = ~mask.any(1)
        mask[:, 0] = True
        return mask, empty

    def nll(self, emissions: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold labels (Eq. 10), mean over the batch.

        Args:
            emissions: (B, W, L); labels: (B, W) long; word_mask: (B, W) bool, a prefix mask per row.
        """
        mask, empty = self._crf_mask(word_mask)
        params = {name: p.float() for name, p in self.crf.named_parameters()}  # no copy when fp32
        with torch.autocast(emissions.device.type, enabled=False):  # Eq. 10's log-partition in fp32
            llh = torch.func.functional_call(self.crf, params, (emissions.float(), labels),
                                             {"mask": mask, "reduction": "none"})  # (B,)
        return -torch.where(empty, torch.zeros_like(llh), llh).mean()

    def decode(self, emissions: torch.Tensor, word_mask: torch.Tensor) -> list[list[int]]:
        """Viterbi label ids of the present words of each row (``[]`` for a row with none)."""
        mask, empty = self._crf_mask(word_mask)
        with torch.autocast(emissions.device.type, enabled=False):  # Viterbi in fp32 (torchcrf's sums
            paths = self.crf.decode(emissions.float(), mask=mask)  # are out of place: they promote)
        return [[] if e else p for p, e in zip(paths, empty.tolist())]
