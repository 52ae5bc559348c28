"""The Great Expectations suite: generated from the contract, stored as JSON, run per chunk.

`expectations/customers.json` is written by `make expectations` from the contract and read
back at import time, so the rules GX runs are the ones a reviewer sees in the repo. Each
expectation carries in its `meta` the issue code and the message template it reports.

GX is imported inside the functions: it takes seconds to import and must never slow down
Airflow's DAG parsing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.contract.issues import Issue
from customer_import.contract.rules import INVISIBLE, without_value
from customer_import.database.staging import LINE

# GX logs at INFO while it is imported (hundreds of "Skipping registering function" lines in every
# task log): quiet from before the first import.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

SUITE_NAME = "customers"
#: GX validates this many columns of a chunk at once. Most of its time is in Arrow's regular
#: expressions (pandas' `str` columns), which release the GIL: a second thread has the other core.
GX_THREADS = 2
#: What a message or the suite file shows by its code: invisible and control characters.
_UNSEEN = re.compile(f"{INVISIBLE}|[\x00-\x1f\x7f-\x9f]")
_UNSEEN_IN_JSON = re.compile(f"{INVISIBLE}|[\x7f-\x9f]")


def build_suite(contract: Contract) -> dict[str, Any]:
    """The suite as GX serialises it, one expectation per rule of each contract field."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    _quiet(gx)
    expectations = [
        getattr(gxe, rule.expectation)(
            column=spec.column,
            **rule.kwargs,
            meta={"code": rule.code, "message": rule.message, "header": spec.header},
        )
        for spec in contract.fields
        for rule in spec.rules
    ]
    suite = gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=expectations,
        meta={
            "generated_from": "include/customer_import/contract.yaml",
            "contract_version": contract.version,
            "regenerate_with": "make expectations",
        },
    )
    return suite.to_json_dict()


def suite_text(contract: Contract) -> str:
    """The suite as `expectations/customers.json` holds it."""
    text = json.dumps(build_suite(contract), indent=2, ensure_ascii=False)
    # json.dumps escapes ASCII control characters itself; the invisible ones are escaped for the reader
    return _UNSEEN_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def read_suite(directory: Path) -> dict[str, Any]:
    suite: dict[str, Any] = json.loads((directory / f"{SUITE_NAME}.json").read_text(encoding="utf-8"))
    return suite


class RowValidator:
    """Runs the stored suite over DataFrame chunks of one file and turns failures into issues.

    Only the expectations of the columns present in the file's header are run: a file that
    updates two columns is checked on those two. `only` narrows them to some of those columns
    (a row fixed in the browser is checked again on the cells that changed: every rule is a rule
    of one column).
    """

    def __init__(
        self,
        suite: dict[str, Any],
        fields: Iterable[FieldSpec],
        labels: dict[str, str] | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        self.fields = {spec.column: spec for spec in fields}
        self.labels = {column: (labels or {}).get(column, spec.header) for column, spec in self.fields.items()}
        checked = self.fields.keys() if only is None else self.fields.keys() & set(only)
        self._expectations = [e for e in suite["expectations"] if e["kwargs"].get("column") in checked]
        self._name = suite["name"]

    @cached_property
    def _suites(self) -> dict[str, Any]:
        """GX's suite of each column's expectations, built on the first chunk: importing GX takes
        seconds, which a file's first rows (and the progress they report) need not wait for."""
        import great_expectations as gx

        by_column: dict[str, list[dict[str, Any]]] = {}
        for expectation in self._expectations:
            by_column.setdefault(expectation["kwargs"]["column"], []).append(expectation)
        return {
            column: gx.ExpectationSuite(name=f"{self._name}_{column}", expectations=expectations)
            for column, expectations in by_column.items()
        }

    def warm_up(self) -> None:
        """Import GX, build its context and the suites: seconds, before the first chunk."""
        _context()
        assert self._suites is not None

    def validate(self, frame: Any) -> list[Issue]:
        """Issues of one chunk, at most one per cell (the first rule a value breaks), column by column,
        `GX_THREADS` columns at a time.

        Each column's expectations run on a frame of that column and the line only: GX leaves out
        a column's blank cells by copying the frame it is given, once per expectation, and a copy of
        two columns is cheap where one of every column was not (8 % of validating 1M rows).
        """
        if not self._expectations:
            return []  # (GX is not even imported)
        columns = [(frame[[LINE, column]], suite) for column, suite in self._suites.items()]
        issues: list[Issue] = []
        for found in _columns_pool().map(lambda column: self._validate_column(*column), columns):
            issues += found
        return issues

    def _validate_column(self, frame: Any, suite: Any) -> list[Issue]:
        """GX runs the suite twice at most: first for each expectation's verdict alone (`BOOLEAN_ONLY`:
        no unexpected values, indexes or rows are gathered, which is most of GX's time on a clean
        chunk), then, when some failed, those expectations again for every row that broke them."""
        import great_expectations as gx

        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        verdicts = batch.validate(suite, result_format={"result_format": "BOOLEAN_ONLY"})
        failed = [outcome.expectation_config for outcome in verdicts.results if not outcome.success]
        if not failed:
            return []
        result = batch.validate(
            gx.ExpectationSuite(name=f"{suite.name}_failed", expectations=failed),
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [LINE]},
        )
        issues: dict[tuple[int, str], Issue] = {}
        for outcome in result.results:
            if outcome.success:
                continue
            config = outcome.expectation_config
            column = config.kwargs["column"]
            spec = self.fields[column]
            for unexpected in outcome.result.get("unexpected_index_list") or []:
                line = int(unexpected[LINE])
                if (line, column) not in issues:
                    value = unexpected.get(column)
                    template, label, regex = config.meta["message"], self.labels[column], config.kwargs.get("regex")
                    issues[(line, column)] = Issue(
                        line,
                        label,
                        config.meta["code"],
                        _message(template, spec, value, label, regex),
                        _message(without_value(template), spec, value, label, regex) if spec.personal else None,
                    )
        return list(issues.values())


@cache
def _context() -> Any:
    """One ephemeral GX context per process."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    _quiet(gx)
    # GX fingerprints every batch under 1 GB by hashing the whole DataFrame (a quarter of its time on
    # a clean batch); nothing reads that fingerprint here, so its threshold is set to nothing.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def _columns_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(GX_THREADS, thread_name_prefix="gx-column")


_thread = threading.local()
_adding = threading.Lock()


def _batch_definition() -> Any:
    """This thread's DataFrame asset, whose batch is a chunk's column. Each thread has a data source
    of its own: its execution engine holds the batch being validated, which another thread's must
    not replace."""
    definition = getattr(_thread, "definition", None)
    if definition is None:
        with _adding:  # (the context's store of data sources is not made for threads)
            sources = _context().data_sources
            asset = sources.add_pandas(f"customer_file_{len(sources.all())}").add_dataframe_asset("chunk")
            definition = _thread.definition = asset.add_batch_definition_whole_dataframe("whole_chunk")
    return definition


def _message(template: str, spec: FieldSpec, value: Any, label: str, regex: str | None = None) -> str:
    text = "" if value is None or value != value else str(value)  # NaN != NaN: a blank cell
    found = re.search(regex, text) if regex and "{found}" in template else None
    return template.format(
        header=label,
        value=shown(text),
        found=shown(found.group()) if found else "",
        length=f"{len(text):,}",
        chars=f"{len(text):,} character{'' if len(text) == 1 else 's'}",
        max_length=f"{spec.limit:,}" if spec.limit else None,
        example=spec.example,
    )


def shown(text: str, width: int = 60) -> str:
    """A value as a message quotes it: at most `width` characters, what cannot be seen by its code."""
    text = text if len(text) <= width else text[: width - 3] + "..."
    return _UNSEEN.sub(_code, text)


def _code(match: re.Match[str]) -> str:
    """A control character as `\\x85`, any other unseen one as `\\u200b`."""
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x20 or 0x7F <= code <= 0x9F else f"\\u{code:04x}"


def _quiet(gx_module: Any) -> None:
    logging.getLogger(gx_module.__name__).setLevel(logging.WARNING)
