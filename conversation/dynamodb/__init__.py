"""The DynamoDB store, one module per concern.

``keys`` (the only code that knows the key layout), ``codec`` (item ⇄ model),
``table`` (client, errors, retries, transactions, table setup), then the access
patterns: ``users``, ``conversations``, ``messages``, ``batches`` (agent
sessions), ``listings``, ``deletion`` and ``coordination`` (leases, counters).
:class:`conversation.storage.DynamoDBStorage` composes them.
"""
