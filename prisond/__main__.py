"""`python3 -m prisond`: the daemon, as the `prisond` command runs it."""
import sys

from prisond.service.daemon import main

sys.exit(main())
