"""RULER synthetic tasks, generated offline (Hsieh et al., 2024, arXiv 2404.06654; NVIDIA/RULER).

Eleven of RULER's 13 tasks (the two QA tasks need SQuAD/HotpotQA and are left out):

- NIAH (Sec. 3.1): niah_single_1/2/3, niah_multikey_1/2/3, niah_multivalue, niah_multiquery. Needles
  "A special magic number for <key> is <value>." are hidden in a haystack of repeated noise, essay-like prose,
  or (multikey_2/3) distractor needles. The per-task settings follow RULER's scripts/synthetic.yaml.
- vt (Sec. 3.2, variable tracking): one chain of 4 hops, VAR A = 12345, VAR B = VAR A, ... hidden in noise;
  the answer is every variable that ends up holding the value.
- cwe (Sec. 3.3, common words extraction): a numbered list in which 10 words occur freq_cw times and the
  rest freq_ucw times (30/3 from 4k tokens on, 6/1 below, as RULER does); the answer is the 10 common words.
- fwe (Sec. 3.3, frequent words extraction): coded words drawn with counts proportional to k^-alpha
  (alpha = 2); the top-ranked word is the noise "..." and the answer is ranks 2 to 4.

Prompts are completion prompts (context, then a question ending in an answer prefix): the embedded
SmolLM2-135M-Instruct does worse with its chat template on long prompts (docs/evaluation.md). The context and the
question are kept apart because a KV method compresses the context before the question is appended. A sample
is assembled at the token level, like harness/kv/niah.py, so context + question fit `length` tokens: exactly for
the haystack tasks and fwe, within one list item (a few tokens) for cwe. All wording, filler and word lists
are our own; the scoring is RULER's string_match_all (scripts/eval/synthetic/constants.py).
"""
from __future__ import annotations

import hashlib
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

TASKS = (
    "niah_single_1", "niah_single_2", "niah_single_3",
    "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
    "niah_multivalue", "niah_multiquery",
    "vt", "cwe", "fwe",
)
# RULER's tokens_to_generate (scripts/data/synthetic/constants.py).
DEFAULT_MAX_NEW_TOKENS = {**{t: 128 for t in TASKS if t.startswith("niah")}, "vt": 30, "cwe": 120, "fwe": 50}

# RULER draws needle depths from 40 evenly spaced percentages of the haystack.
DEPTHS = tuple(round(100 * i / 39) / 100 for i in range(40))


@dataclass(frozen=True)
class NiahSpec:
    """One row of RULER's synthetic.yaml for the `niah` generator."""

    haystack: str  # noise | essay | needle (the haystack is made of distractor needles)
    key_type: str  # words | uuids
    value_type: str  # numbers | uuids
    num_keys: int
    num_values: int
    num_queries: int


NIAH_SPECS = {
    "niah_single_1": NiahSpec("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": NiahSpec("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": NiahSpec("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": NiahSpec("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": NiahSpec("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": NiahSpec("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": NiahSpec("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": NiahSpec("essay", "words", "numbers", 4, 1, 4),
}
VT_HOPS, VT_CHAINS = 4, 1
CWE_NUM_COMMON = 10
FWE_ALPHA, FWE_WORD_LEN, FWE_NUM_ANSWERS = 2.0, 6, 3


@dataclass(frozen=True)
class RulerSample:
    task: str
    length: int  # the requested token budget; len(context_ids) + len(question_ids) <= length
    seed: int
    trial: int
    context_ids: list[int]
    question_ids: list[int]  # appended after the (compressed) context; ends in the answer prefix
    answers: list[str]  # gold strings, scored by recall (string_match_all)
    context: str  # decoded context_ids
    question: str
    depths: tuple[float, ...] = ()  # relative depth of each needle / chain statement (haystack tasks)

    @property
    def n_tokens(self) -> int:
        return len(self.context_ids) + len(self.question_ids)


# ----------------------------------------------------------------------------------------------- word lists
_ONSETS = "b d f g k l m n p r s t v z br dr gl kr pl st tr".split()
_VOWELS = "a e i o u".split()
_CODAS = ["", "", "", "n", "l", "r", "s"]
# Our own prose for the essay-like haystack: a small grammar gives ~10^4 distinct sentences.
_SUBJECTS = ["A good founder", "An early reader", "The best teacher", "A small team", "Every new city",
             "An honest critic", "The old library", "A patient engineer", "A young painter", "A careful gardener",
             "The quiet neighbour", "A good question"]
_VERBS = ["tends to notice", "rarely forgets", "learns to value", "slowly discovers", "often underestimates",
          "keeps returning to", "quietly rewrites", "eventually trusts", "seldom explains", "begins to doubt"]
_OBJECTS = ["the shape of a problem", "the cost of waiting", "small daily habits", "the value of boring work",
            "what other people ignore", "the first rough draft", "the map of a new field", "a simple idea",
            "the weather of a long project", "the limits of planning"]
_TAILS = ["", " when nobody is watching", " after a long winter", " in the end", " without much fuss",
          " before it is too late", " once the work gets hard", " for reasons that are hard to name",
          ", and that is usually enough", ", which surprises almost everyone"]
# Our own repeated-noise line (RULER's noise haystack is one short line repeated).
NOISE = "The lake is still. The field is wide. The moon is pale. On we walk. Round and round once more."


def pseudo_word(rng: random.Random, syllables: int) -> str:
    """A pronounceable nonsense word: consonant-vowel syllables with an optional final consonant."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)


def unique_words(rng: random.Random, n: int, make: Callable[[random.Random], str], avoid=()) -> list[str]:
    """n distinct words, none a substring of another (recall scoring is by substring) nor of `avoid`."""
    def substrings(w: str) -> set[str]:
        return {w[i:j] for i in range(len(w)) for j in range(i + 1, len(w) + 1)}

    words: list[str] = []
    taken = set(avoid)
    inside = set().union(*map(substrings, taken)) if taken else set()  # every substring of a taken word
    while len(words) < n:
        w = make(rng)
        if w not in inside and not (substrings(w) & taken):
            words.append(w)
            taken.add(w)
            inside |= substrings(w)
    return words


def _key_word(rng: random.Random) -> str:
    # RULER's keys are adjective-noun pairs ("rural-basket"); ours are two pseudo-words.
    return f"{pseudo_word(rng, 2)}-{pseudo_word(rng, rng.choice((2, 3)))}"


def _number(rng: random.Random) -> str:
    return str(rng.randint(10**6, 10**7 - 1))  # RULER: 7-digit numbers


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _essay_sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}."


# ------------------------------------------------------------------------------------------------ assembly
def _rng(task: str, length: int, seed: int, trial: int, part: str = "") -> random.Random:
    digest = hashlib.sha256(f"ruler/{task}/{length}/{seed}/{trial}/{part}".encode()).digest()
    return random.Random(digest)


def _encoder(tokenizer):
    def encode(text: str | list[str]):
        return tokenizer(text, add_special_tokens=False).input_ids
    return encode


def _too_short(task: str, length: int, need: int) -> ValueError:
    return ValueError(f"length={length} is too short for task {task!r}: it needs about {need} tokens or more")


def _fill(encode, units: Iterator[str], budget: int) -> tuple[list[int], list[int]]:
    """Tokens of consecutive filler units, cut to exactly `budget`, and the unit boundaries (token offsets)."""
    ids: list[int] = []
    bounds = [0]
    while len(ids) < budget:
        batch = [next(units) for _ in range(min(256, 1 + (budget - len(ids)) // 4))]
        for chunk in encode(batch):
            ids.extend(chunk)
            bounds.append(min(len(ids), budget))
            if len(ids) >= budget:
                break
    return ids[:budget], bounds


def _haystack(task, length, encode, head: str, needles: list[str], depths: list[float], units, question: str):
    """head + filler with each needle at the unit boundary nearest its depth + question: exactly `length` tokens."""
    head_ids, q_ids = encode(head), encode(question)
    needle_ids = encode(needles)
    budget = length - len(head_ids) - len(q_ids) - sum(map(len, needle_ids))
    if budget < len(needles) + 1:
        raise _too_short(task, length, length - budget + len(needles) + 1)
    filler, bounds = _fill(encode, units, budget)
    cuts = [min(bounds, key=lambda b: abs(b - d * budget)) for d in depths]
    order = sorted(range(len(needles)), key=lambda i: (cuts[i], i))
    context, prev = list(head_ids), 0
    for i in order:
        context += filler[prev:cuts[i]] + needle_ids[i]
        prev = cuts[i]
    context += filler[prev:]
    return context, q_ids


def _repeat(text: str) -> Iterator[str]:
    while True:
        yield text


def _stream(rng: random.Random, make: Callable[[random.Random], str]) -> Iterator[str]:
    while True:
        yield make(rng)


# ------------------------------------------------------------------------------------------------ the tasks
def _niah(task, length, encode, seed, trial):
    spec = NIAH_SPECS[task]
    rng = _rng(task, length, seed, trial)
    make_key = _key_word if spec.key_type == "words" else _uuid
    make_value = _number if spec.value_type == "numbers" else _uuid
    noun = {"numbers": "number", "uuids": "uuid"}[spec.value_type]
    keys = unique_words(rng, spec.num_keys, make_key)
    values = [unique_words(rng, spec.num_values, make_value) for _ in keys]
    needles = [f"A special magic {noun} for {k} is {v}." for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(needles)
    queried = rng.sample(range(spec.num_keys), spec.num_queries)
    answers = [v for i in queried for v in values[i]]
    query = keys[queried[0]] if len(queried) == 1 else ", ".join(keys[i] for i in queried[:-1]) + f", and {keys[queried[-1]]}"
    depths = sorted(rng.sample(DEPTHS, len(needles)))

    sep = " " if spec.haystack == "essay" else "\n"
    if spec.haystack == "noise":
        units = _repeat(sep + NOISE)
    elif spec.haystack == "essay":
        units = _stream(rng, lambda r: sep + _essay_sentence(r))
    else:  # distractor needles with fresh keys and values
        taken_k, taken_v = set(keys), {v for vs in values for v in vs}

        def distractor(r):
            k, v = make_key(r), make_value(r)
            while k in taken_k or v in taken_v:
                k, v = make_key(r), make_value(r)
            return f"{sep}A special magic {noun} for {k} is {v}."
        units = _stream(rng, distractor)

    if len(answers) == 1:
        head = f"A special magic {noun} is hidden in the text below. Memorize it; I will ask you about it afterwards.\n"
        question = (f"\nWhat is the special magic {noun} for {query} mentioned in the text above? "
                    f"Answer: The special magic {noun} for {query} mentioned in the text above is")
    else:
        head = f"Some special magic {noun}s are hidden in the text below. Memorize them; I will ask you about them afterwards.\n"
        question = (f"\nWhat are all the special magic {noun}s for {query} mentioned in the text above? "
                    f"Answer: The special magic {noun}s for {query} mentioned in the text above are")
    context, q_ids = _haystack(task, length, encode, head, [sep + n for n in needles], depths, units, question)
    return context, q_ids, answers, tuple(depths)


def _vt_chain(rng: random.Random, avoid=()) -> tuple[list[str], str, list[str]]:
    names = unique_words(rng, VT_HOPS + 1, lambda r: "".join(r.choices(string.ascii_uppercase, k=5)), avoid)
    value = str(rng.randint(10000, 99999))
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a}" for a, b in zip(names, names[1:])]
    return names, value, lines


def _vt_question(value: str) -> str:
    return (f"\nQuestion: Which variables are assigned the value {value} in the text above? "
            f"Answer: Following the assignment chain in the text above, {VT_HOPS + 1} variables are assigned "
            f"the value {value}, they are:")


def _vt(task, length, encode, seed, trial):
    rng = _rng(task, length, seed, trial)
    names, value, lines = _vt_chain(rng)
    # A short worked example (RULER prepends a one-shot example too; ours has no noise, to stay short).
    ex_names, ex_value, ex_lines = _vt_chain(rng, avoid=names)
    while ex_value == value:
        ex_value = str(rng.randint(10000, 99999))
    ex_lines[0] = f"VAR {ex_names[0]} = {ex_value}"
    head = ("Keep track of the chain of variable assignments hidden in the text below.\n\nExample:\n"
            + "\n".join(ex_lines) + _vt_question(ex_value) + " " + " ".join(ex_names)
            + "\n\nNow the real text:\n" + NOISE)
    depths = sorted(rng.sample(DEPTHS, len(lines)))  # sorted: the chain appears in order, as in RULER's noise vt
    context, q_ids = _haystack(task, length, encode, head, ["\n" + s for s in lines], depths,
                               _repeat("\n" + NOISE), _vt_question(value))
    return context, q_ids, names, tuple(depths)


def _largest_fitting(fits: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Largest n in [lo, hi] with fits(n), by bisection (token counts grow with n, almost monotonically)."""
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


CWE_HEAD = "Below is a numbered list of words. Some words occur more often than others; remember the ones that occur most often."
CWE_QUESTION = (f"\nQuestion: Which {CWE_NUM_COMMON} words occur most often in the list above? "
                f"Answer: The {CWE_NUM_COMMON} words that occur most often in the list above are:")


def _cwe_word(rng: random.Random) -> str:
    return pseudo_word(rng, 2)


def _cwe_list(rng_seed: bytes, words: list[str], freq_cw: int, freq_ucw: int, n_single: int = 0) -> list[str]:
    common, rest = words[:CWE_NUM_COMMON], words[CWE_NUM_COMMON:]
    uncommon, single = rest[:len(rest) - n_single], rest[len(rest) - n_single:]
    items = common * freq_cw + uncommon * freq_ucw + single
    random.Random(rng_seed + bytes(str(len(words)), "ascii")).shuffle(items)
    return items


def _cwe(task, length, encode, seed, trial):
    # RULER: 30/3 repeats with a 40-word one-shot example (10/3) from 4k tokens, else 6/1 with a 20-word example
    # (3/1). Below 1k tokens RULER's list would not fit: we drop the example and use 4/1.
    if length >= 4096:
        freq_cw, freq_ucw, shot = 30, 3, (40, 10, 3)
    elif length >= 1024:
        freq_cw, freq_ucw, shot = 6, 1, (20, 3, 1)
    else:
        freq_cw, freq_ucw, shot = 4, 1, None
    rng = _rng(task, length, seed, trial)
    head = CWE_HEAD
    shot_words: list[str] = []
    if shot is not None:
        n, cw, ucw = shot
        shot_words = unique_words(rng, n, _cwe_word)
        head += "\n" + _numbered(_cwe_list(rng.randbytes(16), shot_words, cw, ucw)) + CWE_QUESTION + " " + \
            " ".join(f"{i + 1}. {w}" for i, w in enumerate(shot_words[:CWE_NUM_COMMON])) + "\n\n" + CWE_HEAD
    head_ids, q_ids = encode(head), encode(CWE_QUESTION)
    budget = length - len(head_ids) - len(q_ids)
    # Every item takes >= 4 tokens (" 1. x"), so budget // (4 * freq_ucw) bounds the number of distinct words.
    pool = unique_words(rng, CWE_NUM_COMMON + max(CWE_NUM_COMMON, budget // (4 * freq_ucw)), _cwe_word, shot_words)
    order_seed = rng.randbytes(16)

    def body(n_words: int, n_single: int = 0) -> list[int]:
        return encode("\n" + _numbered(_cwe_list(order_seed, pool[:n_words], freq_cw, freq_ucw, n_single)))

    n = _largest_fitting(lambda k: len(body(k)) <= budget, 2 * CWE_NUM_COMMON, len(pool))
    if n is None:
        raise _too_short(task, length, length - budget + len(body(2 * CWE_NUM_COMMON)))
    # Close most of the remaining gap with words that occur once (still far from the common ones).
    n_single = 0
    while freq_ucw > 1 and n + n_single < len(pool) and len(body(n + n_single + 1, n_single + 1)) <= budget:
        n_single += 1
    ids = body(n + n_single, n_single)
    return head_ids + ids, q_ids, pool[:CWE_NUM_COMMON], ()


FWE_HEAD = "Read the coded text below and keep count of how often each coded word occurs; find the three most frequent coded words."
FWE_QUESTION = ("\nQuestion: Ignore the dots '...' and give no explanation. Which three coded words occur most often "
                "in the coded text above? Answer: The three coded words that occur most often in the text above are:")


# Riemann zeta(alpha): the partial sum plus the integral bound of its tail.
_FWE_ZETA = sum(k ** -FWE_ALPHA for k in range(1, 10_000)) + 10_000 ** (1 - FWE_ALPHA) / (FWE_ALPHA - 1)


def _fwe_counts(n_words: int, vocab_size: int) -> list[int]:
    """RULER's word counts: floor(n_words * k^-alpha / zeta(alpha)) for rank k = 1..vocab_size."""
    return [int(n_words * k ** -FWE_ALPHA / _FWE_ZETA) for k in range(1, vocab_size + 1)]


def _fwe(task, length, encode, seed, trial):
    rng = _rng(task, length, seed, trial)
    head_ids, q_ids = encode(FWE_HEAD), encode(FWE_QUESTION)
    budget = length - len(head_ids) - len(q_ids)
    vocab_size = max(10, length // 50)  # RULER: max_seq_length // 50
    vocab = ["..."] + unique_words(rng, vocab_size - 1, lambda r: "".join(r.choices(string.ascii_lowercase, k=FWE_WORD_LEN)))
    order_seed = rng.randbytes(16)

    def words(n_words: int, n_pad: int = 0) -> list[str]:
        counts = _fwe_counts(n_words, vocab_size)
        counts[0] += n_pad  # extra noise words fill the token budget exactly; the noise stays top-ranked
        seq = [w for w, c in zip(vocab, counts) for _ in range(c)]
        random.Random(order_seed + bytes(str(n_words), "ascii")).shuffle(seq)
        return seq

    def body(n_words: int, n_pad: int = 0) -> list[int]:
        return encode(" " + " ".join(words(n_words, n_pad)))

    n = _largest_fitting(lambda k: len(body(k)) <= budget, 1, max(1, budget))
    counts = _fwe_counts(n or 0, vocab_size)
    if n is None or not counts[1] > counts[2] > counts[3] > counts[4]:
        raise _too_short(task, length, length - budget + 120)
    pad = 0
    while len(body(n, pad + 1)) <= budget:
        pad += 1
    return head_ids + body(n, pad), q_ids, vocab[1:1 + FWE_NUM_ANSWERS], ()


_BUILDERS = {**{t: _niah for t in NIAH_SPECS}, "vt": _vt, "cwe": _cwe, "fwe": _fwe}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return task


def make_sample(task: str, length: int, tokenizer, seed: int, trial: int = 0) -> RulerSample:
    """A RULER sample of at most `length` tokens (context + question), deterministic under (seed, trial).

    Needle depths, keys, values and word lists are drawn from a RNG seeded by (task, length, seed, trial).
    """
    check_task(task)
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    encode = _encoder(tokenizer)
    context_ids, question_ids, answers, depths = _BUILDERS[task](task, length, encode, seed, trial)
    assert len(context_ids) + len(question_ids) <= length, (task, length, len(context_ids) + len(question_ids))
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)  # noqa: E731
    return RulerSample(task, length, seed, trial, list(context_ids), list(question_ids), list(answers),
                       decode(context_ids), decode(question_ids), depths)


def score(task: str, prediction: str, answers: list[str]) -> float:
    """RULER's string_match_all (scripts/eval/synthetic/constants.py) for one sample, in [0, 1]: the fraction
    of gold strings found in the prediction, case-insensitively."""
    check_task(task)
    if not answers:
        raise ValueError("answers must hold at least one gold string")
    pred = prediction.lower()
    return sum(a.lower() in pred for a in answers) / len(answers)
