"""Making models: contrastive training and fine-tuning (train: the run, its data batches,
checkpoints and loop; losses: the objective; trainable: what trains and how fast; world:
processes and precision), image-caption data and augmentation (data), retrieval metrics
and zero-shot classification (evaluate), and text towers taught other languages
(distill)."""
