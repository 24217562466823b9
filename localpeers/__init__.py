"""Local stand-ins for the bot's peers, shared by tests, scripts and benchmarks.

``dynamodb_local`` starts a real DynamoDB Local server from the jar npm installs;
``fake_openai`` serves OpenAI's HTTP API on 127.0.0.1 for the real ``openai`` client.
Neither is used by the bot itself; they live here so that ``tests/`` and ``scripts/``
both use them without importing each other.
"""
