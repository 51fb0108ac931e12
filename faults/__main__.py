"""python -m faults: see faults/run.py."""

import sys

from faults.run import main

sys.exit(main())
