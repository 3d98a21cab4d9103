"""The core both training and serving use: a checked model bundle, the predictor and its engines,
the model registry (run directories, the BentoML store, promotion), text normalisation, thresholds,
the lexical half, and the streaming record readers. It imports only ``givetake.labels`` and
``givetake.errors``; ``givetake.training`` and ``givetake.serving`` build on it and never on each other.
"""
