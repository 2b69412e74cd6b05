"""Evaluation: AVC, classification probes, retrieval, localisation and synchronisation."""
