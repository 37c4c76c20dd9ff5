"""`python -m watcher` is the `watcher` command."""

import sys

from watcher.launch import main

sys.exit(main())
