"""givetake serving: the shared predictor, archive scoring and the BentoML service."""
