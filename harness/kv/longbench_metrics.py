"""LongBench metrics, our own implementations of the official rules (THUDM/LongBench, LongBench/metrics.py).

Every function has the official signature `metric(prediction, ground_truth, **kwargs) -> float` in [0, 1] and
scores one prediction against one gold answer; harness.kv.longbench.score takes the max over gold answers.
Facts were read from THUDM/LongBench at commit 2e00731f8d0bff23dc4325161044d0ed8af94c1e (LongBench/metrics.py,
LongBench/eval.py, LongBench/requirements.txt) and from the two libraries that code calls: `rouge` 1.0.x
(pltrdy/rouge c1b90a78, rouge/rouge.py + rouge/rouge_score.py) and `fuzzywuzzy` (seatgeek/fuzzywuzzy af443f91,
fuzzywuzzy/fuzz.py + utils.py). None of those packages is a dependency here.

Deviations from the official numbers (each function's docstring repeats the one that concerns it):
- Chinese segmentation: the official code segments Chinese with jieba (precise mode). When jieba is not
  importable (it is not in this venv) we fall back to one token per character; `zh_segmenter()` says which one
  is in use so a result record can carry it. qa_f1_zh_score, rouge_zh_score and therefore multifieldqa_zh,
  dureader and vcsum can differ from the official numbers under the fallback.
- ROUGE-L: the `rouge` package builds its LCS by a recursive traceback, which raises RecursionError (caught by
  LongBench, so the score becomes 0) on a sentence pair of roughly a thousand words together; we trace back
  iteratively and return the real score there.
"""
from __future__ import annotations

import difflib
import re
import string
from collections import Counter

try:  # optional: the official segmenter for Chinese
    import jieba
except ImportError:  # pragma: no cover - depends on the environment
    jieba = None

# Chinese punctuation that the official normalize_zh_answer removes besides ASCII string.punctuation (data copied
# from LongBench/metrics.py so that the same characters are dropped).
ZH_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
_EN_PUNCT = frozenset(string.punctuation)
_ZH_PUNCT = frozenset(string.punctuation + ZH_PUNCTUATION)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# --- normalization and tokenization ---------------------------------------------------------------------------

def normalize_en(text: str) -> str:
    """SQuAD-style normalization, in the official order: lowercase, drop ASCII punctuation, blank out the
    articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_zh(text: str) -> str:
    """Lowercase, drop ASCII and Chinese punctuation, delete all whitespace (official normalize_zh_answer)."""
    return "".join(ch for ch in text.lower() if ch not in _ZH_PUNCT and not ch.isspace())


def zh_segmenter() -> str:
    """"jieba" when the official segmenter is importable, else "chars" (one token per character)."""
    return "jieba" if jieba is not None else "chars"


def zh_tokens(text: str) -> list[str]:
    """Chinese word segmentation: jieba precise mode (cut_all=False) as the official code, else characters."""
    if jieba is not None:
        return list(jieba.cut(text, cut_all=False))
    return list(text)


def token_f1(prediction: list[str], ground_truth: list[str]) -> float:
    """F1 of the token multisets (bag-of-tokens overlap); 0 when nothing overlaps or either side is empty."""
    overlap = sum((Counter(prediction) & Counter(ground_truth)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


# --- QA F1 ------------------------------------------------------------------------------------------------------

def qa_f1_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Token F1 after English normalization (official `qa_f1_score`): tokens are the whitespace-separated words
    of `normalize_en`, overlap counted as multisets."""
    return token_f1(normalize_en(prediction).split(), normalize_en(ground_truth).split())


def qa_f1_zh_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Token F1 for Chinese (official `qa_f1_zh_score`): segment, normalize each token with `normalize_zh`, drop
    the tokens left empty, then multiset F1.

    Deviation: the official segmenter is jieba; without it (see `zh_segmenter()`) tokens are characters, which
    gives partial credit inside words that jieba would count as one token.
    """
    def tokens(text: str) -> list[str]:
        return [t for t in (normalize_zh(tok) for tok in zh_tokens(text)) if t]

    return token_f1(tokens(prediction), tokens(ground_truth))


# --- ROUGE-L ----------------------------------------------------------------------------------------------------

def _rouge_sentences(text: str) -> list[list[str]]:
    # The `rouge` package splits on every "." (decimals included), keeps each non-empty piece with its whitespace
    # collapsed, and splits it on " " -- so a whitespace-only piece becomes the single empty word "".
    return [" ".join(piece.split()).split(" ") for piece in text.split(".") if piece]


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """Words of one longest common subsequence of x and y, chosen as `rouge` does: trace back from the end, take
    a match, else step along x only when that keeps a strictly longer LCS, otherwise along y."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, xi in enumerate(x, 1):
        row, prev = table[i], table[i - 1]
        for j, yj in enumerate(y, 1):
            row[j] = prev[j - 1] + 1 if xi == yj else max(prev[j], row[j - 1])
    words, i, j = set(), len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """ROUGE-L F, summary level, exactly as the official `rouge_score` gets it from the `rouge` package
    (`Rouge().get_scores(..., avg=True)["rouge-l"]["f"]`, exclusive mode).

    Both texts are split into sentences at every "."; words are split on spaces. In the package's default
    exclusive mode everything is counted as a *set* of distinct words: m and n are the numbers of distinct words
    of reference and prediction, and the overlap is the number of distinct words in the union, over every
    (reference sentence, predicted sentence) pair, of the words of one LCS of the pair. R = overlap/m,
    P = overlap/n, F = 2PR / (P + R + 1e-8). So "the cat sat on the mat" against "the cat lay on the mat" gives
    0.8, not the 5/6 of textbook ROUGE-L. An empty prediction or reference (no sentence) scores 0, as the
    official code turns the package's error into 0.

    Deviation: the package's recursive traceback overflows Python's stack (LongBench then scores 0) on sentence
    pairs of about a thousand words together; ours is iterative and scores them.
    """
    hyp, ref = _rouge_sentences(prediction), _rouge_sentences(ground_truth)
    if not hyp or not ref:
        return 0.0
    n = len({w for s in hyp for w in s})
    m = len({w for s in ref for w in s})
    hyp_vocab = [set(s) for s in hyp]
    union: set[str] = set()
    for r in ref:
        r_vocab = set(r)
        for h, h_vocab in zip(hyp, hyp_vocab):
            if r_vocab & h_vocab:  # no shared word, empty LCS
                union |= _lcs_words(r, h)
    p, r_ = len(union) / n, len(union) / m
    return 2.0 * (p * r_) / (p + r_ + 1e-8)


def rouge_zh_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """ROUGE-L F on Chinese (official `rouge_zh_score`): segment both texts, join the tokens with spaces, then
    `rouge_score`. No punctuation is removed, and only an ASCII "." splits sentences.

    Deviation: the official segmenter is jieba; without it (see `zh_segmenter()`) every character is a word.
    """
    return rouge_score(" ".join(zh_tokens(prediction)), " ".join(zh_tokens(ground_truth)))


# --- classification, retrieval, count ---------------------------------------------------------------------------

def classification_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Accuracy with partial credit (official `classification_score`; needs `all_classes=`).

    The class names found (case-sensitive substring) in the prediction are collected in `all_classes` order;
    those that are a proper substring of the gold class are then dropped (so "city" does not compete with a gold
    "capital city"). Score: 1/len(matches) if the gold class is among the matches, else 0. The official loop
    removes items from the list it is iterating over, so the item right after a removed one is never examined
    and stays even when it is a substring of the gold; we reproduce that so the numbers agree (all_classes
    ["port", "sport", "sports"], prediction and gold "sports": matches ["sport", "sports"], score 0.5).
    """
    all_classes = kwargs["all_classes"]
    matches = [c for c in all_classes if c in prediction]
    i = 0
    while i < len(matches):
        name = matches[i]
        if name in ground_truth and name != ground_truth:
            matches.remove(name)  # removes the first equal item, as list.remove in the official loop
        i += 1  # a Python for-loop advances its index even after a removal
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _share_equal(prediction: str, target: str) -> float:
    # Fraction of the digit runs of the prediction that equal the target as strings ("03" != "3").
    numbers = re.findall(r"\d+", prediction)
    return sum(n == target for n in numbers) / len(numbers) if numbers else 0.0


def _paragraph_id(ground_truth: str, pattern: str) -> str:
    found = re.findall(pattern, ground_truth)
    if not found:
        raise ValueError(f"gold answer {ground_truth!r} does not name a paragraph (pattern {pattern!r})")
    return found[0]


def retrieval_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Paragraph retrieval (official `retrieval_score`): the gold is "Paragraph N"; the score is the fraction of
    the numbers in the prediction that equal N ("Paragraph 3" -> 1, "Paragraph 3 or 12" -> 0.5, none -> 0)."""
    return _share_equal(prediction, _paragraph_id(ground_truth, r"Paragraph (\d+)"))


def retrieval_zh_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Chinese paragraph retrieval (official `retrieval_zh_score`): as `retrieval_score` with gold "段落N"."""
    return _share_equal(prediction, _paragraph_id(ground_truth, r"段落(\d+)"))


def count_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Passage count (official `count_score`): the fraction of the numbers in the prediction equal to the gold
    count ("7" -> 1, "7 of 10" -> 0.5, "seven" -> 0)."""
    return _share_equal(prediction, str(ground_truth))


# --- code -------------------------------------------------------------------------------------------------------

def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy's `fuzz.ratio` as the official requirements install it (without python-Levenshtein, fuzzywuzzy
    falls back to difflib): 100 when a == b, 0 when either is empty, else round(100 * 2M/T) with M the matched
    characters of difflib.SequenceMatcher (default autojunk) and T = len(a) + len(b); Python's round (half to
    even), as fuzzywuzzy's `intr`. With python-Levenshtein installed the official number can differ slightly."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return int(round(100 * difflib.SequenceMatcher(None, a, b).ratio()))


def code_sim_score(prediction: str, ground_truth: str, **kwargs) -> float:
    """Edit similarity of the next code line (official `code_sim_score`): after dropping leading newlines, the
    first line of the prediction that contains none of "`", "#", "//" (no fences, no comments -- nor, as in the
    official rule, any line with those characters inside a string) is compared with the gold line by
    `fuzz_ratio` / 100; no such line compares "" (score 0 unless the gold is "" too)."""
    line = next((ln for ln in prediction.lstrip("\n").split("\n")
                 if "`" not in ln and "#" not in ln and "//" not in ln), "")
    return fuzz_ratio(line, ground_truth) / 100


METRICS = {
    "qa_f1_score": qa_f1_score,
    "qa_f1_zh_score": qa_f1_zh_score,
    "rouge_score": rouge_score,
    "rouge_zh_score": rouge_zh_score,
    "classification_score": classification_score,
    "retrieval_score": retrieval_score,
    "retrieval_zh_score": retrieval_zh_score,
    "count_score": count_score,
    "code_sim_score": code_sim_score,
}
