"""The functional modes (unit, integration, event), run as single-worker jobs."""
