"""Data sources. Nothing here imports Textual: collectors return plain immutable data."""
