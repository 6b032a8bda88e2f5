"""Stages of the thead pipeline (preprocess -> fit-3dmm -> reenact/edit -> evaluate) and batch running.

Each stage takes one input item and writes one stage folder through ``thead.cache``; ``thead.pipeline.batch``
collects inputs from files, directories or stdin lists and runs a stage over them, collecting failures.
"""
