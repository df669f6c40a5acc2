"""The Konnektor's SOAP services through zeep: discovery, cards, PIN, signature (I/O only, a leaf).

It knows nothing of Django or the portal's models: callers pass a configuration and a call context and get
dataclasses back; failures are KonnektorError with the gematik code and its German text.
"""
