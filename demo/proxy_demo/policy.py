"""Where the demo's access model lives: package data, so it is found from an installed package too."""

from pathlib import Path

DEMO_POLICY = Path(__file__).resolve().parent / "demo.yaml"
