"""``python -m reasonmaxxer.cli``: the same as ``python -m reasonmaxxer`` (as when ``cli`` was a
module)."""

from . import main

if __name__ == "__main__":
    main()
