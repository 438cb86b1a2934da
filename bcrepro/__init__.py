"""bcrepro: reproduce and extend "Bayesian Compression for Deep Learning" (Louizos, Ullrich, Welling, NIPS 2017)."""
__version__ = "0.1.0"
