"""Accuracy evaluation of the analysis core on labelled public datasets (../shared/data)."""
