"""Random-text parity for the Unigram tokenizers (t5_unigram, mt5_bytefallback): like
fuzz_tokenizers.py, with a pool aimed at the precompiled charsmap (full-width and compatibility
characters, combining marks after them, Hangul jamo, Indic conjuncts, emoji sequences, space runs).

    /tmp/venv/bin/python tests/golden/fuzz_tokenizers_unigram.py --seed 1 --count 20000 --out /tmp/uni_fuzz.json
    PEFT_TOKENIZER_FUZZ=/tmp/uni_fuzz.json build/tests/test_tokenizer "[fuzz]"

Not run by CI. 2026-12-05: 0 of 120,000 (seeds 1, 2, 3 × 20,000 texts × 2 tokenizers) differed.
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

from fuzz_tokenizers import EDGE, random_char

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "tokenizers")
CASES = ["t5_unigram", "mt5_bytefallback"]
UNIGRAM_EDGE = EDGE + [
    "  ", "   ", " \u3000 ", "\uff21", "\uff41", "\uff11", "\uff76", "\uff9e", "\uff9f", "\u0301", "\u0308", "\u0323",
    "\u20d7", "\ufe0f", "\u200d", "\u200b", "\ufeff", "\ufb01", "\u2122", "\u2460", "\u337b", "\u00bd", "\u00b2",
    "\U0001d400", "\U0001f1eb", "\U0001f3fd", "\u1100", "\u1161", "\u11a8", "\u0915\u094d", "\u0937", "\u093f",
    "\u0600", "\u0e2a\u0e27\u0e31", "<extra_id_0>", "<pad>", "<unk>", "<0x41>", "\u0f00", "A\u0301", "\uff21\u0301"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = UNIGRAM_EDGE + [random_char(rng) for _ in range(230)]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(args.count)]
    out = {}
    for case in CASES:
        tok = Tokenizer.from_file(os.path.join(DATA, case, "tokenizer.json"))
        out[case] = [{"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
                     for t, ids in ((t, tok.encode(t).ids) for t in texts)]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"wrote {args.count} texts x {len(out)} tokenizers to {args.out}")


if __name__ == "__main__":
    main()
