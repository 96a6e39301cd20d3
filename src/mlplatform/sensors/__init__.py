"""Sensors (landing files, drift, run failures) arrive with the monitoring stage."""
