"""`python -m home_unit run --config FILE` (the same as `tagwatch home-unit run`)."""

from home_unit.cli import app

app()
