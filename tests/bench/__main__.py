"""`make bench`: every benchmark, each printed beside a raw baseline measured in the same run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tests.bench import codec, sim_models, sim_run
from tests.bench import firmware as firmware_bench
from tests.bench import home_unit as home_unit_bench
from tests.bench import ingest as ingest_bench
from tests.bench import investigations as investigations_bench
from tests.bench import rf as rf_bench
from tests.bench import rules as rules_bench


def main() -> None:
    table = Table(title="tagwatch benchmarks (ratios against raw baselines from this run)")
    for col in ("suite", "what", "result", "vs baseline"):
        table.add_column(col)
    for row in codec.rows():
        table.add_row(*row)
    for row in home_unit_bench.rows():
        table.add_row(*row)
    for row in ingest_bench.rows():
        table.add_row(*row)
    for row in rules_bench.rows():
        table.add_row(*row)
    for row in investigations_bench.rows():
        table.add_row(*row)
    for row in sim_models.rows():
        table.add_row(*row)
    for row in sim_run.rows():
        table.add_row(*row)
    for row in firmware_bench.rows():
        table.add_row(*row)
    for row in rf_bench.rows():
        table.add_row(*row)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
