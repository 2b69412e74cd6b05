"""avssl: self-supervised audio-visual correspondence in PyTorch."""

__version__ = "0.1.0"
