"""Reads a topic with kafka-python, a client that shares no code with
librdkafka, and prints one JSON line per message: key, value, headers."""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition

brokers, topic, expected, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
parts = [TopicPartition(topic, p) for p in range(partitions)]
consumer.assign(parts)
consumer.seek_to_beginning(*parts)
seen = []
deadline = time.time() + 30
while len(seen) < expected and time.time() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        for r in records:
            seen.append({
                "key": r.key.decode(),
                "value": json.loads(r.value),
                "headers": {k: v.decode() for k, v in r.headers},
            })
for s in seen:
    print(json.dumps(s))
