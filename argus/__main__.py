"""`python -m argus ...` (and `torchrun -m argus train ...`)."""

from argus.cli import main

if __name__ == "__main__":
    main()
