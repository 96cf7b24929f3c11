"""``python -m lloca_hep.generate``: same options as ``lloca-hep generate``."""

import sys

from lloca_hep.cli.generate import main

if __name__ == "__main__":
    sys.exit(main())
