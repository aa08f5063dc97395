"""`python -m ernie3.cli <command> ...`: the same as the `ernie3` console command."""
from ernie3.cli.main import main

main()
