from getkern.cli import main

raise SystemExit(main())
