#!/usr/bin/env python3
"""One line from an `artemis perf client --json` report. The producers send for the run's
duration, then the tool waits until the consumers have received everything, so it reports:
the mean send and receive rates over the (1 s) intervals after the warm-up while producers
sent; the backlog left when they stopped and how many seconds the consumers took to drain it
(what a slower consumer side shows); and the end-to-end (transfer) latency median / 99th /
99.9th over the whole run, which a backlog dominates. Appends "PROBLEM <why>" when the run
failed, measured nothing, or received less than it sent beyond what may still be in flight."""
import json
import sys

IN_FLIGHT = 100  # --max-pending per producer, as benchmarks/jms-perf/run passes it


def main(path, producers):
    with open(path) as f:
        samples = json.load(f)
    measured = [s for s in samples if s.get("sampleType") == "interval" and not s.get("warmup")]
    summary = next((s for s in samples if s.get("sampleType") == "summary"), None)
    problems = []
    if summary is None:
        print("no summary PROBLEM the report has no summary")
        return
    if not measured:
        problems.append("no measured intervals")

    sending = [s for s in measured if s["sent"] > 0]
    after = measured[len(sending):] if sending == measured[: len(sending)] else []

    def mean(key):
        return sum(s[key] for s in sending) / len(sending) if sending else 0.0

    sent_before_end = sum(s["sent"] for s in samples if s.get("sampleType") == "interval" and s["sent"] > 0)
    received_by_end = sum(
        s["received"]
        for s in samples
        if s.get("sampleType") == "interval" and (s.get("warmup") or s in sending)
    )
    backlog = max(sent_before_end - received_by_end, 0)

    transfer = summary.get("totalTransferTime", {})

    def ms(q):
        return transfer.get(q, 0) / 1000.0

    sent, received = summary.get("totalSent", 0), summary.get("totalReceived", 0)
    if summary.get("result") != "success":
        problems.append(f"result {summary.get('result')}")
    if received == 0:
        problems.append("nothing received")
    if received + IN_FLIGHT * producers < sent:
        problems.append(f"received {received} of {sent} sent")
    line = (
        f"send {mean('sent'):,.0f} msg/s, receive {mean('received'):,.0f} msg/s while sending; "
        f"backlog {backlog:,} drained in {len(after)} s; "
        f"latency {ms('50'):,.1f} / {ms('99'):,.1f} / {ms('99.9'):,.1f} ms "
        f"({received:,} of {sent:,} received)"
    )
    if problems:
        line += " PROBLEM " + "; ".join(problems)
    print(line)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
