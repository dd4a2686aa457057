"""Analysis: frames in, typed observations out. All inference lives here (detectors, pose,
speck finding, the scene model); the rules receive what it observed."""
