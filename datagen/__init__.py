"""codedance-datagen: verified training data for models that think with images through code."""

__version__ = "0.5.0"
GENERATOR_VERSION = __version__

__all__ = ["GENERATOR_VERSION", "__version__"]
