"""``python -m hesslens.datasets [PATH]``: write the dataset catalogue page (docs/datasets.md) or print it."""

from .listing import main

if __name__ == "__main__":
    raise SystemExit(main())
