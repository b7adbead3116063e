"""Golden data for the C++ Unigram tokenizer (io/unigram, io/precompiled): SentencePiece *unigram*
models trained here on a local multilingual corpus, converted to tokenizer.json the way
transformers does for T5 / mT5, and their encodings.

    /tmp/venv/bin/pip install sentencepiece==0.2.3 protobuf   # PyPI
    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_tokenizers_unigram.py

Writes tests/golden/data/tokenizers/<case>/{tokenizer.json, expected.json} (the format of
golden_tokenizers.py, whose corpus and writer this reuses) for:
  t5_unigram        T5Tokenizer.from_pretrained on a folder with spiece.model (transformers 5's
                    conversion: Precompiled nmt_nfkc normalizer, WhitespaceSplit + Metaspace
                    "always", Metaspace decoder, TemplateProcessing "$A </s>", 3 <extra_id_N>).
  mt5_bytefallback  the older hub layout of mT5 / T5 files (SpmConverter of transformers 4.x):
                    Sequence[Precompiled, Replace(Regex " {2,}", " ")], Metaspace pre-tokenizer alone
                    (so the Replace matters), byte_fallback=True, decoders Replace / ByteFallback / Fuse
                    / Strip. Its charsmap comes from a small custom rule TSV (full-width letters and
                    digits, ligatures, "™", no-break spaces, a multi-character rule "e\u0301" → "é",
                    and "Ａ" → "A" so that "Ａ\u0301" shows the grapheme quirk: the whole cluster takes
                    the replacement of its shortest matching prefix), keeping the file small.
No hub access. sentencepiece's trainer is deterministic for a fixed input and thread count
(num_threads=1 here). The reference is tokenizers.Tokenizer.from_file on the saved file; the writer
asserts transformers' fast tokenizer gives the same ids.
"""
import json
import os
import shutil
import sys
import tempfile

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from transformers import T5Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_tokenizers as base  # noqa: E402

EXTRA = """\
ＡＢＣ ａｂｃ １２３４５ ｶﾀｶﾅ ﾃｽﾄ ＠＃％ （括弧） ① ② ③ ㍻ ㌔ ﬁ ﬂ ™ ℡ ½ ¼ x² H₂O
Ｈｅｌｌｏ　Ｗｏｒｌｄ　全角スペース　です。  two  spaces   three    four
Hindi: नमस्ते दुनिया, क्षत्रिय, हिन्दी। Tamil: வணக்கம். Thai: สวัสดีครับ ภาษาไทย
Vietnamese: Tiếng Việt có dấu: ả ạ ấ ầ ẩ ẫ ậ. Polish: zażółć gęślą jaźń. Turkish: İstanbul ılık.
"""

TEXTS = base.TEXTS + [
    "ＡＢＣ ａｂｃ １２３", "ｶﾀｶﾅ ﾃｽﾄ", "Ｈｅｌｌｏ　Ｗｏｒｌｄ", "① ㍻ ㌔ ﬁne ™ ½ x²", "a  b   c    d", "  \u3000 x \u00a0 y  ",
    "Ａ\u0301 and A\u0301 and e\u0301", "Ａ\u0301\u0301", "\r\n\u0301", "नमस्ते क्षत्रिय हिन्दी", "สวัสดีครับ",
    "zażółć gęślą jaźń İstanbul", "Tiếng Việt ả ạ ấ", "<extra_id_0> fill <extra_id_2>.", "a<extra_id_1>b", "</s></s>",
    "<pad> <unk>", "\u200bzero\u200dwidth\ufeff", "🇫🇷🇯🇵🇩🇪 👍🏽 👩\u200d💻", "\U0001f600\U0001f601 \u2603 ©®", "x\ufe0f \u2764\ufe0f",
    "~ ` ^ | \\ $ €", "𝐀𝐁𝐂 𝟏𝟐𝟑", "unknown: \u0f00\u1000\u13a0\u2c00\ua500", "ﾊﾟﾋﾟ ｶﾞ ﾊﾞ", "1\u20442 ⅓",
]

# Custom normalization rules for mt5_bytefallback: "source code points<TAB>target code points".
RULES = ([(0xFF01 + i, [0x21 + i]) for i in range(94)] +  # full-width ASCII
         [(0x3000, [0x20]), (0xA0, [0x20]), (0x2122, [0x54, 0x4D]), (0xFB01, [0x66, 0x69]), (0xFB02, [0x66, 0x6C]),
          (0x2460, [0x31]), (0x2461, [0x32]), (0x00BD, [0x31, 0x2044, 0x32])])
MULTI_RULES = [([0x65, 0x301], [0xE9]), ([0x61, 0x301], [0xE1]), ([0xFF21, 0x301, 0x301], [0xC1])]


def corpus_file(folder):
    path = os.path.join(folder, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(base.corpus()) + "\n" + EXTRA * 20)
    return path


def train(folder, prefix, vocab_size, **kwargs):
    spm.SentencePieceTrainer.train(input=corpus_file(folder), model_prefix=os.path.join(folder, prefix),
                                   vocab_size=vocab_size, model_type="unigram", character_coverage=0.9995,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2, **kwargs)
    return os.path.join(folder, prefix + ".model")


def t5_unigram(folder):
    model = train(folder, "t5", 800, normalization_rule_name="nmt_nfkc")
    spiece = os.path.join(folder, "t5dir")
    os.makedirs(spiece)
    shutil.copy(model, os.path.join(spiece, "spiece.model"))
    hf = T5Tokenizer.from_pretrained(spiece, extra_ids=3)
    hf.save_pretrained(os.path.join(folder, "t5saved"))
    tok = Tokenizer.from_file(os.path.join(folder, "t5saved", "tokenizer.json"))
    for text in TEXTS:  # the transformers class itself, not only the saved file
        assert hf.encode(text) == tok.encode(text).ids, text
    return tok, {}


def mt5_bytefallback(folder):
    tsv = os.path.join(folder, "rules.tsv")
    with open(tsv, "w", encoding="utf-8") as f:
        for src, dst in [([s], d) for s, d in RULES] + MULTI_RULES:
            f.write(" ".join("%X" % c for c in src) + "\t" + " ".join("%X" % c for c in dst) + "\n")
    model = train(folder, "mt5", 600, normalization_rule_tsv=tsv, byte_fallback=True)
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    with open(model, "rb") as f:
        proto.ParseFromString(f.read())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    from tokenizers.models import Unigram
    tok = Tokenizer(Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(p.piece, normalized=False, special=True) for p in proto.pieces if p.type == 3])
    tok.add_special_tokens([AddedToken("<extra_id_0>", normalized=False, special=True)])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return tok, {}


CASES = {"t5_unigram": t5_unigram, "mt5_bytefallback": mt5_bytefallback}

if __name__ == "__main__":
    base.TEXTS = TEXTS
    for case_name, fn in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            base.write_case(case_name, lambda: fn(tmp))
