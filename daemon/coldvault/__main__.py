"""Allow ``python -m coldvault``."""

from coldvault.cli.main import main

raise SystemExit(main())
