"""`python -m tune_pipeline` is the `tune` command."""

from tune_pipeline.cli import main

main()
