"""The Suite protocol and `run_suite`, the one runner loop every suite goes through (docs/design.md, "Suites").

A suite says *what* to measure; `run_suite` owns *how a run goes*: validate the config, open the store, plan the
cells, skip those already stored (unless `rerun`), group the rest into shards, run them on the executor (local or
Ray) with every finished cell appended to the store at once, and summarize. A suite is a `Suite` subclass
registered with `@SUITES.register(name)`; every module of `harness/suites/` is imported the first time the registry
is read, and so are plugins (LONGCTX_PLUGINS, `python -m harness --plugins`), so `python -m harness run --suite
NAME` finds a new suite with no other edit.

What a suite provides (the rest has defaults):
- `config_from_args(args)`: its config from `harness run`'s options; `add_arguments(parser)` adds its own options.
  A config has `results` (the store directory) and `rerun`, and `validate()` raising ValueError.
- `plan(config)`: every cell, a dict with its store key under "cell" (or override `cell_key`), plus what the
  worker needs. Two runs with the same config plan the same keys, so a rerun skips what is stored.
- `measure_cell(config, cell) -> records` (one cell), or `worker(config)` returning a module-level function
  `worker(config, cells, emit)` that measures a shard's cells and calls `emit(records)` per finished cell, for
  suites that share work between cells, such as one prefill for every method).
- `summarize(config, store, cells, pending)`: a dict with a printable "table"; `run_suite` adds "ran", "skipped"
  and "store" where the suite does not set them.
Hooks for suites whose cells depend on each other: `prepare` (read the store once), `select` (which cells run),
`waves` (batches run one after the other, later ones built from earlier results) and `on_records`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from harness.executors import LOCAL, ExecutorConfig, execute, group_shards
from harness.store import ResultsStore
from reference.registry import Registry

SUITES = Registry("suite", packages=("harness.suites",))


class Suite:
    """Base of every suite; subclasses are registered with `@SUITES.register(name)` (which sets `name`)."""

    name = ""
    order = float("inf")  # where `harness run --suite` lists it
    help = ""  # one line for `harness run --help`
    device = "cpu"  # where the cells run (the executor asks for GPUs when it is cuda)

    # ---------------------------------------------------------------- configuration
    @classmethod
    def add_arguments(cls, parser) -> None:
        """Add the suite's own options to `harness run` (names must not clash with the shared ones)."""

    def config_from_args(self, args) -> Any:
        raise NotImplementedError

    def for_config(self, config, progress: bool = True, local: bool = True) -> "Suite":
        """The suite that runs `config`: itself, unless it has modes with different runners (scheduling's real
        serving loop); `local` says whether the executor runs cells in this process."""
        return self

    def store_name(self, config) -> str:
        """The records' `suite` field and the store's file: the suite's name unless the config says otherwise."""
        return getattr(config, "suite", None) or self.name

    def validate(self, config) -> None:
        config.validate()

    # ---------------------------------------------------------------- the cells
    def plan(self, config) -> list[dict]:
        raise NotImplementedError

    def cell_key(self, config, cell: dict) -> str:
        return cell["cell"]

    def prepare(self, config, store: ResultsStore) -> None:
        """Called once the store is open, before `select` (e.g. read what later cells need from stored records)."""

    def select(self, config, cells: list[dict], done: set[str]) -> list[dict]:
        """The cells to run: those whose key is not stored (`done` is empty under rerun)."""
        return [c for c in cells if self.cell_key(config, c) not in done]

    def check_pending(self, config, pending: list[dict]) -> None:
        """Refuse, before any worker starts, what only the pending cells reveal (e.g. lengths a model cannot hold)."""

    def shard_key(self, config, cell: dict) -> tuple:
        """Cells with the same key run together (one Ray task): by default method x task."""
        return (cell.get("method"), cell.get("task"))

    def waves(self, config, pending: list[dict]) -> Iterator[tuple[str, list[dict]]]:
        """(description, cells) batches run in order; a generator may build a later batch from earlier results."""
        yield self.name, pending

    def worker(self, config) -> Callable[[Any, list, Callable[[list[dict]], None]], None] | None:
        """A module-level `worker(config, cells, emit)` measuring a shard's cells together, or None: then each cell
        is measured alone by `measure_cell`."""
        return None

    def measure_cell(self, config, cell: dict) -> list[dict]:
        raise NotImplementedError(f"suite {self.name!r} defines neither measure_cell nor worker")

    def on_records(self, records: list[dict]) -> None:
        """Called in this process for every finished cell, after its records are stored."""

    # ---------------------------------------------------------------- the result
    def summarize(self, config, store: ResultsStore, cells: list[dict], pending: list[dict]) -> dict:
        return {"table": ""}

    def board(self, records: list[dict]):
        """The suite's leaderboard section (a harness.boards.page.Board), or None: built-in families have their own
        boards in harness/boards/leaderboard.py."""
        return None


def measure_cells(job: tuple, cells: list[dict], emit) -> None:
    """The worker of suites that measure one cell at a time: job is (suite, config)."""
    suite, config = job
    for cell in cells:
        emit(suite.measure_cell(config, cell))


def run_suite(suite: Suite, config, progress: bool = True, executor: ExecutorConfig = LOCAL,
              worker: Callable | None = None) -> dict:
    """The runner loop: validate, open the store, plan, skip stored cells, shard, execute, summarize.

    Returns the suite's summary with at least "ran" (cells measured now), "skipped" (cells already stored) and
    "store" (the JSONL file). `worker` overrides the suite's (a local executor may pass one holding a loaded model).
    """
    suite.validate(config)
    executor.validate()
    store = ResultsStore(config.results)
    name = suite.store_name(config)
    suite.prepare(config, store)
    cells = suite.plan(config)
    done = set() if config.rerun else store.done_cells(name)
    pending = suite.select(config, cells, done)
    suite.check_pending(config, pending)
    if skipped := len(cells) - len(pending):
        print(f"{name}: {skipped} of {len(cells)} cells already in {config.results} (skipped; --rerun measures them "
              "again)")
    worker = worker or suite.worker(config)
    job = config if worker is not None else (suite, config)
    worker = worker or measure_cells
    ran = 0

    def keep(records: list[dict]) -> None:
        nonlocal ran
        store.append(records)
        ran += 1
        suite.on_records(records)

    for desc, batch in suite.waves(config, pending):
        shards = group_shards(batch, lambda c: suite.shard_key(config, c))
        execute(worker, job, shards, keep, executor, suite.device, desc, progress)
    summary = suite.summarize(config, store, cells, pending)
    summary.setdefault("ran", ran)
    summary.setdefault("skipped", skipped)
    summary.setdefault("store", str(store.path(name)))
    return summary


def suite_names() -> list[str]:
    return SUITES.names()


def get_suite(name: str) -> Suite:
    """A fresh instance of the registered suite `name` (suites may keep state for one run)."""
    return SUITES.get(name)()


__all__: Iterable[str] = ("SUITES", "Suite", "run_suite", "measure_cells", "suite_names", "get_suite")
