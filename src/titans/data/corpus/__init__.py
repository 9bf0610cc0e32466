"""The embedded default corpus: five public-domain books for training, one for validation.

Taken unchanged (Project Gutenberg header/footer already stripped) from the project's
Gutenberg collection (``../shared/data/gutenberg``), split by book as there; see README.md.
"""

from pathlib import Path

HERE = Path(__file__).parent
TRAIN = HERE / "train.jsonl.gz"
VALIDATION = HERE / "validation.jsonl.gz"
