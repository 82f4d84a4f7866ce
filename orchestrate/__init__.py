"""Dagster definitions that run meltano.yml's jobs on its schedules."""
