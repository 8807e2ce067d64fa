"""Making models: contrastive training and fine-tuning (train), image-caption data and
augmentation (data), retrieval metrics and zero-shot classification (evaluate), and text
towers taught other languages (distill)."""
