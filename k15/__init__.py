"""k15: the Kimi k1.5 recipe as software — shared core (config, checkpoints, chat convention, CLI)."""

__version__ = "0.1.0"
