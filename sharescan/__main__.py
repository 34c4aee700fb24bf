"""``python -m sharescan``: the same command as the ``sharescan`` script."""

from sharescan.cli import main

main()
