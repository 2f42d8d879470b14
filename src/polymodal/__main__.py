from polymodal.cli.main import main

raise SystemExit(main())
