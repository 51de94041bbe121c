"""`python -m bench`: the `make bench` table (bench/table.py)."""

from bench.table import main

main()
