"""Scheduled maintenance jobs, run by the clock process (`python -m jobs`), never by web workers.

Each job is a module in this package exposing `JOB = Job(...)`. Every run is claimed in the
database per scheduled slot first, so two clock processes (or a restart) never run a slot twice.
"""
