"""The simulated KIM Account Manager (REST, per gematik's AccountManager/AccountLimit/ServiceInformation OpenAPI)."""
