"""Consent decision latency, in-process on SQLite: the time from an access request to an
audited decision (the ledger entry committed), and the same with the record view read.

    .venv/bin/python -m load_tests.bench_consent [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metaworld.consent import (
    AccessRequest,
    Actor,
    Caller,
    Consent,
    InProcessConsentService,
    Provision,
)
from metaworld.ledger import Ledger
from metaworld.records import import_bundles
from metaworld.server import quiet_garbage_collector
from metaworld.store import make_engine

SYNTHEA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run(requests: int) -> dict[str, float]:
    bundle = next(SYNTHEA.glob("Bibi*.json"))
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        import_bundles(engine, [bundle])
        patient = bundle.stem.split("_")[-1]
        service = InProcessConsentService(engine, Ledger(engine, Ed25519PrivateKey.generate()))
        consent = Consent(
            id="bench",
            patient=patient,
            status="active",
            provision=Provision(
                type="deny",
                provision=[Provision(type="permit", actor=[Actor("clinician", "dr-a")])],
            ),
        )
        service.grant(patient, consent, by=Caller("p", "patient", patient))
        # As in the server, which freezes its start-up heap so that full collections
        # (of the FHIR and ORM models above all) do not stall it.
        quiet_garbage_collector()

        def request(actor: str) -> AccessRequest:
            return AccessRequest(
                actor=actor,
                role="clinician",
                patient=patient,
                categories=["vital_signs"],
                scopes=["user/*.rs"],
                room="consult-1",
            )

        results: dict[str, float] = {}
        for name, call in (
            ("decide", lambda i: service.decide(request("dr-a" if i % 2 else "dr-b"))),
            ("fetch_view", lambda i: service.fetch_view(request("dr-a"))),
        ):
            for i in range(50):  # warm caches and connections
                call(i)
            times, cpu = [], []
            for i in range(requests):
                start, start_cpu = time.perf_counter(), time.process_time()
                call(i)
                times.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
            results[f"{name}_p50_ms"] = statistics.median(times)
            results[f"{name}_p99_ms"] = percentile(times, 0.99)
            # CPU time leaves out waiting for a core on a shared machine.
            results[f"{name}_cpu_p50_ms"] = statistics.median(cpu)
            results[f"{name}_cpu_p99_ms"] = percentile(cpu, 0.99)
        engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    results = run(args.requests)
    print(f"consent decisions, in-process, SQLite, {args.requests} requests each")
    for name in ("decide", "fetch_view"):
        print(
            f"  {name:<10} wall p50 {results[f'{name}_p50_ms']:.3f} ms, "
            f"p99 {results[f'{name}_p99_ms']:.3f} ms;  "
            f"CPU p50 {results[f'{name}_cpu_p50_ms']:.3f} ms, "
            f"p99 {results[f'{name}_cpu_p99_ms']:.3f} ms"
        )


if __name__ == "__main__":
    main()
