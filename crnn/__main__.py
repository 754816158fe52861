import sys

from crnn.cli import main

sys.exit(main())
