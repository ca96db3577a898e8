"""spacetrain: CI/CD for QLoRA adapters trained on Hugging Face Docker Spaces."""

__version__ = "0.1.0"

__all__ = ["__version__"]
