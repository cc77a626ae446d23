import sys

from lateralnorm.cli import main

sys.exit(main())
