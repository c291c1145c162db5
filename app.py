"""Likeness Studio's web app: flags -> Settings -> studio.ui.build_app(...).launch().

    python app.py [--model ID] [--host 0.0.0.0] [--port 7860] ...   (python app.py --help lists them all)

The same as `python -m studio serve ...`: both go through the command line's serve verb, so they take the same flags.
"""

from __future__ import annotations

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
