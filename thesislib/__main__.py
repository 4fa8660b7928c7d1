"""`python -m thesislib ...` is the `thesislib` command."""

from thesislib.cli import main

raise SystemExit(main())
