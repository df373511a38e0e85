from asrprune.cli import main

raise SystemExit(main())
