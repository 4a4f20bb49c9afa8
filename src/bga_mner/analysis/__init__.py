"""Analyses of a trained run: generative alignment (Fig. 3), sampled content (Fig. 4) and F1 on
the synthetic set's ambiguous names. One module per concern; every public name is re-exported here
(``from bga_mner.analysis import ...``):

* ``runs``: :func:`load_run` rebuilds a run's network and its test data with images (:class:`LoadedRun`).
* ``alignment``: Fig. 3 in numbers, image retrieval by generated visual features
  (:func:`alignment_features`, :func:`retrieval_from_features`, :class:`Retrieval`); its module
  docstring gives the choices the paper leaves open.
* ``masks``: Fig. 4 in numbers, the samplers' keep decisions per tweet (:func:`sampled_masks`,
  :class:`TweetMasks`) and pooled keep rates (:func:`keep_rates`, :class:`KeepRates`).
* ``ambiguous``: span F1 on the ambiguous names of the synthetic set (:func:`ambiguous_f1`).
* ``plots`` (shared drawing helpers), ``alignment_plots`` (:func:`draw_retrieval`,
  :func:`draw_similarity`) and ``mask_plots`` (:func:`draw_masks`, :func:`draw_keep_rates`): the
  figures, as matplotlib Figures made without pyplot.
"""

from bga_mner.analysis.alignment import (Retrieval, alignment_features, alignment_retrieval,
                                         cosine_matrix, masked_mean, recall_at_k,
                                         retrieval_from_features)
from bga_mner.analysis.alignment_plots import draw_retrieval, draw_similarity
from bga_mner.analysis.ambiguous import (SLICES, ambiguous_f1, format_scores, run_ambiguous_f1,
                                         run_slice_f1, slice_f1, slice_positions, slice_tags,
                                         synthetic_root)
from bga_mner.analysis.mask_plots import draw_keep_rates, draw_masks
from bga_mner.analysis.masks import KeepRates, TweetMasks, collect_masks, keep_rates, sampled_masks
from bga_mner.analysis.plots import DROPPED_FACE, DROPPED_TEXT, ENTITY_COLOURS, greyed
from bga_mner.analysis.runs import LoadedRun, load_run

__all__ = ["ENTITY_COLOURS", "KeepRates", "LoadedRun", "Retrieval", "SLICES", "TweetMasks",
           "alignment_features",
           "alignment_retrieval", "ambiguous_f1", "collect_masks", "cosine_matrix", "draw_keep_rates",
           "draw_masks", "draw_retrieval", "draw_similarity", "format_scores", "greyed", "keep_rates",
           "load_run", "masked_mean", "recall_at_k", "retrieval_from_features", "run_ambiguous_f1",
           "run_slice_f1", "sampled_masks", "slice_f1", "slice_positions", "slice_tags",
           "synthetic_root"]
