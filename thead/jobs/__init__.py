"""Jobs: what the commands run on input items, on ``thead.stages.Face`` records (never on cache files).

``items`` collects inputs and runs batches (one failure never stops the rest); ``reenact``, ``edit`` and
``evaluate`` are the jobs; ``pairs`` pairs sources with drivers and writes the manifest; ``render`` holds what the
rendering jobs share (options, engine, output keys and sidecars, paste-back, video writing).
"""
