"""Face detection, landmarks (478-point face mesh or 68-point FAN), tracking through video, crop/align."""
