"""The per-channel means and deviations that models normalise pixels with (pixels.py):
numbers alone, so that the command line lists models without importing numpy or PIL."""

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)
