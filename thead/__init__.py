"""thead: one photo of a face to a talking-head video, and head-pose / expression editing.

The package is organised by concern, data flowing one way:
``io`` (video/audio/image) -> ``face`` (detection, landmarks, tracking, crop) -> ``facemodel`` / ``fitting``
(3D face model) -> ``render`` / ``engines`` -> ``metrics``; ``cache`` holds the on-disk stage caches.
The CLI lives in ``thead.cli`` and ``thead.commands``; the library never imports them.
"""

__version__ = "0.1.0"
