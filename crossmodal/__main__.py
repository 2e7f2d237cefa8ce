"""`python -m crossmodal` runs the command line."""

import sys

from crossmodal.cli import main

sys.exit(main())
