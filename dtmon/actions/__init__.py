"""Guarded actions: a pure planner, the executor that runs its plans, and the guards around them.

Nothing here imports Textual; the screens in `dtmon.screens.actions` drive these modules.
"""
