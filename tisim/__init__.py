"""TI simulator: the KIM Clientmodul, the VZD and friends, speaking the real protocols on loopback.

The portal talks to it only over sockets and never imports it; tisim in turn never imports Django
or any portal app. Entry point: ``python -m tisim``.
"""

from __future__ import annotations

__version__ = "0.1.0"
