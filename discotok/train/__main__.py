"""``python -m discotok.train [overrides...]``: the same as ``discotok train``, for launchers
that start one process per GPU themselves (``torchrun ... -m discotok.train``)."""

import sys

from discotok.train.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
