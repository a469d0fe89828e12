from tawin.cli import main

raise SystemExit(main())
