"""``python -m ferrotune train ...`` (also what ``accelerate launch -m ferrotune`` runs)."""

from .cli import console_main

if __name__ == "__main__":
    console_main()
