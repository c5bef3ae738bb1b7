"""Completion webhooks: which URLs may be called (`addresses`), what is sent (`events`),
how it is signed (`signing`), and the step runner that delivers it (`sender`).

A delivery is a step of kind `webhook`, queued by the database in the transaction that
ends its job, and claimed, leased, retried and rescued like every other step.
"""
