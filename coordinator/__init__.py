"""The coordinator: CLI, planning, aggregation, reports."""
