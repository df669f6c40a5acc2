"""Views by page: the queue and the central list, drafts, batches, the managers' pages. Thin: forms parse,
services write, selectors read."""
