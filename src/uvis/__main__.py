import sys

from uvis.cli import main

sys.exit(main())
