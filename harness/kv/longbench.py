"""LongBench (Bai et al., arXiv 2308.14508; THUDM/LongBench): task table, loader, prompts, scoring.

Facts come from THUDM/LongBench at commit 2e00731f8d0bff23dc4325161044d0ed8af94c1e: prompt templates from
LongBench/config/dataset2prompt.json, max new tokens from LongBench/config/dataset2maxlen.json, the metric of each
task and the first-line rule from LongBench/eval.py, the LongBench-E task list and middle truncation from
LongBench/pred.py, the row schema and the data.zip link from LongBench/README.md. The metrics themselves are ours:
harness/kv/longbench_metrics.py.

Prompts are in completion form. The official pred.py wraps the filled template in each chat model's chat format,
except on trec, triviaqa, samsum, lsht, lcc and repobench-p; we apply no chat template at all, because the
embedded model (SmolLM2-135M-Instruct) does better in completion form on long prompts (docs/evaluation.md), so
numbers are comparable with the official ones for base models and for the six tasks above, not for chat models
on the rest. pred.py also stops samsum generation at the first newline; only the first line is scored anyway.

Scores: `score` is in [0, 1] for one prediction; the official per-task number is 100 x the mean over rows
(LongBench-E: the same per length bucket, `length_bucket`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from harness.kv.longbench_metrics import METRICS
from reference.jsonl import MalformedRowWarning, read_jsonl

HUB_DATASET = "THUDM/LongBench"
DATA_ZIP_URL = "https://huggingface.co/datasets/THUDM/LongBench/resolve/main/data.zip"


@dataclass(frozen=True)
class LongBenchTask:
    name: str  # the dataset name, also the hub config and the JSONL file stem
    group: str  # single-doc QA, multi-doc QA, summarization, few-shot, synthetic, code
    language: str  # "en" or "zh": the language of the prompt (code rows carry python/java/c# in their own field)
    metric: str  # a key of harness.kv.longbench_metrics.METRICS
    max_new_tokens: int
    prompt: str  # str.format template with {context} and, for most tasks, {input}
    first_line_only: bool = False  # score only the first line of the prediction
    in_longbench_e: bool = False  # has a `<name>_e` config with length buckets


_MULTIDOC_EN = (
    "Answer the question based on the given passages. Only give me the answer and do not output any other words."
    "\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give"
    " me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
)

# Template strings are data copied verbatim from dataset2prompt.json (their typos included: "asconcisely").
_TASK_LIST = [
    LongBenchTask(
        "narrativeqa", "single-doc QA", "en", "qa_f1_score", 128,
        "You are given a story, which can be either a novel or a movie script, and a question. Answer the question"
        " asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory:"
        " {context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if"
        " possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"),
    LongBenchTask(
        "qasper", "single-doc QA", "en", "qa_f1_score", 128,
        "You are given a scientific article and a question. Answer the question as concisely as you can, using a"
        " single phrase or sentence if possible. If the question cannot be answered based on the information in the"
        " article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or"
        " \"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on"
        " the above article as concisely as you can, using a single phrase or sentence if possible. If the question"
        " cannot be answered based on the information in the article, write \"unanswerable\". If the question is a"
        " yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion:"
        " {input}\n\nAnswer:",
        in_longbench_e=True),
    LongBenchTask(
        "multifieldqa_en", "single-doc QA", "en", "qa_f1_score", 64,
        "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on"
        " the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
        in_longbench_e=True),
    LongBenchTask(
        "multifieldqa_zh", "single-doc QA", "zh", "qa_f1_zh_score", 64,
        "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。"
        "\n\n问题：{input}\n回答："),
    LongBenchTask("hotpotqa", "multi-doc QA", "en", "qa_f1_score", 32, _MULTIDOC_EN, in_longbench_e=True),
    LongBenchTask("2wikimqa", "multi-doc QA", "en", "qa_f1_score", 32, _MULTIDOC_EN, in_longbench_e=True),
    LongBenchTask("musique", "multi-doc QA", "en", "qa_f1_score", 32, _MULTIDOC_EN),
    LongBenchTask(
        "dureader", "multi-doc QA", "zh", "rouge_zh_score", 128,
        "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答："),
    LongBenchTask(
        "gov_report", "summarization", "en", "rouge_score", 512,
        "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n"
        "{context}\n\nNow, write a one-page summary of the report.\n\nSummary:",
        in_longbench_e=True),
    LongBenchTask(
        "qmsum", "summarization", "en", "rouge_score", 512,
        "You are given a meeting transcript and a query containing a question or instruction. Answer the query in"
        " one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting"
        " transcript in one or more sentences.\n\nQuery: {input}\nAnswer:"),
    LongBenchTask(
        "multi_news", "summarization", "en", "rouge_score", 512,
        "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow,"
        " write a one-page summary of all the news.\n\nSummary:",
        in_longbench_e=True),
    LongBenchTask(
        "vcsum", "summarization", "zh", "rouge_zh_score", 512,
        "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结："),
    LongBenchTask(
        "trec", "few-shot", "en", "classification_score", 64,
        "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
        first_line_only=True, in_longbench_e=True),
    LongBenchTask(
        "triviaqa", "few-shot", "en", "qa_f1_score", 32,
        "Answer the question based on the given passage. Only give me the answer and do not output any other words."
        " The following are some examples.\n\n{context}\n\n{input}",
        first_line_only=True, in_longbench_e=True),
    LongBenchTask(
        "samsum", "few-shot", "en", "rouge_score", 128,
        "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
        first_line_only=True, in_longbench_e=True),
    LongBenchTask(
        "lsht", "few-shot", "zh", "classification_score", 64,
        "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}",
        first_line_only=True),
    LongBenchTask(
        "passage_count", "synthetic", "en", "count_score", 32,
        "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully"
        " read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In"
        " other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final"
        " count of unique paragraphs after removing duplicates. The output format should only contain the number,"
        " such as 1, 2, 3, and so on.\n\nThe final answer is: ",
        in_longbench_e=True),
    LongBenchTask(
        "passage_retrieval_en", "synthetic", "en", "retrieval_score", 32,
        "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the"
        " abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of"
        " the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\","
        " etc.\n\nThe answer is: ",
        in_longbench_e=True),
    LongBenchTask(
        "passage_retrieval_zh", "synthetic", "zh", "retrieval_zh_score", 32,
        "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n"
        "请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是："),
    LongBenchTask(
        "lcc", "code", "en", "code_sim_score", 64,
        "Please complete the code given below. \n{context}Next line of code:\n",
        in_longbench_e=True),
    LongBenchTask(
        "repobench-p", "code", "en", "code_sim_score", 64,
        "Please complete the code given below. \n{context}{input}Next line of code:\n",
        in_longbench_e=True),
]
TASKS: dict[str, LongBenchTask] = {t.name: t for t in _TASK_LIST}
GROUPS = ("single-doc QA", "multi-doc QA", "summarization", "few-shot", "synthetic", "code")
LENGTH_BUCKETS = ("0-4k", "4-8k", "8k+")


def get_task(task: str) -> LongBenchTask:
    if task not in TASKS:
        raise ValueError(f"unknown LongBench task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task]


def length_bucket(length: int) -> str:
    """LongBench-E bucket of a row's `length` field (words for English and code, characters for Chinese):
    "0-4k" below 4000, "4-8k" below 8000, else "8k+" (LongBench/eval.py, scorer_e)."""
    return "0-4k" if length < 4000 else "4-8k" if length < 8000 else "8k+"


# --- loading ----------------------------------------------------------------------------------------------------

def _is_text(value) -> bool:
    """A str that can be written as UTF-8 (JSON's \\ud800 escapes decode to lone surrogates a tokenizer rejects)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(_is_text(v) for v in value)


# field -> (check, what the official schema holds). `input` may be empty (gov_report, lcc, ... have none).
SCHEMA = {
    "input": (_is_text, "a string"),
    "context": (lambda v: _is_text(v) and v.strip() != "", "a non-empty string"),
    "answers": (lambda v: _is_str_list(v) and any(a.strip() for a in v), "a list of strings, one of them non-empty"),
    "length": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "dataset": (_is_text, "a string"),
    "language": (_is_text, "a string"),
    "all_classes": (lambda v: v is None or _is_str_list(v), "null or a list of strings"),
    "_id": (lambda v: _is_text(v) and v != "", "a non-empty string"),
}


def row_problem(row) -> str | None:
    """What makes `row` unusable (missing field, wrong type, empty context), or None for a valid row."""
    if not isinstance(row, dict):
        return f"row is {type(row).__name__}, not an object"
    for field, (check, expected) in SCHEMA.items():
        if field not in row:
            return f"field {field!r} is missing"
        if not check(row[field]):
            return f"field {field!r} should be {expected}, got {row[field]!r:.60}"
    return None


def check_row(row) -> dict:
    """`row` if it is a valid LongBench row, else ValueError saying why (for reference.jsonl.read_jsonl)."""
    problem = row_problem(row)
    if problem:
        raise ValueError(problem)
    return row


def _no_data_error(config: str, reason: str) -> RuntimeError:
    return RuntimeError(
        f"cannot load LongBench config {config!r} from the Hugging Face hub ({reason}). Pass --data-dir DIR with "
        f"LongBench-format JSONL files instead: DIR/<task>.jsonl (DIR/<task>_e.jsonl for LongBench-E), one row per "
        f"line with fields {', '.join(SCHEMA)}. The official files are in {DATA_ZIP_URL} (download it on a machine "
        f"with network access and unzip it; its data/ folder is such a DIR).")


def _load_hub(config: str, limit: int | None) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise _no_data_error(config, "the `datasets` package is not installed") from exc
    try:
        data = datasets.load_dataset(HUB_DATASET, config, split="test")
    except Exception as exc:  # offline, hub error, or a datasets version that no longer runs the loading script
        raise _no_data_error(config, f"{type(exc).__name__}: {exc}") from exc
    rows = []
    for index, row in enumerate(data):
        if limit is not None and len(rows) >= limit:
            break
        row = dict(row)
        problem = row_problem(row)
        if problem:
            warnings.warn(f"{HUB_DATASET}:{config} row {index}: {problem}; row skipped", MalformedRowWarning, stacklevel=3)
            continue
        rows.append(row)
    return rows


def load_rows(task: str, data_dir: str | Path | None = None, e: bool = False, limit: int | None = None) -> list[dict]:
    """Rows of one LongBench task (LongBench-E with `e=True`), at most `limit` valid ones, in file order.

    With `data_dir`, reads `<data_dir>/<task>.jsonl` (`<task>_e.jsonl`) in the official schema (`SCHEMA`) with
    reference.jsonl.read_jsonl: a malformed row (not UTF-8, bad JSON, NaN, missing field, wrong type, negative
    length, empty context) is skipped with a warning naming file, line and reason, then one summary warning.
    FileNotFoundError when the directory or file is missing, ValueError when the file holds no valid row.
    Without it, `datasets.load_dataset("THUDM/LongBench", task or f"{task}_e", split="test")`; a RuntimeError says
    how to get the JSONL files when `datasets` is missing or the hub cannot be reached.
    """
    spec = get_task(task)
    if e and not spec.in_longbench_e:
        raise ValueError(f"{task!r} is not part of LongBench-E; its tasks: "
                         f"{', '.join(t.name for t in _TASK_LIST if t.in_longbench_e)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    config = f"{task}_e" if e else task
    if data_dir is None:
        return _load_hub(config, limit)
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"--data-dir: {str(data_dir)!r} is not a directory (expected one LongBench-format "
                                f"JSONL file per task; the official files are in {DATA_ZIP_URL})")
    path = Path(data_dir) / f"{config}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"--data-dir: LongBench file {str(path)!r} does not exist (expected one JSONL file "
                                f"per task in --data-dir; the official files are in {DATA_ZIP_URL})")
    return read_jsonl(path, check_row, arg="--data-dir", what="row", limit=limit, stacklevel=3)


# --- prompts ----------------------------------------------------------------------------------------------------

def build_prompt(task: str, row: dict) -> tuple[str, str]:
    """The official prompt of `row`, split after the context: (context_text, question_text).

    context_text is the template up to and including the filled {context}; question_text is the rest, with
    {input} filled when the template has it (some, e.g. gov_report or lcc, have none). context_text +
    question_text is exactly the official `template.format(**row)`, so a KV-cache method can compress the
    context before it sees the question (question-agnostic, as in kvpress). Tokenizing the two parts separately
    may differ from tokenizing the joined string at the seam; callers that need identical ids tokenize the join.
    """
    head, sep, tail = get_task(task).prompt.partition("{context}")
    if not sep:
        raise ValueError(f"template of {task!r} has no {{context}}")
    return (head + sep).format(**row), tail.format(**row)


def truncate_middle(ids: list[int], max_len: int) -> list[int]:
    """Keep the first and last max_len // 2 tokens of a prompt longer than max_len (LongBench/pred.py: the start
    and the end hold the instructions and the question). As in pred.py, a longer prompt keeps 2 * (max_len // 2)
    tokens, so an odd max_len keeps max_len - 1 (and max_len 1 keeps none, where pred.py's `ids[-0:]` would keep
    everything). pred.py then decodes the two halves and re-tokenizes; we stay in token ids. Shorter prompts are
    returned unchanged (as a new list)."""
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0, got {max_len}")
    ids = list(ids)
    if len(ids) <= max_len:
        return ids
    half = max_len // 2
    return ids[:half] + ids[len(ids) - half:]


# --- scoring ----------------------------------------------------------------------------------------------------

def score(task: str, prediction: str, answers: list[str], all_classes: list[str] | None = None) -> float:
    """Score in [0, 1] of one prediction (LongBench/eval.py, scorer): the max over gold answers of the task's
    metric, on the first line only (after leading newlines) for trec, triviaqa, samsum and lsht."""
    spec = get_task(task)
    if spec.first_line_only:
        prediction = prediction.lstrip("\n").split("\n")[0]
    metric = METRICS[spec.metric]
    return max((float(metric(prediction, gold, all_classes=all_classes)) for gold in answers), default=0.0)
