"""What people search photo archives, catalogues and datasets for, and how closely a faster
path must agree with the exact one.

One list serves every place that needs typical text queries without a user at hand: the
vector-index tuner (how many probes find what exact search finds) and the check of a
faster text tower (does it find what fp32 finds). No torch, no FAISS: `status` reads this.
"""

from __future__ import annotations

# The share of exact search's top-10 that a faster path must find, on average: the vector
# index presets are tuned to it, and a reduced-precision text tower must reach it.
AGREEMENT_TARGET = 0.95

SEARCH_PROMPTS = (
    "a dog",
    "a cat sleeping on a sofa",
    "a beach at sunset",
    "snow on the mountains",
    "a city street at night",
    "a birthday cake with candles",
    "a group of friends smiling at the camera",
    "a baby",
    "a red car parked by the road",
    "a plate of pasta",
    "fruit in a bowl",
    "flowers in a garden",
    "a screenshot of a phone",
    "a scanned document with text",
    "a bird on a branch",
    "a horse in a field",
    "a forest path in autumn",
    "a boat on a lake",
    "a wedding",
    "children playing football",
    "a bicycle",
    "a laptop on a desk",
    "a selfie",
    "a crowd at a concert",
    "fireworks",
    "a bridge over a river",
    "an old stone church",
    "a christmas tree",
    "a child's drawing",
    "a map",
    "a kitchen",
    "an airplane in the sky",
    "a photo of a tree",
    "a house",
    "a tall building",
    "the sea",
    "a train at a station",
    "a cow",
    "a fish",
    "an insect on a leaf",
    "clouds in the sky",
    "the moon",
    "stars at night",
    "a painting in a museum",
    "a statue",
    "a castle",
    "a bedroom",
    "an office",
)
