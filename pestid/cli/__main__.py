"""``python -m pestid.cli``, as torchrun and the tests call it."""

from pestid.cli import main

main()
