from model.finetune.cli import main

raise SystemExit(main())
