"""The transcript-accuracy answer set: spoken answers full of numbers, names and technical terms.

Each answer belongs to a question of one of the shipped plans (interview/plans/*.yaml), so the
accurate pass gets the context it gets in an interview: that question and the plan's vocabulary.
The vocabulary was written from the plans' domains before these answers, and some HELD-OUT terms
are deliberately not in it (ClickHouse, Datadog, OpenTelemetry, Istio, Okta, Gorgias...). The
engine's options are chosen on TUNE only; HELD-OUT (other texts, other voices: the voices of
benchmarks/eot_clips.py) is the result. Tests use their own phrases, never these.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.eot_clips import VOICES, Split, Voice

__all__ = ["ANSWERS", "VOICES", "Answer", "Voice", "answers"]

BACKEND = "backend-engineer-screen"
SUPPORT = "customer-support-screen"


@dataclass(frozen=True)
class Answer:
    plan: str
    question: str  # the question's id in the plan
    text: str


ANSWERS: dict[Split, tuple[Answer, ...]] = {
    "tune": (
        Answer(
            BACKEND,
            "recent-system",
            "In 2021 I rebuilt our billing service in Go on top of PostgreSQL 13, and we moved "
            "the nightly jobs from cron to Kafka consumers.",
        ),
        Answer(
            BACKEND,
            "production-incident",
            "Our p99 latency jumped to 4 seconds because Redis ran out of memory, so I added "
            "an eviction policy and a Grafana alert.",
        ),
        Answer(
            BACKEND,
            "storage-choice",
            "We picked DynamoDB for the session store and kept orders in MySQL, because "
            "refunds needed transactions across 3 tables.",
        ),
        Answer(
            BACKEND,
            "scaling",
            "First I would check the p95 in Prometheus, then add a read replica and cache the "
            "product pages for 60 seconds.",
        ),
        Answer(
            BACKEND,
            "code-review-disagreement",
            "A colleague wanted to merge a pull request without tests for the Terraform module, "
            "and we agreed to ship it behind a feature flag.",
        ),
        Answer(
            BACKEND,
            "recent-system",
            "I wrote a gRPC gateway in TypeScript that serves about 2000 requests per second "
            "on 6 pods in Kubernetes.",
        ),
        Answer(
            SUPPORT,
            "upset-customer",
            "A customer was charged twice in March, so I issued the refund in Stripe and "
            "opened a Jira ticket for the billing team.",
        ),
        Answer(
            SUPPORT,
            "upset-customer",
            "Our CSAT went from 78 to 91 percent after we rewrote 40 macros in Zendesk and cut "
            "the first response time to 2 hours.",
        ),
        Answer(
            BACKEND,
            "production-incident",
            "The postmortem showed a canary release that skipped the rollback step, and "
            "PagerDuty woke up the on-call engineer at 3 in the morning.",
        ),
        Answer(
            BACKEND,
            "storage-choice",
            "We sharded MongoDB by tenant in 2018 and later moved the reports to Elasticsearch "
            "with nightly replication.",
        ),
    ),
    "heldout": (
        Answer(
            BACKEND,
            "recent-system",
            "In 2019 we migrated 12 services from a monolith to Kubernetes, and I owned the "
            "PostgreSQL connection pooling with PgBouncer.",
        ),
        Answer(
            BACKEND,
            "production-incident",
            "The p95 went from 300 milliseconds to 2 seconds after a deploy, and Datadog traces "
            "pointed at a missing index on the invoices table.",
        ),
        Answer(
            BACKEND,
            "scaling",
            "For ten times the traffic I would put the hot endpoint behind a Redis cache and "
            "move the analytics queries to ClickHouse.",
        ),
        Answer(
            BACKEND,
            "storage-choice",
            "We chose PostgreSQL over MongoDB because the ledger needs strict consistency, and "
            "we ran 150 schema migrations with Alembic.",
        ),
        Answer(
            BACKEND,
            "recent-system",
            "I added OpenTelemetry tracing to 8 Python services and an Istio sidecar, which "
            "cut our debugging time roughly in half.",
        ),
        Answer(
            BACKEND,
            "code-review-disagreement",
            "Maria wanted GraphQL and I preferred a REST API, so we wrote a one page design "
            "note and the team voted in 2 days.",
        ),
        Answer(
            BACKEND,
            "scaling",
            "The Kafka consumers fell 5 minutes behind, so we doubled the partitions to 24 and "
            "made every handler idempotent.",
        ),
        Answer(
            SUPPORT,
            "upset-customer",
            "A client lost access after the Okta migration in January, so I escalated to tier "
            "2 and called her back within 30 minutes.",
        ),
        Answer(
            SUPPORT,
            "upset-customer",
            "We moved from Gorgias to Zendesk in 2022, and our NPS rose by 15 points in the "
            "first quarter.",
        ),
        Answer(
            BACKEND,
            "production-incident",
            "On Black Friday our AWS bill tripled because an S3 bucket was serving 40 "
            "terabytes through a misconfigured Cloudflare rule.",
        ),
    ),
}


def answers(split: Split) -> list[tuple[Answer, Voice]]:
    """Every answer of a split in each of the split's voices."""
    return [(answer, voice) for voice in VOICES[split] for answer in ANSWERS[split]]
