"""mechrare: why larger models learn rare tasks that smaller ones miss.

Train a ladder of OLMo-2 models on a task mixture with a dense checkpoint
series, then analyse and report rare-task retention. Heavy libraries (torch,
transformers, transformer_lens, sae_lens) are imported lazily, where used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
