"""``titans tokenizer train|encode``: train a byte-level BPE offline; pre-tokenise a corpus."""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from pathlib import Path


def _texts(inputs: list[str], text_field: str, max_chars: int | None) -> Iterator[str]:
    from titans.data import iter_documents

    total = 0
    for doc in itertools.chain.from_iterable(iter_documents(p, text_field) for p in inputs):
        if max_chars is not None and total + len(doc) > max_chars:
            doc = doc[: max_chars - total]
        total += len(doc)
        # feed long books in pieces so the trainer's memory stays bounded
        for i in range(0, len(doc), 1 << 20):
            yield doc[i: i + (1 << 20)]
        if max_chars is not None and total >= max_chars:
            return


def run_train(args: argparse.Namespace) -> int:
    from titans.data import list_files, train_bpe

    for p in args.input:
        list_files(p)  # validates paths before the long work
    t0 = time.perf_counter()
    tok = train_bpe(_texts(args.input, args.text_field, args.max_chars), args.vocab_size, args.min_frequency,
                    show_progress=not args.quiet)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(out)
    print(f"trained a byte-level BPE with {tok.vocab_size} tokens in {time.perf_counter() - t0:.1f} s "
          f"→ {out / 'tokenizer.json'} (separator {tok.eos_token!r} = id {tok.eos_id})")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from titans.data import load_tokenizer, load_tokens, save_token_file

    tok = load_tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    tokens = load_tokens(args.input, tok, args.text_field, args.max_tokens)
    save_token_file(args.output, tokens)
    nbytes = int(tok.token_bytes()[tokens].sum())
    print(f"{len(tokens):,} tokens ({nbytes / max(1, len(tokens)):.2f} bytes/token) in "
          f"{time.perf_counter() - t0:.1f} s → {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer or pre-tokenise a corpus")
    cmds = p.add_subparsers(dest="tokenizer_command", required=True)
    t = cmds.add_parser("train", help="train a byte-level BPE (GPT-2 style) on text/jsonl(.gz) files")
    t.add_argument("--input", action="append", required=True, help="file or folder (repeatable)")
    t.add_argument("--output", required=True, help="folder for tokenizer.json")
    t.add_argument("--vocab-size", type=int, default=32000)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--max-chars", type=int, default=None, help="train on at most this many characters")
    t.add_argument("--text-field", default="text")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)
    e = cmds.add_parser("encode", help="tokenise and pack a corpus into a uint16/uint32 token file")
    e.add_argument("--tokenizer", default="byte", help="'byte', tokenizer.json or its folder")
    e.add_argument("--input", required=True)
    e.add_argument("--output", required=True, help="*.npy, *.u16.bin or *.u32.bin")
    e.add_argument("--max-tokens", type=int, default=None)
    e.add_argument("--text-field", default="text")
    e.set_defaults(func=run_encode)
