"""`python -m clipsearch`: the same as the `clipsearch` command."""

from .cli import run

if __name__ == "__main__":  # decode workers (spawn) import this module again
    run()
