"""clipsearch: semantic image search on CLIP, with indexing, querying and fine-tuning."""

from .encoder import Encoder, load_model
from .preprocess import ImageError
from .weights import WeightsError

__all__ = ["Encoder", "ImageError", "WeightsError", "load_model"]
__version__ = "0.1.0"
