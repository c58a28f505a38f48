"""``python3 -m <package> <sub-command>``: the device agent."""

import sys

from .cli import main

sys.exit(main())
