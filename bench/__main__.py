"""python -m bench [--smoke] [--output PATH]: see bench/run.py."""

import sys

from bench.run import main

sys.exit(main())
