"""bga-mner: a PyTorch Lightning suite for BGA-MNER (Chen et al., ACM MM 2023) and its experiments.

``from bga_mner import Tagger`` is the tagging API (``bga_mner.tagger``), imported on first use so
that ``import bga_mner`` stays free of torch.
"""

__version__ = "0.1.0"
__all__ = ["Tagger", "__version__"]


def __getattr__(name: str):
    if name == "Tagger":
        from bga_mner.tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'bga_mner' has no attribute {name!r}")
