"""bga-mner: a PyTorch Lightning suite for BGA-MNER (Chen et al., ACM MM 2023) and its experiments."""

__version__ = "0.1.0"
