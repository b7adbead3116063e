"""Golden data for the C++ tokenizer (io/): tokenizer.json files built locally with the
`tokenizers` library, configured like the real model families' files, and their encodings.

    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_tokenizers.py

Writes tests/golden/data/tokenizers/<case>/tokenizer.json (Tokenizer.save, pretty) and
expected.json for every case in CASES: for each text of TEXTS, ids (add_special_tokens=True),
ids_no_special, tokens (id_to_token of ids_no_special), decoded (of ids, specials kept) and
decoded_skip_special. No hub access: each BPE is trained with BpeTrainer on a local corpus
(Python stdlib docstrings, `import this`, and a hand-written multilingual block), then its
vocab/merges are put into a BPE model with the family's flags. The component settings mirror:
  opt_bytelevel         facebook/opt (GPT-2 byte-level, TemplateProcessing "</s> $A")
  llama3                Meta-Llama-3 (Split regex + ByteLevel(use_regex=False), ignore_merges)
  qwen2                 Qwen2 (NFC, Split regex with single digits, ByteLevel post-processor)
  llama2_sentencepiece  Llama-2 legacy (Prepend/Replace normalizer, byte fallback, Strip decoder)
  mistral_metaspace     newer SentencePiece-BPE (Metaspace prepend_scheme="first", split=False).
                        Its decoder is Metaspace as asked for, so byte-fallback tokens decode as
                        literal "<0xF0>" text; real Mistral/Llama non-legacy files (transformers'
                        LlamaConverter) use llama2_sentencepiece's Replace/ByteFallback/Fuse/Strip.
  added_tokens          byte-level with lstrip / rstrip / single_word / normalized added tokens;
                        it has an NFC normalizer so normalized=True and normalized=False differ
                        ("café" normalized=True also matches decomposed "cafe\u0301";
                        "naïve" normalized=False only matches the composed form). Added tokens
                        are not byte-level encoded, so the ByteLevel decoder turns their non-ASCII
                        characters into single bytes ("café" decodes to "caf\ufffd"): that is
                        what tokenizers and transformers do, and what expected.json records.
The tokenizers.Tokenizer results are the reference; the script asserts that transformers'
PreTrainedTokenizerFast(tokenizer_file=...) gives the same ids, and prints (and records under
"transformers_decode_differs" in expected.json) any text whose transformers decode differs.

Deterministic: the corpus is built in a fixed order, BpeTrainer breaks merge ties by pair, and
the SentencePiece-like alphabet is picked here (BpeTrainer's own limit_alphabet breaks ties among
equally frequent characters in Rust hash order, which changed the vocab from run to run). Repeated
runs give byte-identical files (checked with tokenizers 0.23.3, transformers 5.25.0, Python 3.11.7
of /tmp/venv, under different PYTHONHASHSEED and TOKENIZERS_PARALLELISM values); PYTHONHASHSEED=0 is
not needed but harmless. The docstrings come from the running Python, so another Python version
may train a slightly different vocab; the C++ tests read the committed tokenizer.json files, and
expected.json always matches them.
"""
import codecs
import collections
import contextlib
import importlib
import inspect
import io
import json
import os
import sys

import tokenizers
import transformers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                        processors, trainers)
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "tokenizers")

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------- training corpus
MODULES = ["argparse", "collections", "csv", "functools", "itertools", "json", "os", "pathlib", "random",
           "re", "string", "textwrap", "unittest"]
MULTILINGUAL = """\
Le café est très chaud. Ça coûte 3,50 € à Paris, où l'été est déjà là. Crème brûlée, naïve, résumé.
Die Straße ist groß und schön. Müller, Bäcker, Größe, Fußgänger, übermäßig, Äpfel.
El niño comió piñata en España. ¿Dónde está la señora? ¡Mañana!
Η γλώσσα είναι όμορφη. Καλημέρα κόσμε, ευχαριστώ πολύ. Αθήνα, Ελλάδα.
Привет, мир! Москва — столица России. Спасибо большое, до свидания.
日本語のテキストです。東京は大きな都市です。ありがとうございます。こんにちは世界。
中文测试。我们在北京学习中文。你好世界，谢谢你。今天天气很好。
안녕하세요. 한국어를 공부합니다. 감사합니다. 서울은 큰 도시입니다.
مرحبا بالعالم. اللغة العربية جميلة. شكرا جزيلا.
Emoji: 😀 😃 🎉 👍 🚀 ❤️ 🇫🇷 🇯🇵 👩‍👩‍👧 ✨ 🔥
Numbers: 0 1 2 3 42 100 2024 3.14159 1,000,000 12:30 99% #7 $5 -17 1e10 0x1F
"""


def corpus():
    """The training texts, in a fixed order."""
    with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the Zen
        texts = [codecs.decode(importlib.import_module("this").s, "rot13")]
    for name in MODULES:
        mod = importlib.import_module(name)
        texts.append(mod.__doc__ or "")
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr)
            if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
                texts.append(inspect.getdoc(obj) or "")
    texts += [MULTILINGUAL] * 30  # repeated so that multi-byte merges get learned
    return [t for t in texts if t]


# --------------------------------------------------------------- test texts
TEXTS = [
    "", " ", "  leading spaces", "trailing spaces   ", "a\tb", "\n", "line1\nline2\r\nline3\n\n\n",
    "  \n  x", "a    b", "Hello world", "HELLO World", "The quick brown fox jumps over the lazy dog.",
    "I'm you'll they've don't HE'LL She'S we'D it's", "1 12 123 1234 1234567 3.14159 1,000,000 2026-12-05",
    "x123y", "café naïve résumé", "cafe\u0301", "nai\u0308ve", "Straße ß groß", "Η γλώσσα είναι όμορφη",
    "Привет, мир!", "日本語のテキスト", "中文 测试", "안녕하세요", "مرحبا بالعالم", "😀 🎉 🚀",
    "👩\u200d👩\u200d👧 family", "flags 🇫🇷🇯🇵", "tab\tand\u00a0nbsp", "\u3000ideographic space",
    "٣٤٥ and Ⅻ", "!!!???...", "(x)[y]{z}", "def f(x):\n    return x**2\n",
    "https://example.com/a?b=c&d=e", "rare 𠜎 char", "\u0000\u0001 control \u007f",
    "Pneumonoultramicroscopicsilicovolcanoconiosis", "a" * 64,
    "hello</s>world", "<s> x </s>", "<unk> and <pad>", "a<|endoftext|>b",
    "<|im_start|>user\nhi<|im_end|>\n", "<|begin_of_text|>Hi<|eot_id|>", "<|reserved_special_token_0|>x",
    "x <mask> y", "x<mask>y", "a <rs>   b", "a<rs>\nb", "zap zapper unzap zap! (zap)",
    "café and cafe\u0301", "naïve vs nai\u0308ve", "one<|sep|>two", " <|sep|> ",
    "▁already▁marked", "<0x41> is not a byte token",
]


# ------------------------------------------------------------------ builders
def train(normalizer, pre_tokenizer, vocab_size, byte_level, special=()):
    """Trains a BPE on corpus(); returns (vocab dict, merges list of pairs)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    texts = corpus()
    if byte_level:  # all 256 byte symbols
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # the 200 commonest characters, ties by code point (BpeTrainer's own limit_alphabet
        # breaks ties in hash order); rarer ones fall back to <0xXX> byte tokens
        counts = collections.Counter(c for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(t) for c in w)
        alphabet = sorted(counts, key=lambda c: (-counts[c], c))[:200]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(special), initial_alphabet=alphabet,
                                  limit_alphabet=len(alphabet))
    tok.train_from_iterator(texts, trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


def byte_level_pre():
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def opt_bytelevel():
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as in OPT's vocab
    vocab, merges = train(None, byte_level_pre(), 1000, True, specials)
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = byte_level_pre()
    tok.decoder = decoders.ByteLevel()
    # transformers' GPT2Converter with add_bos_token (OPT): "</s>" is OPT's bos.
    tok.post_processor = processors.TemplateProcessing(single="</s>:0 $A:0", pair="</s>:0 $A:0 $B:1",
                                                       special_tokens=[("</s>", 2)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=True) for s in specials])
    return tok, dict(bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def split_then_bytes(pattern, trim_offsets):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=trim_offsets, use_regex=False)])


def llama3():
    vocab, merges = train(None, split_then_bytes(LLAMA3_PAT, True), 1000, True)
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    tok.pre_tokenizer = split_then_bytes(LLAMA3_PAT, True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    bot = "<|begin_of_text|>"
    n = len(vocab)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single=f"{bot}:0 $A:0", pair=f"{bot}:0 $A:0 {bot}:1 $B:1",
                                      special_tokens=[(bot, n)])])
    # Llama 3.0's first ten added tokens, in order (ids n..n+9).
    specials = [bot, "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert tok.token_to_id(bot) == n
    return tok, dict(bos_token=bot, eos_token="<|end_of_text|>")


def qwen2():
    vocab, merges = train(normalizers.NFC(), split_then_bytes(QWEN2_PAT, False), 1000, True)
    # Qwen2's tokenizer.json has "" (not null) for the prefix/suffix; same behaviour.
    tok = Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix=""))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = split_then_bytes(QWEN2_PAT, False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    # decoders.ByteLevel ignores its arguments in Python; Qwen2's file has all three false (no
    # effect on decoding), so set them through the JSON.
    j = json.loads(tok.to_str())
    j["decoder"] = dict(type="ByteLevel", add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok = Tokenizer.from_str(json.dumps(j))
    return tok, dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def sentencepiece_bpe():
    """SentencePiece-like BPE: <unk> <s> </s>, <0x00>..<0xFF> (ids 3..258), then learned pieces."""
    vocab, merges = train(None, pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
                          1000 - 259, False)
    head = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    assert not set(head) & set(vocab), "learned piece collides with a special/byte token"
    full = {t: i for i, t in enumerate(head)}
    for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        full[t] = len(full)
    return models.BPE(full, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)


def sp_common(tok):
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ["<unk>", "<s>", "</s>"]])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def llama2_sentencepiece():
    tok = Tokenizer(sentencepiece_bpe())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return sp_common(tok)


def mistral_metaspace():
    tok = Tokenizer(sentencepiece_bpe())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    return sp_common(tok)


def added_tokens():
    vocab, merges = train(normalizers.NFC(), byte_level_pre(), 800, True)
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = byte_level_pre()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|sep|>", special=True, normalized=False)])
    tok.add_tokens([
        AddedToken("<mask>", lstrip=True, normalized=False),   # RoBERTa's <mask>: eats spaces on its left
        AddedToken("<rs>", rstrip=True, normalized=False),     # eats whitespace on its right
        AddedToken("zap", single_word=True, normalized=False),  # only as a whole word
        AddedToken("café", normalized=True),                  # matched on the NFC-normalized text
        AddedToken("naïve", normalized=False),                 # matched on the raw text only
    ])
    return tok, dict(additional_special_tokens=["<|sep|>"])


CASES = {f.__name__: f for f in [opt_bytelevel, llama3, qwen2, llama2_sentencepiece, mistral_metaspace,
                                 added_tokens]}


# ------------------------------------------------------------------- writing
def write_case(name, build):
    tok, hf_kwargs = build()
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path, pretty=True)
    ref = Tokenizer.from_file(path)  # encode with what was saved, not with the in-memory object
    hf = PreTrainedTokenizerFast(tokenizer_file=path, clean_up_tokenization_spaces=False, **hf_kwargs)
    cases, differs = [], []
    for text in TEXTS:
        ids = ref.encode(text, add_special_tokens=True).ids
        plain = ref.encode(text, add_special_tokens=False)
        # tokens: vocab strings (id_to_token); Encoding.tokens differs only for lstrip/rstrip added
        # tokens, where it holds the matched text with the stripped whitespace (" <mask>").
        entry = dict(text=text, ids=ids, ids_no_special=plain.ids, tokens=[ref.id_to_token(i) for i in plain.ids],
                     decoded=ref.decode(ids, skip_special_tokens=False),
                     decoded_skip_special=ref.decode(ids, skip_special_tokens=True))
        assert hf.encode(text, add_special_tokens=True) == ids, (name, text)
        assert hf.encode(text, add_special_tokens=False) == plain.ids, (name, text)
        if entry["tokens"] != plain.tokens:
            print(f"  {name}: Encoding.tokens of {text!r} = {plain.tokens} (vocab strings {entry['tokens']})")
        for skip, key in ((False, "decoded"), (True, "decoded_skip_special")):
            got = hf.decode(ids, skip_special_tokens=skip)
            if got != entry[key]:
                print(f"  {name}: transformers decode({text!r}, skip_special_tokens={skip}) = {got!r},"
                      f" tokenizers = {entry[key]!r}")
                differs.append(dict(text=text, skip_special_tokens=skip, transformers=got))
        cases.append(entry)
    doc = dict(tokenizers_version=tokenizers.__version__, transformers_version=transformers.__version__,
               python_version="%d.%d.%d" % sys.version_info[:3], vocab_size=ref.get_vocab_size(), cases=cases)
    if differs:
        doc["transformers_decode_differs"] = differs
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{name}: vocab {ref.get_vocab_size()}, {len(cases)} texts, "
          f"{os.path.getsize(path)} + {os.path.getsize(os.path.join(folder, 'expected.json'))} bytes")


if __name__ == "__main__":
    for case_name, fn in CASES.items():
        write_case(case_name, fn)
