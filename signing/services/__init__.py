"""Writes of the signing app, one module per concern: drafts, documents, cards and workplaces, batches, the run
of a batch against the Konnektor, local verification of signatures, the audit door."""
