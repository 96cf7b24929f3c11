"""Runnable, importable examples of lloca-hep in analysis frameworks (see the README there)."""
