"""A publisher for the integration tests that writes successive versions of
keyed rows as Pulsar's Python client (the C++ client inside) does, with one
of its batching modes.

    PYTHONPATH=.stack/pulsar/python python3 tests/python/publish_versions.py \
        pulsar://127.0.0.1:6650 TOPIC KEYS VERSIONS default|key_based|none

Round r publishes version r of every key, keys in an order shuffled per
round (seeded, so runs repeat), so that batches begin with different keys.
Each message: key {"id":k}, value {"id":k,"v":r}.
Prints {"sent": n}.
"""
import json
import random
import sys

import pulsar

BATCHING = {
    "default": (True, pulsar.BatchingType.Default),
    "key_based": (True, pulsar.BatchingType.KeyBased),
    "none": (False, pulsar.BatchingType.Default),
}


def main(url, topic, keys, versions, mode):
    enabled, kind = BATCHING[mode]
    client = pulsar.Client(url)
    rng = random.Random(7)
    try:
        producer = client.create_producer(
            topic,
            batching_enabled=enabled,
            batching_type=kind,
            batching_max_messages=64,
            batching_max_publish_delay_ms=5,
            block_if_queue_full=True,
        )
        failed = []
        sent = 0
        for version in range(versions):
            order = list(range(keys))
            rng.shuffle(order)
            for key in order:
                producer.send_async(
                    json.dumps({"id": key, "v": version}).encode(),
                    lambda result, _id: failed.append(result) if result != pulsar.Result.Ok else None,
                    partition_key=json.dumps({"id": key}),
                )
                sent += 1
        producer.flush()
        producer.close()
        if failed:
            raise SystemExit("%d sends failed: %s" % (len(failed), failed[0]))
        print(json.dumps({"sent": sent}), flush=True)
    finally:
        client.close()


if __name__ == "__main__":
    url, topic, keys, versions, mode = sys.argv[1:6]
    main(url, topic, int(keys), int(versions), mode)
