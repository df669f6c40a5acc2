"""The KIS API (issue 12, part 2): client systems submit drafts for signature over HTTP with a token, read their
state and the signed result, and are called back on state changes. Documented by openapi.yaml beside this file."""
