"""The demo's synthetic dataset: generate.py writes one in MicroLens layout (videos.py draws its
clips), dataset.py generates the demo's own at its default location when a run needs it."""
