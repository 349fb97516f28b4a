"""`python -m proxy_demo`: the demo."""

from proxy_demo.run import main

raise SystemExit(main())
