"""LLoCa core: Lorentz toolkit, representations, frames, frame choices, attention, messages.

All frame-related arithmetic is float64; see ``docs/architecture.md`` and the module docstrings.
"""
