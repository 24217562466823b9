"""Talk to an OpenAI Agents SDK agent whose memory lives in the DadaCat DynamoDB table.

Each positional argument is one turn; the session remembers earlier turns, also
across runs (same ``--session``). Needs ``pip install openai-agents==0.24.0`` (the agents extra).

Fully local, nothing to set up (starts DynamoDB Local and the test suite's fake
OpenAI server)::

    python scripts/agent_example.py --local-dynamodb --fake "what is the moon?" "and the sun?"

Against a running DynamoDB Local and a real or compatible server (settings come
from the environment / ``.env`` through ``app.config.load_config``; flags win)::

    AWS_ENDPOINT_URL=http://127.0.0.1:8000 OPENAI_API_KEY=sk-... \
        python scripts/agent_example.py --session alice "hello"
    python scripts/agent_example.py --base-url http://127.0.0.1:11434/v1 --model llama3.2 "hi"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

import boto3
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from app.config import load_config
from conversation import DynamoDBStorage
from conversation.agents_session import DynamoDBSession

ROOT = Path(__file__).resolve().parent.parent

INSTRUCTIONS = "You are DadaCat, a dadaist cat. Answer in one or two short, strange sentences."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("turns", nargs="*", default=["hello, cat"], help="what to say, one turn each")
    parser.add_argument("--session", default="demo", help="session id (default: demo)")
    parser.add_argument("--base-url", help="OpenAI-compatible base URL (default: OPENAI_BASE_URL)")
    parser.add_argument("--model", help="model name (default: OPENAI_MODEL)")
    parser.add_argument("--api-key", help="API key (default: OPENAI_API_KEY, or 'none' for local servers)")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (default: AWS_ENDPOINT_URL)")
    parser.add_argument("--table", help="table name (default: DYNAMODB_TABLE_NAME)")
    parser.add_argument("--fake", action="store_true", help="serve the model from localpeers/fake_openai.py")
    parser.add_argument("--local-dynamodb", action="store_true", help="start DynamoDB Local for this run")
    parser.add_argument("--clear", action="store_true", help="clear the session before the first turn")
    parser.add_argument("--show", action="store_true", help="print the stored items at the end")
    return parser.parse_args(argv)


def build_storage(table: str, endpoint_url: str | None, region: str) -> DynamoDBStorage:
    """Return a store; local endpoints get placeholder credentials if none are configured."""
    session = boto3.session.Session(region_name=region)
    if endpoint_url and session.get_credentials() is None:
        # DynamoDB Local accepts any key; AWS itself never sees these.
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=region
        )
    client = session.client("dynamodb", endpoint_url=endpoint_url) if endpoint_url else None
    return DynamoDBStorage(table, client=client, endpoint_url=endpoint_url, region_name=region)


async def converse(
    session: DynamoDBSession, client: AsyncOpenAI, model: str, args: argparse.Namespace
) -> None:
    """Run each turn through the agent with the DynamoDB session."""
    agent = Agent(
        name="DadaCat",
        instructions=INSTRUCTIONS,
        # Chat Completions is what most OpenAI-compatible servers speak.
        model=OpenAIChatCompletionsModel(model=model, openai_client=client),
    )
    if args.clear:
        await session.clear_session()
    for turn in args.turns:
        result = await Runner.run(agent, turn, session=session)
        print(f"you> {turn}\ncat> {result.final_output}")
    items = await session.get_items()
    print(f"[session {session.session_id!r}: {len(items)} items in {session.storage.table_name}]")
    if args.show:
        for item in items:
            print(json.dumps(item, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    """Run the example; return the exit status."""
    args = parse_args(argv)
    # This example never talks to Twilio, so its token is not required here.
    config = load_config({"TWILIO_VALIDATE_SIGNATURE": False})
    set_tracing_disabled(True)  # no traces uploaded to OpenAI from an example
    with contextlib.ExitStack() as stack:
        endpoint_url = args.endpoint_url or config.aws_endpoint_url
        if args.local_dynamodb:
            from localpeers.dynamodb_local import DynamoDBLocal

            endpoint_url = stack.enter_context(DynamoDBLocal()).endpoint_url
        base_url = args.base_url or config.openai_base_url
        if args.fake:
            from localpeers.fake_openai import FakeOpenAI

            def answer(body: dict) -> str:
                return f"mrrp #{len(body.get('messages', []))}: the moon purrs back."

            fake = stack.enter_context(FakeOpenAI(handler=answer))
            base_url = fake.base_url
        api_key = args.api_key or config.openai_api_key or "none"
        model = args.model or config.openai_model
        table = args.table or config.dynamodb_table_name
        storage = build_storage(table, endpoint_url, config.aws_region)
        session = DynamoDBSession(args.session, storage)

        async def run() -> None:
            async with AsyncOpenAI(api_key=api_key, base_url=base_url) as client:
                await converse(session, client, model, args)

        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
