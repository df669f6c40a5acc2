"""The simulated KIM Account Manager (REST, per gematik's AccountManager/AccountLimit/ServiceInformation OpenAPI)."""

from __future__ import annotations

from tisim.accountmanager.cmlink import CmAccounts, ConfigAccounts, SimulatorAccounts
from tisim.accountmanager.server import DEFAULT_PORT, RUNTIME_FILE, AccountManagerSimulator
from tisim.accountmanager.store import RegistrationCode

__all__ = [
    "DEFAULT_PORT",
    "RUNTIME_FILE",
    "AccountManagerSimulator",
    "CmAccounts",
    "ConfigAccounts",
    "RegistrationCode",
    "SimulatorAccounts",
]
