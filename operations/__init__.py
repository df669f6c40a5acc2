"""The top floor: KIM administration through the provider's Account Manager, the operations page, health and metrics.

It reads the other apps (signing, mailbox, directory, konnektor); none of them imports it.
"""
