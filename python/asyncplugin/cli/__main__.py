"""`python -m asyncplugin.cli`."""

from __future__ import annotations

import sys

from asyncplugin.cli import main

sys.exit(main())
