"""Compression methods by name (``bcrepro methods`` lists them). A method is one short file that registers itself here."""
from .registry import METHODS, Method, get_method, register

# Importing a method module registers it.
from . import bc, dc, dense, dns, sparse_vd, sws  # noqa: E402,F401

__all__ = ["METHODS", "Method", "get_method", "register"]
