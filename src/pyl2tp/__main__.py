"""``python -m pyl2tp``: the same as the ``pyl2tp`` command."""

from pyl2tp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
