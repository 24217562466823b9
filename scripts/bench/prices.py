"""Prices the cost table uses: the one place to change them. All in US dollars.

Reviewed 2026-12-03. Prices change; check the sources before quoting a figure, and
update ``REVIEWED`` with the values. Taxes, phone-number rental, A2P 10DLC
registration and carrier surcharges are not included.
"""

from __future__ import annotations

REVIEWED = "2026-12-03"

# Twilio Programmable Messaging, United States, long code, per segment, pay as you go.
# https://www.twilio.com/en-us/sms/pricing/us
SMS_OUTBOUND_PER_SEGMENT = 0.0083
SMS_INBOUND_PER_SEGMENT = 0.0083

# OpenAI gpt-4o-mini (the OPENAI_MODEL default), standard tier, per token.
# https://openai.com/api/pricing/
MODEL_INPUT_PER_TOKEN = 0.15 / 1_000_000
MODEL_OUTPUT_PER_TOKEN = 0.60 / 1_000_000

# Amazon DynamoDB on-demand, us-east-1, standard table class, per request unit.
# https://aws.amazon.com/dynamodb/pricing/on-demand/
DYNAMODB_PER_WRU = 0.625 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000

SOURCES = {
    "SMS": "https://www.twilio.com/en-us/sms/pricing/us",
    "model": "https://openai.com/api/pricing/",
    "DynamoDB": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
}


def describe() -> str:
    """Return the prices in one line, for the report."""
    return (
        f"SMS ${SMS_INBOUND_PER_SEGMENT} per segment in and ${SMS_OUTBOUND_PER_SEGMENT} out (Twilio, US); "
        f"gpt-4o-mini ${MODEL_INPUT_PER_TOKEN * 1e6:.2f} / ${MODEL_OUTPUT_PER_TOKEN * 1e6:.2f} per million "
        f"input / output tokens; DynamoDB on-demand ${DYNAMODB_PER_RRU * 1e6:.3f} per million RRU and "
        f"${DYNAMODB_PER_WRU * 1e6:.3f} per million WRU (us-east-1); reviewed {REVIEWED}"
    )
