"""Data pipeline: readers, tokenisers, packing, a resumable sampler, and the embedded corpus."""

from .packing import PackedSequences, load_tokens, pack_documents, split_tokens
from .readers import is_token_source, iter_documents, list_files, load_token_file, save_token_file
from .sampler import ResumableSampler
from .tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer, train_bpe

__all__ = ["BPETokenizer", "ByteTokenizer", "PackedSequences", "ResumableSampler", "Tokenizer",
           "is_token_source", "iter_documents", "list_files", "load_token_file", "load_tokens",
           "pack_documents", "save_token_file", "split_tokens", "load_tokenizer", "train_bpe"]
