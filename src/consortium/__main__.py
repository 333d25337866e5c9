import sys

from consortium.cli import main

sys.exit(main())
