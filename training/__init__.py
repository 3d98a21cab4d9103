"""givetake training: data loading, fine-tuning, thresholds, evaluation and the model store."""
