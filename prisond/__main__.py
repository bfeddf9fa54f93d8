"""`python3 -m prisond`: the daemon, as the `prisond` command runs it."""
import sys

from .daemon import main

sys.exit(main())
