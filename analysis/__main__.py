"""Entry point of ``python -m analysis``."""
from .cli import main

raise SystemExit(main())
