"""``python -m tilec`` runs the CLI."""

import sys

from tilec.cli import main

sys.exit(main())
